-- flywheel.validation_results: every verdict, one row per (trace, validator, validator version).
-- The insert trigger packs a trace's code results into one row of _insert_results; LLM judges,
-- humans, validate_traces() and revalidate() write one row per result into _results
-- (migrations/0501-packed-results.sql says why). This view is the one place that reads both;
-- its INSTEAD OF triggers let an admin INSERT, UPDATE and DELETE results as in a table.
CREATE OR REPLACE VIEW flywheel.validation_results AS
SELECT r.trace_id, r.validator_id, r.validator_version, r.status, r.score, r.label, r.details, r.judged_by, r.created_at
FROM flywheel._results r
UNION ALL
SELECT p.trace_id, u.validator_id, u.validator_version, u.status, u.score, u.label, coalesce(u.details::jsonb, '{}'),
       'code', p.created_at
FROM flywheel._insert_results p
CROSS JOIN LATERAL unnest(p.validator_ids, p.validator_versions, p.statuses, p.scores, p.labels, p.details)
    AS u(validator_id, validator_version, status, score, label, details);

ALTER VIEW flywheel.validation_results ALTER COLUMN details SET DEFAULT '{}';
ALTER VIEW flywheel.validation_results ALTER COLUMN judged_by SET DEFAULT 'code';
ALTER VIEW flywheel.validation_results ALTER COLUMN created_at SET DEFAULT now();

-- The results joined with their traces, for queries that filter or group by the trace (the
-- built-in metrics). Each table of results is joined with traces on its own, so that a filter
-- on the trace reaches both joins and the planner sizes each join from its own table's
-- statistics. Joining traces with the view above instead unnests every packed row before the
-- join (PostgreSQL pushes no join clause into a UNION ALL of joins): 5x slower for one app's
-- last week at 1M traces (metrics benchmark). Set-returning functions in the select list, not a LATERAL unnest:
-- no Memoize node keyed on the arrays.
CREATE OR REPLACE VIEW flywheel._trace_results AS
SELECT t.id AS trace_id, t.created_at, t.app, t.node, t.model, t.prompt_version, t.shadow,
       r.validator_id, r.validator_version, r.status, r.label
FROM flywheel.traces t
JOIN flywheel._results r ON r.trace_id = t.id
UNION ALL
SELECT t.id, t.created_at, t.app, t.node, t.model, t.prompt_version, t.shadow,
       unnest(p.validator_ids), unnest(p.validator_versions), unnest(p.statuses), unnest(p.labels)
FROM flywheel.traces t
JOIN flywheel._insert_results p ON p.trace_id = t.id;

-- Where (trace, validator, version) sits in its trace's packed row, if it does (1-based).
CREATE OR REPLACE FUNCTION flywheel._packed_position(trace_id bigint, validator_id bigint, validator_version integer)
RETURNS integer
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT e.i::integer
    FROM flywheel._insert_results p,
         unnest(p.validator_ids, p.validator_versions) WITH ORDINALITY AS e(v, n, i)
    WHERE p.trace_id = _packed_position.trace_id AND e.v = _packed_position.validator_id
      AND e.n = _packed_position.validator_version
    LIMIT 1
$$;

-- Removes one result from its trace's packed row (the row goes when it empties).
CREATE OR REPLACE FUNCTION flywheel._unpack_result(trace_id bigint, at integer) RETURNS void
LANGUAGE sql
SET search_path TO pg_catalog, pg_temp
AS $$
    DELETE FROM flywheel._insert_results p
    WHERE p.trace_id = _unpack_result.trace_id AND cardinality(p.validator_ids) = 1;
    UPDATE flywheel._insert_results p
    SET validator_ids = p.validator_ids[:at - 1] || p.validator_ids[at + 1:],
        validator_versions = p.validator_versions[:at - 1] || p.validator_versions[at + 1:],
        statuses = p.statuses[:at - 1] || p.statuses[at + 1:],
        scores = p.scores[:at - 1] || p.scores[at + 1:],
        labels = p.labels[:at - 1] || p.labels[at + 1:],
        details = p.details[:at - 1] || p.details[at + 1:]
    WHERE p.trace_id = _unpack_result.trace_id;
$$;

CREATE OR REPLACE FUNCTION flywheel._validation_results_write() RETURNS trigger
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _at integer;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        _at := flywheel._packed_position(OLD.trace_id, OLD.validator_id, OLD.validator_version);
        IF _at IS NULL THEN
            DELETE FROM flywheel._results r
            WHERE r.trace_id = OLD.trace_id AND r.validator_id = OLD.validator_id
              AND r.validator_version = OLD.validator_version;
        ELSIF TG_OP = 'UPDATE' AND (NEW.trace_id, NEW.validator_id, NEW.validator_version, NEW.judged_by)
                                   IS NOT DISTINCT FROM (OLD.trace_id, OLD.validator_id, OLD.validator_version, 'code') THEN
            UPDATE flywheel._insert_results p
            SET statuses[_at] = NEW.status, scores[_at] = NEW.score, labels[_at] = NEW.label,
                details[_at] = nullif(NEW.details, '{}')::text, created_at = NEW.created_at
            WHERE p.trace_id = OLD.trace_id;
            RETURN NEW;
        ELSE
            PERFORM flywheel._unpack_result(OLD.trace_id, _at);
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
    END IF;
    IF flywheel._packed_position(NEW.trace_id, NEW.validator_id, NEW.validator_version) IS NOT NULL THEN
        RAISE EXCEPTION 'duplicate result for trace %, validator %, version %',
            NEW.trace_id, NEW.validator_id, NEW.validator_version USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO flywheel._results (trace_id, validator_id, validator_version, status, score, label, details, judged_by,
                                   created_at)
    VALUES (NEW.trace_id, NEW.validator_id, NEW.validator_version, NEW.status, NEW.score, NEW.label,
            coalesce(NEW.details, '{}'), coalesce(NEW.judged_by, 'code'), coalesce(NEW.created_at, now()));
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER validation_results_write INSTEAD OF INSERT OR UPDATE OR DELETE ON flywheel.validation_results
    FOR EACH ROW EXECUTE FUNCTION flywheel._validation_results_write();

-- Code results of validate_traces() and revalidate(), upserted where each already is: in its
-- trace's packed row when the insert trigger wrote it, else as a row of _results (a judge's or
-- a human's verdict there is never overwritten).
CREATE OR REPLACE FUNCTION flywheel._upsert_code_results(
    trace_ids bigint[], validator_ids bigint[], validator_versions integer[], statuses text[],
    scores double precision[], labels text[], details jsonb[]
) RETURNS void
LANGUAGE sql
SET search_path TO pg_catalog, pg_temp
AS $$
    WITH fresh AS (
        SELECT * FROM unnest(trace_ids, validator_ids, validator_versions, statuses, scores, labels, details)
            AS f(t, v, n, s, sc, l, d)
    ), repacked AS (
        SELECT p.trace_id,
               array_agg(CASE WHEN f.t IS NULL THEN e.s ELSE f.s END ORDER BY e.i) AS statuses,
               array_agg(CASE WHEN f.t IS NULL THEN e.sc ELSE f.sc END ORDER BY e.i) AS scores,
               array_agg(CASE WHEN f.t IS NULL THEN e.l ELSE f.l END ORDER BY e.i) AS labels,
               array_agg(CASE WHEN f.t IS NULL THEN e.d ELSE nullif(f.d, '{}')::text END ORDER BY e.i) AS details
        FROM flywheel._insert_results p
        CROSS JOIN LATERAL unnest(p.validator_ids, p.validator_versions, p.statuses, p.scores, p.labels, p.details)
            WITH ORDINALITY AS e(v, n, s, sc, l, d, i)
        LEFT JOIN fresh f ON f.t = p.trace_id AND f.v = e.v AND f.n = e.n
        WHERE p.trace_id = ANY (_upsert_code_results.trace_ids)
        GROUP BY p.trace_id
        HAVING bool_or(f.t IS NOT NULL)
    ), packed AS (
        UPDATE flywheel._insert_results p
        SET statuses = r.statuses, scores = r.scores, labels = r.labels, details = r.details
        FROM repacked r WHERE p.trace_id = r.trace_id
    )
    INSERT INTO flywheel._results AS r (trace_id, validator_id, validator_version, status, score, label, details)
    SELECT f.t, f.v, f.n, f.s, f.sc, f.l, coalesce(f.d, '{}')
    FROM fresh f
    WHERE flywheel._packed_position(f.t, f.v, f.n) IS NULL
    ON CONFLICT ON CONSTRAINT _results_key DO UPDATE
    SET status = EXCLUDED.status, score = EXCLUDED.score, label = EXCLUDED.label,
        details = EXCLUDED.details, created_at = now()
    WHERE r.judged_by = 'code';
$$;
