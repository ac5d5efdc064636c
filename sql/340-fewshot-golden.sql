-- Golden sets: named, versioned sets of traces with expected verdicts or outputs, grown from
-- bad production cases; `dbflywheel eval` runs the validators over one (the release gate).

-- Adds a trace to a golden set (creating the set), or replaces its expectation there, and
-- returns the set's new version. Expected verdicts default to the trace's latest human verdict
-- per validator; the expected output to its latest correction, else its expected column.
CREATE OR REPLACE FUNCTION flywheel.promote_to_golden(
    trace_id bigint,
    set_name text,
    expected_verdicts jsonb DEFAULT NULL,
    expected_output text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    _verdicts jsonb := expected_verdicts;
    _output text := expected_output;
    _version integer;
    _bad text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM flywheel.traces t WHERE t.id = promote_to_golden.trace_id) THEN
        RAISE EXCEPTION 'promote_to_golden: trace % does not exist', coalesce(trace_id::text, 'NULL')
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF _verdicts IS NULL THEN
        SELECT coalesce(jsonb_object_agg(s.validator, s.verdict), '{}') INTO _verdicts
        FROM (SELECT DISTINCT ON (l.validator) l.validator, l.verdict FROM flywheel.labels l
              WHERE l.trace_id = promote_to_golden.trace_id AND l.verdict IS NOT NULL
              ORDER BY l.validator, l.created_at DESC, l.id DESC) s;
    ELSIF jsonb_typeof(_verdicts) <> 'object' THEN
        RAISE EXCEPTION 'promote_to_golden: expected_verdicts is an object {"validator": "pass" | "fail"}, not %', _verdicts;
    END IF;
    SELECT key INTO _bad FROM jsonb_each(_verdicts) WHERE value NOT IN ('"pass"', '"fail"') LIMIT 1;
    IF _bad IS NOT NULL THEN
        RAISE EXCEPTION 'promote_to_golden: the expected verdict of % must be "pass" or "fail", not %', _bad, _verdicts -> _bad;
    END IF;
    IF _output IS NULL THEN
        SELECT coalesce(
            (SELECT f.corrected_output FROM flywheel.feedback f
             WHERE f.trace_id = promote_to_golden.trace_id AND f.kind = 'correction'
             ORDER BY f.created_at DESC, f.id DESC LIMIT 1),
            (SELECT t.expected FROM flywheel.traces t WHERE t.id = promote_to_golden.trace_id))
        INTO _output;
    END IF;
    IF _verdicts = '{}' AND _output IS NULL THEN
        RAISE EXCEPTION 'promote_to_golden: trace % has nothing to expect', trace_id
            USING HINT = 'label it (flywheel.labels), correct it (record_feedback ... ''correction''), '
                         'or pass expected_verdicts / expected_output';
    END IF;
    INSERT INTO flywheel.golden_sets AS g (name) VALUES (set_name)
    ON CONFLICT ON CONSTRAINT golden_sets_pkey DO UPDATE SET version = g.version + 1, updated_at = now()
    RETURNING g.version INTO _version;
    UPDATE flywheel.golden_set_items i SET removed_in_version = _version
    WHERE i.set_name = promote_to_golden.set_name AND i.trace_id = promote_to_golden.trace_id
      AND i.removed_in_version IS NULL;
    INSERT INTO flywheel.golden_set_items (set_name, trace_id, expected_verdicts, expected_output, added_in_version)
    VALUES (set_name, trace_id, _verdicts, _output, _version);
    RETURN _version;
END
$$;
COMMENT ON FUNCTION flywheel.promote_to_golden(bigint, text, jsonb, text) IS
    'Adds a trace to a golden set (or replaces its expectation there) and returns the set''s new version.';

-- Takes a trace out of a golden set (it stays in the older versions); returns the new version.
CREATE OR REPLACE FUNCTION flywheel.remove_from_golden(trace_id bigint, set_name text) RETURNS integer
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    _version integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM flywheel.golden_set_items i
                   WHERE i.set_name = remove_from_golden.set_name AND i.trace_id = remove_from_golden.trace_id
                     AND i.removed_in_version IS NULL) THEN
        RAISE EXCEPTION 'remove_from_golden: trace % is not in golden set %', trace_id, quote_literal(set_name);
    END IF;
    UPDATE flywheel.golden_sets g SET version = g.version + 1, updated_at = now()
    WHERE g.name = set_name RETURNING g.version INTO _version;
    UPDATE flywheel.golden_set_items i SET removed_in_version = _version
    WHERE i.set_name = remove_from_golden.set_name AND i.trace_id = remove_from_golden.trace_id
      AND i.removed_in_version IS NULL;
    RETURN _version;
END
$$;
COMMENT ON FUNCTION flywheel.remove_from_golden(bigint, text) IS
    'Takes a trace out of a golden set (its older versions keep it) and returns the new version.';

-- The traces of a golden set as it was at a version (default: the current one).
CREATE OR REPLACE FUNCTION flywheel.golden_set_traces(set_name text, version integer DEFAULT NULL)
RETURNS TABLE (trace_id bigint, expected_verdicts jsonb, expected_output text, set_version integer)
LANGUAGE plpgsql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    _current integer;
    _version integer;
BEGIN
    SELECT g.version INTO _current FROM flywheel.golden_sets g WHERE g.name = golden_set_traces.set_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no golden set named %', coalesce(quote_literal(golden_set_traces.set_name), 'NULL')
            USING HINT = 'grow one with flywheel.promote_to_golden(trace_id, set_name)';
    END IF;
    _version := coalesce(golden_set_traces.version, _current);
    IF _version < 1 OR _version > _current THEN
        RAISE EXCEPTION 'golden set % has versions 1 to %, not %', golden_set_traces.set_name, _current, _version;
    END IF;
    RETURN QUERY
    SELECT i.trace_id, i.expected_verdicts, i.expected_output, _version
    FROM flywheel.golden_set_items i
    WHERE i.set_name = golden_set_traces.set_name AND i.added_in_version <= _version
      AND (i.removed_in_version IS NULL OR i.removed_in_version > _version)
    ORDER BY i.trace_id;
END
$$;
COMMENT ON FUNCTION flywheel.golden_set_traces(text, integer) IS
    'The traces and expectations of a golden set at a version (default: the current one).';

-- The catalog's comments of this area's tables (created in migrations/0300): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.golden_sets IS
    'Named, versioned sets of traces with expected verdicts or outputs: the release gate of `dbflywheel eval`.';
COMMENT ON TABLE flywheel.golden_set_items IS
    'The traces of the golden sets, with the versions they were added and removed in, so an old version can be re-run.';
