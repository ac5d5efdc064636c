-- Packed insert-path results (issue 3's performance targets): the insert trigger wrote about
-- six validation_results rows per trace (one per validator), and a row with its index entry
-- costs as much as the trace's own insert. It now writes one row per trace, with the trace's
-- results as parallel arrays, into _insert_results; results written off the insert path
-- (LLM judges, humans, validate_traces, revalidate) stay one row each in _results. The public
-- flywheel.validation_results becomes a view over both (sql/105-validation-results.sql).

-- _evaluate returns where each trace's results sit (p_ columns): a new signature.
DROP FUNCTION IF EXISTS flywheel._evaluate(text, text[], bigint[], text[], text[], text[], text[], text[], text[],
    text[], text[], double precision[], integer[], integer[], double precision[], text[]);

ALTER TABLE flywheel.validation_results RENAME TO _results;
ALTER TABLE flywheel._results
    RENAME CONSTRAINT validation_results_trace_id_validator_id_validator_version_key TO _results_key;
ALTER TABLE flywheel._results RENAME CONSTRAINT validation_results_status_check TO _results_status_check;
ALTER TABLE flywheel._results RENAME CONSTRAINT validation_results_judged_by_check TO _results_judged_by_check;
ALTER INDEX flywheel.validation_results_created_at RENAME TO _results_created_at;
ALTER INDEX flywheel.validation_results_judged_validator_created_at RENAME TO _results_judged_validator_created_at;
ALTER SEQUENCE flywheel.validation_results_id_seq RENAME TO _results_id_seq;
-- sql/ re-creates these under the table's new name.
DROP TRIGGER IF EXISTS validation_results_examples_insert ON flywheel._results;
DROP TRIGGER IF EXISTS validation_results_examples_update ON flywheel._results;
DROP TRIGGER IF EXISTS validation_results_examples_delete ON flywheel._results;
DROP TRIGGER IF EXISTS validation_results_mark_rollup_insert ON flywheel._results;
DROP TRIGGER IF EXISTS validation_results_mark_rollup_update ON flywheel._results;
DROP TRIGGER IF EXISTS validation_results_mark_rollup_delete ON flywheel._results;

-- One row per validated trace: element i of each array is one result (validator_ids[i] at
-- validator_versions[i]); judged_by is 'code'. A trace is inserted once, so it has one row;
-- nothing needs a unique index to say so.
CREATE TABLE flywheel._insert_results (
    trace_id           bigint NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    validator_ids      bigint[] NOT NULL,
    validator_versions integer[] NOT NULL,
    statuses           text[] NOT NULL,
    scores             double precision[] NOT NULL,
    labels             text[] NOT NULL,
    -- JSON objects as text, NULL for none ('{}' in the view): parsed when read, not on insert
    -- (jsonb input of every trace's anomaly details was a fifth of the trigger's cost).
    details            text[] NOT NULL
    -- No CHECK that the arrays align: the insert trigger's INSERT runs outside its error
    -- handler, where a failing check would fail the application's INSERT. They align by
    -- construction (validators_runtime.packed_rows zips each result's elements).
);
CREATE INDEX _insert_results_trace_id ON flywheel._insert_results (trace_id);
CREATE INDEX _insert_results_created_at ON flywheel._insert_results USING brin (created_at);

-- The view, here too, so that views of the table's old name can be pointed at it below.
CREATE VIEW flywheel.validation_results AS
SELECT r.trace_id, r.validator_id, r.validator_version, r.status, r.score, r.label, r.details, r.judged_by, r.created_at
FROM flywheel._results r
UNION ALL
SELECT p.trace_id, u.validator_id, u.validator_version, u.status, u.score, u.label, coalesce(u.details::jsonb, '{}'),
       'code', p.created_at
FROM flywheel._insert_results p
CROSS JOIN LATERAL unnest(p.validator_ids, p.validator_versions, p.statuses, p.scores, p.labels, p.details)
    AS u(validator_id, validator_version, status, score, label, details);

-- Views that read the table (metric views made by create_metric, say) followed the rename;
-- point them at the view, which holds every result. sql/ re-creates the project's own views.
DO $rebind$
DECLARE
    _v record;
BEGIN
    SET LOCAL search_path TO pg_catalog;  -- view definitions come back schema-qualified
    FOR _v IN
        SELECT DISTINCT c.oid::regclass AS name, c.relkind
        FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class c ON c.oid = w.ev_class
        WHERE d.refobjid = 'flywheel._results'::regclass AND c.oid <> 'flywheel._results'::regclass
          AND c.oid <> 'flywheel.validation_results'::regclass
    LOOP
        BEGIN
            IF _v.relkind <> 'v' THEN
                RAISE EXCEPTION 'a materialized view cannot be redefined in place';
            END IF;
            EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', _v.name,
                           replace(pg_get_viewdef(_v.name), 'flywheel._results', 'flywheel.validation_results'));
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'dbflywheel: % still reads only the results written off the insert path (%); re-create it '
                          'over flywheel.validation_results', _v.name, SQLERRM;
        END;
    END LOOP;
END
$rebind$;
