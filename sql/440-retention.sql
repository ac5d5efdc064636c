-- Retention and privacy: old trace partitions are dropped, a user can be forgotten, and every
-- deletion is recorded (counts, not data) in flywheel.deletion_audit.

-- Every column that names a trace, in every flywheel table but traces itself: found through the
-- catalog, so tables that other parts add later (embeddings, judge jobs, preferences, golden
-- sets...) are covered without being listed here.
CREATE OR REPLACE FUNCTION flywheel._trace_key_columns()
RETURNS TABLE (table_name name, column_name name)
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT c.relname, a.attname
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relnamespace = 'flywheel'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND c.relname <> 'traces'
      AND a.atttypid IN ('bigint'::regtype, 'integer'::regtype)
      AND (a.attname IN ('trace_id', 'trace_a', 'trace_b') OR a.attname LIKE '%\_trace\_id')
    ORDER BY 1, 2
$$;

-- Deletes the rows of every trace-keyed table that name a trace of `source` (a query returning
-- trace ids), then reports the counts per table.column.
CREATE OR REPLACE FUNCTION flywheel._delete_trace_dependents(source text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _col    record;
    _n      bigint;
    _counts jsonb := '{}';
BEGIN
    FOR _col IN SELECT * FROM flywheel._trace_key_columns() LOOP
        IF _col.table_name = '_insert_results' THEN  -- a packed row holds several results
            EXECUTE format('WITH d AS (DELETE FROM flywheel._insert_results d WHERE d.trace_id IN (%s)'
                           ' RETURNING cardinality(d.validator_ids) AS n) SELECT coalesce(sum(n), 0) FROM d', source)
            INTO _n;
        ELSE
            EXECUTE format('DELETE FROM flywheel.%I d WHERE d.%I IN (%s)', _col.table_name, _col.column_name, source);
            GET DIAGNOSTICS _n = ROW_COUNT;
        END IF;
        IF _n > 0 THEN
            -- Results are counted under the name users know, wherever they were stored.
            _counts := flywheel._add_counts(_counts, jsonb_build_object(
                CASE WHEN _col.table_name IN ('_results', '_insert_results') THEN 'validation_results'
                     ELSE _col.table_name END || '.' || _col.column_name, _n));
        END IF;
    END LOOP;
    RETURN _counts;
END
$$;

-- {"a": 1} + {"a": 2, "b": 1} = {"a": 3, "b": 1}
CREATE OR REPLACE FUNCTION flywheel._add_counts(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(k, v), '{}')
    FROM (SELECT k, sum(v::bigint) AS v
          FROM (SELECT * FROM jsonb_each_text(a) UNION ALL SELECT * FROM jsonb_each_text(b)) x(k, v) GROUP BY k) s
$$;

-- Deletes a user's traces and everything keyed by them (feedback, labels, results, judge jobs,
-- embeddings, ...) and every row of a flywheel table whose user_id is theirs; records the
-- deletion with a hash of the id. Materialized metrics hold only aggregates and drop the rows
-- at their next refresh; the rollups are marked for it here.
CREATE OR REPLACE FUNCTION flywheel.forget_user(user_id text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER  -- every table, whatever its row-level security
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _counts jsonb;
    _tbl    record;
    _n      bigint;
    _source text := format('SELECT t.id FROM flywheel.traces t WHERE t.user_id = %L', user_id);
BEGIN
    IF user_id IS NULL OR user_id = '' THEN
        RAISE EXCEPTION 'forget_user: user_id must be given';
    END IF;
    _counts := flywheel._delete_trace_dependents(_source);
    -- Rows that carry the user's id themselves (feedback they gave on other traces, ...).
    FOR _tbl IN
        SELECT c.relname FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
        WHERE c.relnamespace = 'flywheel'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname <> 'traces' AND a.atttypid = 'text'::regtype
        ORDER BY 1
    LOOP
        EXECUTE format('DELETE FROM flywheel.%I d WHERE d.user_id = $1', _tbl.relname) USING user_id;
        GET DIAGNOSTICS _n = ROW_COUNT;
        IF _n > 0 THEN
            _counts := _counts || jsonb_build_object(_tbl.relname || '.user_id', _n);
        END IF;
    END LOOP;
    DELETE FROM flywheel.traces t WHERE t.user_id = forget_user.user_id;
    GET DIAGNOSTICS _n = ROW_COUNT;
    _counts := _counts || jsonb_build_object('traces', _n);
    INSERT INTO flywheel.deletion_audit (reason, subject_hash, counts)
    VALUES ('forget_user', encode(sha256(convert_to(user_id, 'UTF8')), 'hex'), _counts);
    RETURN _counts;
END
$$;
COMMENT ON FUNCTION flywheel.forget_user(text) IS
    'Deletes a user''s traces and everything keyed by them, and records the deletion with a hash of the id.';

-- Sets how long traces are kept (NULL: forever) and schedules the daily retention job.
CREATE OR REPLACE FUNCTION flywheel.set_retention(keep interval) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    IF keep IS NOT NULL AND keep < interval '1 day' THEN
        RAISE EXCEPTION 'set_retention: keep at least a day of traces, not %', keep;
    END IF;
    UPDATE flywheel.retention SET keep = set_retention.keep, updated_at = now();
END
$$;
COMMENT ON FUNCTION flywheel.set_retention(interval) IS
    'Sets how long traces are kept (NULL: forever) and schedules the daily retention job.';

-- Drops every trace partition that ends before now() - keep, and deletes older rows from the
-- default partition, with everything keyed by those traces. Returns what it deleted.
CREATE OR REPLACE FUNCTION flywheel.apply_retention() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _keep    interval;
    _cutoff  timestamptz;
    _part    record;
    _counts  jsonb := '{}';
    _part_counts jsonb;
    _dropped text[] := '{}';
    _n       bigint;
    _total   bigint := 0;
BEGIN
    SELECT r.keep INTO _keep FROM flywheel.retention r;
    IF _keep IS NULL THEN
        RETURN jsonb_build_object('retention', 'keep forever');
    END IF;
    _cutoff := now() - _keep;
    -- Partitions wholly before the cutoff: their upper bound from the catalog (our monthly ones,
    -- or pg_partman's).
    FOR _part IN
        SELECT c.relname,
               (regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_bound
        FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'flywheel.traces'::regclass
          AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
    LOOP
        CONTINUE WHEN _part.upper_bound IS NULL OR _part.upper_bound > _cutoff;
        _part_counts := flywheel._delete_trace_dependents(format('SELECT p.id FROM flywheel.%I p', _part.relname));
        EXECUTE format('SELECT count(*) FROM flywheel.%I', _part.relname) INTO _n;
        EXECUTE format('DROP TABLE flywheel.%I', _part.relname);
        _total := _total + _n;
        _dropped := _dropped || _part.relname::text;
        _counts := flywheel._add_counts(_counts, _part_counts);
    END LOOP;
    _part_counts := flywheel._delete_trace_dependents(
        format('SELECT p.id FROM flywheel._traces_default p WHERE p.created_at < %L', _cutoff));
    _counts := flywheel._add_counts(_counts, _part_counts);
    DELETE FROM flywheel._traces_default p WHERE p.created_at < _cutoff;
    GET DIAGNOSTICS _n = ROW_COUNT;
    _total := _total + _n;
    _counts := _counts || jsonb_build_object('traces', _total, 'dropped_partitions', to_jsonb(_dropped));
    -- (The delete triggers of results and feedback marked the rollup days to recompute.)
    IF _total > 0 THEN
        INSERT INTO flywheel.deletion_audit (reason, cutoff, counts) VALUES ('retention', _cutoff, _counts);
    END IF;
    RETURN _counts;
END
$$;
COMMENT ON FUNCTION flywheel.apply_retention() IS
    'Deletes the traces older than the retention period (whole partitions where it can) and everything keyed by them.';

SELECT flywheel._schedule('flywheel_retention', '17 3 * * *');

-- The catalog's comments of this area's tables (created in migrations/0410): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.retention IS
    'How long traces (and everything keyed by them) are kept; NULL keeps them forever.';
COMMENT ON TABLE flywheel.deletion_audit IS
    'What retention and forget_user deleted and why: counts per table, a forgotten user only as a hash of the id.';
