-- Metrics as views: create_metric, refresh, the refresh log and status, schedules (pg_cron or
-- `dbflywheel refresh --loop`), and incremental daily rollups.

-- When a pg_cron-style schedule last fired at or before `at` (PL/Python: plpython/metrics_cron.py).
CREATE OR REPLACE FUNCTION flywheel._cron_previous_fire_epoch(schedule text, at_epoch double precision)
RETURNS double precision
LANGUAGE plpython3u IMMUTABLE STRICT
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: metrics_cron.sql_previous_fire $python$;

CREATE OR REPLACE FUNCTION flywheel._cron_period_seconds(schedule text, at_epoch double precision)
RETURNS double precision
LANGUAGE plpython3u IMMUTABLE STRICT
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: metrics_cron.sql_period $python$;

CREATE OR REPLACE FUNCTION flywheel._cron_previous_fire(schedule text, at timestamptz DEFAULT now())
RETURNS timestamptz
LANGUAGE sql STABLE STRICT
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT to_timestamp(flywheel._cron_previous_fire_epoch(schedule, extract(epoch FROM at)::double precision)) $$;

CREATE OR REPLACE FUNCTION flywheel._pg_cron_installed() RETURNS boolean
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') $$;

-- What a schedule runs, from its name alone: a metric's refresh or one of the fixed system tasks.
-- No command text is ever stored by a caller or read back from a table to be executed.
CREATE OR REPLACE FUNCTION flywheel._scheduled_command(job text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER  -- pg_cron's flywheel_scheduler asks it; it reads the metric registry
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    CASE job
        WHEN 'flywheel_check_drift' THEN RETURN 'SELECT flywheel.check_drift()';
        WHEN 'flywheel_check_satisfaction_trend' THEN RETURN 'SELECT flywheel.check_satisfaction_trend()';
        WHEN 'flywheel_advance_canaries' THEN RETURN 'SELECT flywheel.advance_canaries()';
        WHEN 'flywheel_retention' THEN RETURN 'SELECT flywheel.apply_retention()';
        WHEN 'flywheel_anomaly_baselines' THEN RETURN 'SELECT flywheel.refresh_anomaly_baselines()';
        ELSE
            IF job LIKE 'flywheel\_metric\_%' AND EXISTS (
                    SELECT 1 FROM flywheel.metrics m WHERE m.name = substr(job, length('flywheel_metric_') + 1)) THEN
                RETURN format('CALL flywheel.refresh(%L)', substr(job, length('flywheel_metric_') + 1));
            END IF;
    END CASE;
    RAISE EXCEPTION 'no scheduled task is named %', job;
END
$$;

-- pg_cron runs a job as the role that scheduled it: these three are owned by flywheel_scheduler
-- (see sql/499-privileges-metrics.sql), so the jobs run as that login, which may only call the
-- scheduled tasks.
CREATE OR REPLACE FUNCTION flywheel._cron_schedule(job text, schedule text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING job, schedule, flywheel._scheduled_command(job);  -- an upsert on the name
END
$$;

CREATE OR REPLACE FUNCTION flywheel._cron_unschedule(job text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _exists boolean;
BEGIN
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1)' INTO _exists USING job;
    IF _exists THEN
        EXECUTE 'SELECT cron.unschedule($1)' USING job;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION flywheel._cron_active_jobs() RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _jobs text[];
BEGIN
    EXECUTE 'SELECT coalesce(array_agg(jobname), ''{}'') FROM cron.job WHERE active' INTO _jobs;
    RETURN _jobs;
END
$$;

-- Before any job is scheduled: the three functions above belong to flywheel_scheduler.
ALTER FUNCTION flywheel._cron_schedule(text, text) OWNER TO flywheel_scheduler;
ALTER FUNCTION flywheel._cron_unschedule(text) OWNER TO flywheel_scheduler;
ALTER FUNCTION flywheel._cron_active_jobs() OWNER TO flywheel_scheduler;
REVOKE ALL ON FUNCTION flywheel._cron_schedule(text, text), flywheel._cron_unschedule(text),
    flywheel._cron_active_jobs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flywheel._cron_schedule(text, text), flywheel._cron_unschedule(text),
    flywheel._cron_active_jobs() TO flywheel_owner;
GRANT USAGE ON SCHEMA flywheel TO flywheel_scheduler;
GRANT EXECUTE ON FUNCTION flywheel._scheduled_command(text) TO flywheel_scheduler;
DO $cron$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        GRANT USAGE ON SCHEMA cron TO flywheel_scheduler;
    END IF;
END
$cron$;

-- Records a schedule and, where pg_cron is installed, upserts its job of the same name.
CREATE OR REPLACE FUNCTION flywheel._schedule(job text, schedule text) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _command text := flywheel._scheduled_command(job);
BEGIN
    BEGIN
        PERFORM flywheel._cron_previous_fire(schedule);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION '%', regexp_replace(SQLERRM, '^plpy\.Error: ', '')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'a pg_cron schedule: five fields (''*/5 * * * *''), @hourly/@daily/..., or ''30 seconds''';
    END;
    INSERT INTO flywheel.schedules AS s (name, schedule, command) VALUES (job, schedule, _command)
    ON CONFLICT (name) DO UPDATE SET schedule = EXCLUDED.schedule, command = EXCLUDED.command
    WHERE (s.schedule, s.command) IS DISTINCT FROM (EXCLUDED.schedule, EXCLUDED.command);
    IF flywheel._pg_cron_installed() THEN
        PERFORM flywheel._cron_schedule(job, schedule);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION flywheel._unschedule(job text) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM flywheel.schedules WHERE name = job;
    IF flywheel._pg_cron_installed() THEN
        PERFORM flywheel._cron_unschedule(job);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION flywheel._schedule_metric(metric text) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _schedule text;
BEGIN
    SELECT m.schedule INTO _schedule FROM flywheel.metrics m WHERE m.name = metric;
    IF _schedule IS NULL THEN
        PERFORM flywheel._unschedule('flywheel_metric_' || metric);
    ELSE
        PERFORM flywheel._schedule('flywheel_metric_' || metric, _schedule);
    END IF;
END
$$;

-- (Re)creates flywheel.metric_<name> as its registry row says, owned by flywheel_owner (the
-- public metric functions that call it are SECURITY DEFINER). The stored query is one statement
-- (checked by PostgreSQL's parser before anything executes it), and the view made from it may
-- reach only the extension's own relations through non-volatile functions (_view_problem).
CREATE OR REPLACE FUNCTION flywheel._apply_metric(metric text) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _m       flywheel.metrics;
    _rel     text := 'metric_' || metric;
    _kind    "char";
    _columns text;
    _problem text;
    _comment text;  -- what \dv+ says of the view: kept when the view is made again
BEGIN
    SELECT * INTO STRICT _m FROM flywheel.metrics WHERE name = metric;
    -- Built-in metrics are the install script's own SQL; anyone else's is checked first, parsed
    -- and planned as flywheel_sql_checker (read-only, rolled back): the owner's CREATE VIEW below
    -- parses it too, and parsing runs the input functions of its literals (a domain's CHECK).
    _problem := CASE WHEN NOT _m.builtin THEN flywheel._one_select_problem(_m.query, true) END;
    IF _problem IS NOT NULL THEN
        RAISE EXCEPTION 'metric %: the query must be one SELECT: %', metric, _problem
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    _problem := CASE WHEN NOT _m.builtin THEN flywheel._unsafe_calls(_m.query, ARRAY['flywheel']) END;
    IF _problem IS NOT NULL THEN
        RAISE EXCEPTION 'metric %: the query is refused: %', metric, _problem
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'a metric reads the flywheel schema through non-volatile functions';
    END IF;
    SELECT c.relkind, pg_catalog.obj_description(c.oid, 'pg_class') INTO _kind, _comment FROM pg_catalog.pg_class c
    WHERE c.relname = _rel AND c.relnamespace = 'flywheel'::regnamespace;
    IF _kind = 'v' THEN
        EXECUTE format('DROP VIEW flywheel.%I', _rel);
    ELSIF _kind = 'm' THEN
        EXECUTE format('DROP MATERIALIZED VIEW flywheel.%I', _rel);
    ELSIF _kind IS NOT NULL THEN
        RAISE EXCEPTION 'flywheel.% exists and is not a metric view', _rel;
    END IF;

    IF _m.kind <> 'rollup' THEN
        DELETE FROM flywheel._rollup_dirty_days d WHERE d.metric = _m.name;  -- nobody will read them
    END IF;
    IF _m.kind = 'view' THEN
        EXECUTE format('CREATE VIEW flywheel.%I AS %s', _rel, _m.query);
    ELSIF _m.kind = 'rollup' THEN
        EXECUTE format('CREATE VIEW flywheel.%I AS SELECT * FROM flywheel.%I', _rel, _m.rollup_table);
    ELSE
        -- WITH NO DATA on a line of its own: a trailing '--' comment in the query cannot eat it
        -- (the view would be filled, running the query as the owner, before the check below).
        EXECUTE format(E'CREATE MATERIALIZED VIEW flywheel.%I AS %s\nWITH NO DATA', _rel, _m.query);
    END IF;
    _problem := CASE WHEN NOT _m.builtin THEN flywheel._view_problem(format('flywheel.%I', _rel)::regclass, ARRAY['flywheel']) END;
    IF _problem IS NOT NULL THEN
        RAISE EXCEPTION 'metric %: the query reaches %', metric, _problem
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'a metric reads the flywheel schema through non-volatile functions';
    END IF;
    IF _m.kind = 'materialized' THEN
        EXECUTE format('REFRESH MATERIALIZED VIEW flywheel.%I', _rel);
        -- REFRESH ... CONCURRENTLY needs a unique index over plain columns: all the columns that
        -- btree can index, NULLs equal (a metric row is identified by its whole content).
        SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO _columns
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = format('flywheel.%I', _rel)::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_opclass o JOIN pg_catalog.pg_am am ON am.oid = o.opcmethod
                      WHERE am.amname = 'btree' AND o.opcdefault
                        AND o.opcintype IN (a.atttypid, (SELECT t.typbasetype FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid)))
          AND a.attnum <= 32;
        BEGIN
            EXECUTE format('CREATE UNIQUE INDEX %I ON flywheel.%I (%s) NULLS NOT DISTINCT',
                           _rel || '_unique', _rel, _columns);
        EXCEPTION WHEN unique_violation OR syntax_error OR feature_not_supported THEN
            RAISE NOTICE 'metric %: its rows are not unique, so it is refreshed without CONCURRENTLY (readers wait)', metric;
        END;
    END IF;
    EXECUTE format('COMMENT ON %s flywheel.%I IS %L', CASE _m.kind WHEN 'materialized' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
                   _rel, coalesce(_comment, format('The metric %s, made by flywheel.create_metric.', metric)));
    -- A view made again has lost the install's grants: give back what sql/900 and the area files
    -- grant on every metric view (the reviewers' role exists once sql/630 has run).
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON flywheel.%I TO flywheel_admin', _rel);
    EXECUTE format('GRANT SELECT ON flywheel.%I TO flywheel_reader, flywheel_sql_checker', _rel);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = 'flywheel_reviewer') THEN
        EXECUTE format('GRANT SELECT ON flywheel.%I TO flywheel_reviewer', _rel);
    END IF;
    PERFORM flywheel._schedule_metric(metric);
    IF _m.kind = 'rollup' THEN
        CALL flywheel.refresh(metric, true);
    END IF;
END
$$;

-- Makes flywheel.metric_<name> from a query: a view computed on read, or a materialized view
-- (refreshed by CALL flywheel.refresh(name) and, with a schedule, by pg_cron or the refresh
-- loop). Calling it again replaces the metric and keeps its name.
CREATE OR REPLACE FUNCTION flywheel.create_metric(
    name text, query text, materialized boolean DEFAULT false, schedule text DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER  -- admins change the registry only through it
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _builtin boolean;
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,48}$' THEN
        RAISE EXCEPTION 'create_metric: % is not a metric name', coalesce(quote_literal(name), 'NULL')
            USING HINT = 'lower-case letters, digits and _, starting with a letter, at most 49 characters';
    END IF;
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'create_metric: the query is empty';
    END IF;
    SELECT m.builtin INTO _builtin FROM flywheel.metrics m WHERE m.name = create_metric.name;
    IF _builtin THEN
        RAISE EXCEPTION 'create_metric: % is a built-in metric', name
            USING HINT = 'switch it with flywheel.set_metric_mode(name, mode, schedule)';
    END IF;
    INSERT INTO flywheel.metrics AS m (name, query, kind, schedule)
    VALUES (create_metric.name, btrim(btrim(query), ';'),
            CASE WHEN materialized THEN 'materialized' ELSE 'view' END, create_metric.schedule)
    ON CONFLICT ON CONSTRAINT metrics_pkey DO UPDATE
        SET query = EXCLUDED.query, kind = EXCLUDED.kind, schedule = EXCLUDED.schedule, updated_at = now();
    PERFORM flywheel._apply_metric(name);
    RETURN format('flywheel.%I', 'metric_' || name);
END
$$;
COMMENT ON FUNCTION flywheel.create_metric(text, text, boolean, text) IS
    'Makes flywheel.metric_<name> from one SELECT: a view computed on read, or a materialized view refreshed on a schedule.';

-- Switches a metric between computed on read ('view'), 'materialized' and, where it has a
-- rollup, 'rollup' (changed days recomputed incrementally), keeping its name.
CREATE OR REPLACE FUNCTION flywheel.set_metric_mode(name text, mode text, schedule text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER  -- admins change the registry only through it
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _m flywheel.metrics;
BEGIN
    SELECT * INTO _m FROM flywheel.metrics m WHERE m.name = set_metric_mode.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'set_metric_mode: no metric named %', name
            USING HINT = 'SELECT name, kind FROM flywheel.metrics lists them';
    END IF;
    IF mode NOT IN ('view', 'materialized', 'rollup') THEN
        RAISE EXCEPTION 'set_metric_mode: mode must be view, materialized or rollup, not %', mode;
    END IF;
    IF mode = 'rollup' AND _m.rollup_table IS NULL THEN
        RAISE EXCEPTION 'set_metric_mode: metric % has no incremental rollup', name
            USING HINT = 'use materialized';
    END IF;
    UPDATE flywheel.metrics m SET kind = mode, schedule = set_metric_mode.schedule, updated_at = now()
    WHERE m.name = set_metric_mode.name;
    PERFORM flywheel._apply_metric(name);
    RETURN format('flywheel.%I', 'metric_' || name);
END
$$;
COMMENT ON FUNCTION flywheel.set_metric_mode(text, text, text) IS
    'Switches a metric between view, materialized and (where it has one) rollup, keeping its name.';

CREATE OR REPLACE FUNCTION flywheel.drop_metric(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER  -- admins change the registry only through it
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _m flywheel.metrics;
BEGIN
    SELECT * INTO _m FROM flywheel.metrics m WHERE m.name = drop_metric.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'drop_metric: no metric named %', name;
    ELSIF _m.builtin THEN
        RAISE EXCEPTION 'drop_metric: % is a built-in metric', name;
    END IF;
    EXECUTE format(CASE _m.kind WHEN 'materialized' THEN 'DROP MATERIALIZED VIEW flywheel.%I' ELSE 'DROP VIEW flywheel.%I' END,
                   'metric_' || name);
    DELETE FROM flywheel.metrics m WHERE m.name = drop_metric.name;
    PERFORM flywheel._unschedule('flywheel_metric_' || name);
END
$$;
COMMENT ON FUNCTION flywheel.drop_metric(text) IS
    'Drops a metric made by create_metric: its view, its schedule and its registration.';

-- Recomputes a rollup: the days marked dirty since the last refresh, or (full) everything.
-- Returns (rows written, days recomputed).
CREATE OR REPLACE FUNCTION flywheel._refresh_rollup(metric text, full_refresh boolean, OUT rows bigint, OUT days integer)
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _m     flywheel.metrics;
    _days  date[];
    _range record;
    _n     bigint;
BEGIN
    SELECT * INTO STRICT _m FROM flywheel.metrics m WHERE m.name = metric;
    rows := 0;
    IF full_refresh THEN
        DELETE FROM flywheel._rollup_dirty_days d WHERE d.metric = _m.name;
        EXECUTE format('DELETE FROM flywheel.%I', _m.rollup_table);
        EXECUTE format('INSERT INTO flywheel.%I %s', _m.rollup_table, flywheel._builtin_metric_sql(_m.name));
        GET DIAGNOSTICS rows = ROW_COUNT;
        EXECUTE format('SELECT count(DISTINCT day)::integer FROM flywheel.%I', _m.rollup_table) INTO days;
        RETURN;
    END IF;
    -- Consumes only committed marks: a writer still in flight leaves its mark for next time.
    WITH consumed AS (DELETE FROM flywheel._rollup_dirty_days d WHERE d.metric = _m.name RETURNING d.day, d.trace_ids),
    marked AS (
        SELECT c.day FROM consumed c WHERE c.day IS NOT NULL
        UNION
        -- one index probe per marked trace (OFFSET 0 keeps it a probe, not a scan of all traces)
        SELECT (t.created_at AT TIME ZONE 'UTC')::date
        FROM (SELECT DISTINCT unnest(c.trace_ids) AS id FROM consumed c WHERE c.trace_ids IS NOT NULL) m
        CROSS JOIN LATERAL (SELECT t.created_at FROM flywheel.traces t WHERE t.id = m.id OFFSET 0) t)
    SELECT coalesce(array_agg(DISTINCT day ORDER BY day), '{}') INTO _days FROM marked;
    days := cardinality(_days);
    IF days = 0 THEN
        RETURN;
    END IF;
    EXECUTE format('DELETE FROM flywheel.%I WHERE day = ANY ($1)', _m.rollup_table) USING _days;
    -- One scan per run of consecutive days (gaps and islands).
    FOR _range IN
        SELECT min(d) AS first_day, max(d) AS last_day
        FROM (SELECT d, d - (row_number() OVER (ORDER BY d))::integer AS island FROM unnest(_days) AS d) x
        GROUP BY island
    LOOP
        EXECUTE format('INSERT INTO flywheel.%I %s', _m.rollup_table, flywheel._builtin_metric_sql(_m.name,
                       _range.first_day::timestamp AT TIME ZONE 'UTC', (_range.last_day + 1)::timestamp AT TIME ZONE 'UTC'));
        GET DIAGNOSTICS _n = ROW_COUNT;
        rows := rows + _n;
    END LOOP;
END
$$;

-- Refreshes one metric and logs it in flywheel.refresh_log; a failure is logged with its error
-- and reported as a WARNING (not raised, which would roll the log row back with it).
-- Materialized views with their unique index refresh CONCURRENTLY (readers never wait);
-- rollups recompute only the changed days unless full_refresh => true.
CREATE OR REPLACE PROCEDURE flywheel.refresh(name text, full_refresh boolean DEFAULT false)
LANGUAGE plpgsql SECURITY DEFINER  -- refreshing a materialized view takes its owner; callers: admins, pg_cron
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _m       flywheel.metrics;
    _rel     text := 'metric_' || name;
    _started timestamptz := clock_timestamp();
    _mode    text;
    _rows    bigint;
    _days    integer;
    _error   text;
BEGIN
    SELECT * INTO _m FROM flywheel.metrics m WHERE m.name = refresh.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'refresh: no metric named %', name USING HINT = 'SELECT name FROM flywheel.metrics lists them';
    END IF;
    IF _m.kind = 'view' THEN
        RAISE NOTICE 'metric % is computed on read: nothing to refresh', name;
        RETURN;
    END IF;
    BEGIN
        IF _m.kind = 'rollup' THEN
            _mode := CASE WHEN full_refresh THEN 'full' ELSE 'incremental' END;
            SELECT r.rows, r.days INTO _rows, _days FROM flywheel._refresh_rollup(name, full_refresh) r;
        ELSE
            _mode := CASE WHEN NOT full_refresh AND EXISTS (
                         SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
                         WHERE c.oid = format('flywheel.%I', _rel)::regclass AND i.indisunique AND c.relispopulated)
                     THEN 'concurrent' ELSE 'full' END;
            EXECUTE format('REFRESH MATERIALIZED VIEW %s flywheel.%I',
                           CASE _mode WHEN 'concurrent' THEN 'CONCURRENTLY' ELSE '' END, _rel);
            EXECUTE format('SELECT count(*) FROM flywheel.%I', _rel) INTO _rows;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        _error := SQLERRM;
    END;
    INSERT INTO flywheel.refresh_log (metric, mode, started_at, finished_at, rows, days, error)
    VALUES (name, _mode, _started, clock_timestamp(), _rows, _days, _error);
    IF _error IS NOT NULL THEN
        RAISE WARNING 'refresh of metric % failed: %', name, _error;
    END IF;
END
$$;
COMMENT ON PROCEDURE flywheel.refresh(text, boolean) IS
    'Refreshes one metric (concurrently where it can, rollups only their changed days) and logs it in refresh_log.';

-- Runs every schedule that is due (its last firing is after its last run) and that pg_cron
-- does not run itself: the work of `dbflywheel refresh --loop` where pg_cron is absent.
-- Each runs in its own subtransaction; a failure is recorded and the others still run.
CREATE OR REPLACE PROCEDURE flywheel.refresh_due(include_pg_cron_jobs boolean DEFAULT false)
LANGUAGE plpgsql SECURITY DEFINER  -- runs only the fixed commands of _scheduled_command
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _s       flywheel.schedules;
    _cron    text[] := '{}';
    _error   text;
BEGIN
    IF flywheel._pg_cron_installed() AND NOT include_pg_cron_jobs THEN
        _cron := flywheel._cron_active_jobs();
    END IF;
    FOR _s IN SELECT * FROM flywheel.schedules s ORDER BY s.name LOOP
        CONTINUE WHEN _s.name = ANY (_cron);
        CONTINUE WHEN _s.last_run_at >= flywheel._cron_previous_fire(_s.schedule, now())
                   OR (_s.last_run_at IS NULL AND _s.created_at >= flywheel._cron_previous_fire(_s.schedule, now())
                       AND _s.name NOT LIKE 'flywheel\_metric\_%');
        _error := NULL;
        BEGIN
            EXECUTE flywheel._scheduled_command(_s.name);  -- never the stored text
        EXCEPTION WHEN OTHERS THEN
            _error := SQLERRM;
        END;
        UPDATE flywheel.schedules s SET last_run_at = now(), last_error = _error WHERE s.name = _s.name;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE flywheel.refresh_due(boolean) IS
    'Runs every due metric schedule that pg_cron does not run itself: the work of `dbflywheel refresh --loop`.';

-- Per metric: kind, schedule, the last refresh, how stale it is against its schedule, the last error.
CREATE OR REPLACE VIEW flywheel.refresh_status AS
SELECT m.name AS metric,
       m.kind,
       m.schedule,
       CASE WHEN m.kind = 'view' THEN 'computed on read'
            WHEN m.schedule IS NULL THEN 'manual'
            WHEN flywheel._pg_cron_installed() THEN 'pg_cron'
            ELSE 'dbflywheel refresh --loop' END AS scheduled_by,
       last.started_at AS last_refresh_at,
       last.duration AS last_duration,
       last.rows AS last_rows,
       ok.finished_at AS last_success_at,
       CASE WHEN m.kind = 'view' OR m.schedule IS NULL THEN NULL
            WHEN ok.started_at >= flywheel._cron_previous_fire(m.schedule, now()) THEN interval '0'
            ELSE now() - greatest(flywheel._cron_previous_fire(m.schedule, now()), m.updated_at) END AS stale_by,
       (m.kind <> 'view' AND m.schedule IS NOT NULL
        AND coalesce(ok.started_at < flywheel._cron_previous_fire(m.schedule, now()), true)
        AND m.updated_at < flywheel._cron_previous_fire(m.schedule, now())) AS is_stale,
       CASE WHEN last.error IS NOT NULL THEN last.error END AS last_error,
       (SELECT count(*) FROM flywheel._rollup_dirty_days d WHERE d.metric = m.name) AS pending_day_marks
FROM flywheel.metrics m
LEFT JOIN LATERAL (SELECT * FROM flywheel.refresh_log l WHERE l.metric = m.name ORDER BY l.started_at DESC LIMIT 1) last ON true
LEFT JOIN LATERAL (SELECT * FROM flywheel.refresh_log l WHERE l.metric = m.name AND l.error IS NULL
                   ORDER BY l.started_at DESC LIMIT 1) ok ON true;
COMMENT ON VIEW flywheel.refresh_status IS
    'Per metric: kind, schedule, last refresh, staleness against its schedule and the last error.';

-- Dirty-day marks for the rollups, set-wise per statement (transition tables): validation
-- results mark their traces' days, feedback its own days.
CREATE OR REPLACE FUNCTION flywheel._mark_pass_rate_days() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER  -- the writer (an app role) has no rights on the marks
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    -- Marks only matter while the metric is a rollup (switching back to one recomputes it all).
    IF NOT EXISTS (SELECT 1 FROM flywheel.metrics m WHERE m.name = 'pass_rate' AND m.kind = 'rollup') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN  -- no lookup of traces, the refresh finds the days (the insert path marks the same way)
        INSERT INTO flywheel._rollup_dirty_days (metric, trace_ids)
        SELECT 'pass_rate', array_agg(n.trace_id) FROM new_rows n HAVING count(*) > 0;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO flywheel._rollup_dirty_days (metric, day)
        SELECT DISTINCT 'pass_rate', (t.created_at AT TIME ZONE 'UTC')::date
        FROM (SELECT DISTINCT n.trace_id FROM new_rows n) n JOIN flywheel.traces t ON t.id = n.trace_id;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO flywheel._rollup_dirty_days (metric, day)
        SELECT DISTINCT 'pass_rate', (t.created_at AT TIME ZONE 'UTC')::date
        FROM (SELECT DISTINCT o.trace_id FROM old_rows o) o JOIN flywheel.traces t ON t.id = o.trace_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION flywheel._mark_satisfaction_days() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER  -- the writer (an app role) has no rights on the marks
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM flywheel.metrics m WHERE m.name = 'satisfaction' AND m.kind = 'rollup') THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO flywheel._rollup_dirty_days (metric, day)
        SELECT DISTINCT 'satisfaction', (n.created_at AT TIME ZONE 'UTC')::date FROM new_rows n
        WHERE n.kind IN ('thumbs', 'rating');
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO flywheel._rollup_dirty_days (metric, day)
        SELECT DISTINCT 'satisfaction', (o.created_at AT TIME ZONE 'UTC')::date FROM old_rows o
        WHERE o.kind IN ('thumbs', 'rating');
    END IF;
    RETURN NULL;
END
$$;

-- Results written one by one mark on insert; the insert path's packed rows mark in its
-- trigger (sql/110), and both mark on update and delete.
CREATE OR REPLACE TRIGGER _results_mark_rollup_insert AFTER INSERT ON flywheel._results
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._mark_pass_rate_days();
CREATE OR REPLACE TRIGGER _results_mark_rollup_update AFTER UPDATE ON flywheel._results
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._mark_pass_rate_days();
CREATE OR REPLACE TRIGGER _results_mark_rollup_delete AFTER DELETE ON flywheel._results
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._mark_pass_rate_days();
CREATE OR REPLACE TRIGGER _insert_results_mark_rollup_update AFTER UPDATE ON flywheel._insert_results
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._mark_pass_rate_days();
CREATE OR REPLACE TRIGGER _insert_results_mark_rollup_delete AFTER DELETE ON flywheel._insert_results
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._mark_pass_rate_days();
CREATE OR REPLACE TRIGGER feedback_mark_rollup_insert AFTER INSERT ON flywheel.feedback
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._mark_satisfaction_days();
CREATE OR REPLACE TRIGGER feedback_mark_rollup_update AFTER UPDATE ON flywheel.feedback
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._mark_satisfaction_days();
CREATE OR REPLACE TRIGGER feedback_mark_rollup_delete AFTER DELETE ON flywheel.feedback
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._mark_satisfaction_days();

SELECT flywheel._schedule('flywheel_anomaly_baselines', '*/10 * * * *');

-- The catalog's comments of this area's tables (created in migrations/0400): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.metrics IS
    'The metric registry: one row per flywheel.metric_<name>, its query, kind (view, materialized, rollup) and schedule.';
COMMENT ON TABLE flywheel.refresh_log IS
    'Every metric refresh, successful or not: when, how long, how many rows, the error.';
COMMENT ON TABLE flywheel.schedules IS
    'Everything that runs on a schedule (metric refreshes, checks): run by pg_cron, else by `dbflywheel refresh --loop`.';
COMMENT ON TABLE flywheel.prompt_versions IS
    'The prompt registry: what each prompt_version on the traces was (template, notes).';
