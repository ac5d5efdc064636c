-- Versioned calibrations of pairwise LLM judges (plpython/judges_calibration.py): the model,
-- how many labels it learnt from, and its kappa on the newest held-out labels next to the raw
-- judge's and the then-active calibration's. At most one active version per judge.
CREATE TABLE flywheel.calibrations (
    id           bigserial PRIMARY KEY,
    validator    text NOT NULL,
    version      integer NOT NULL,
    n_labels     integer NOT NULL,
    n_holdout    integer NOT NULL,
    model        jsonb NOT NULL,
    kappa        double precision,
    raw_kappa    double precision,
    active_kappa double precision,
    active       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (validator, version)
);
CREATE UNIQUE INDEX calibrations_one_active ON flywheel.calibrations (validator) WHERE active;
COMMENT ON TABLE flywheel.calibrations IS 'Versioned calibrations of pairwise LLM judges learnt from people''s votes, with held-out kappa';
