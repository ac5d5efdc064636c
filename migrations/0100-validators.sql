-- What the validators need beyond the registry tables of 0001.

-- The recent norm of latency, cost and tokens per (model, node) on a log scale, for the
-- `anomaly` validator; flywheel.refresh_anomaly_baselines() recomputes it off the insert path.
CREATE TABLE flywheel._anomaly_baselines (
    model        text,
    node         text,
    metric       text NOT NULL,
    n            integer NOT NULL,
    median_log   double precision NOT NULL,
    mad_log      double precision NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX anomaly_baselines_key ON flywheel._anomaly_baselines (model, node, metric) NULLS NOT DISTINCT;

-- Every insert writes several result rows; a per-session cache of ids keeps concurrent
-- inserters from queueing on the sequence.
ALTER SEQUENCE flywheel.validation_results_id_seq CACHE 64;

-- The foreign key from results to validators cost more than all the validators together on
-- the insert path (a KEY SHARE row lock per result row, measured ~4x the INSERT of the results
-- themselves): results are written only by the trigger and functions that take validator ids
-- from the registry, and a deleted validator's results go with it (sql/100-validators.sql,
-- trigger validators_delete_results).
ALTER TABLE flywheel.validation_results DROP CONSTRAINT validation_results_validator_id_fkey;
