-- Privileges, last step, after every object exists.

-- Everything the installing superuser made is handed to flywheel_owner (NOLOGIN, no superuser):
-- SECURITY DEFINER functions, triggers' functions and pg_cron's refreshes then run with the
-- extension's rights on its own objects and nothing more. Objects owned by another non-superuser
-- role on purpose (flywheel_sql_planner's planning function, flywheel_scheduler's pg_cron calls)
-- keep their owner; admins' metric views of version 0.1 are taken over.
DO $owner$
DECLARE
    _o record;
BEGIN
    ALTER SCHEMA flywheel OWNER TO flywheel_owner;
    FOR _o IN
        SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                              WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind, c.oid::regclass::text AS name
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
        WHERE c.relnamespace = 'flywheel'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND (r.rolsuper OR (r.rolname = 'flywheel_admin' AND c.relname LIKE 'metric\_%'))
          -- a sequence that belongs to a column follows its table
          AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = c.oid
                                                 AND d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO flywheel_owner', _o.kind, _o.name);
    END LOOP;
    FOR _o IN
        SELECT p.oid::regprocedure::text AS name
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
        WHERE p.pronamespace = 'flywheel'::regnamespace AND r.rolsuper
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO flywheel_owner', _o.name);
    END LOOP;
    FOR _o IN
        SELECT t.oid::regtype::text AS name
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_roles r ON r.oid = t.typowner
        WHERE t.typnamespace = 'flywheel'::regnamespace AND r.rolsuper AND t.typrelid = 0 AND t.typelem = 0
          AND t.typtype IN ('c', 'd', 'e', 'r')
    LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO flywheel_owner', _o.name);
    END LOOP;
END
$owner$;

-- Nothing in the schema is usable by PUBLIC (functions are executable by PUBLIC by default).
REVOKE ALL ON SCHEMA flywheel FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA flywheel FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA flywheel FROM PUBLIC;
-- Admins could create objects in the schema up to version 0.1 (metric views): no longer.
REVOKE CREATE ON SCHEMA flywheel FROM flywheel_admin;

-- The admin reads everything and writes the data (traces, feedback, labels, golden sets, judge
-- queues, experiments), never with TRUNCATE, REFERENCES or TRIGGER: a trigger of theirs would
-- run with the rights of whoever writes the table, flywheel_owner included.
REVOKE ALL ON ALL TABLES IN SCHEMA flywheel FROM flywheel_admin;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA flywheel FROM flywheel_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA flywheel TO flywheel_admin;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA flywheel TO flywheel_admin;
-- What decides what runs (validators, metrics, schedules) and the extension's own records change
-- only through the functions that check them: create_validator, create_metric, set_metric_mode.
REVOKE INSERT, UPDATE, DELETE ON
    flywheel.validators, flywheel.validator_versions, flywheel.metrics, flywheel.schedules,
    flywheel._migrations, flywheel._install, flywheel.app_roles, flywheel.refresh_log,
    flywheel._rollup_dirty_days, flywheel._rollup_pass_rate, flywheel._rollup_satisfaction,
    flywheel._anomaly_baselines, flywheel.deletion_audit,
    flywheel._api_keys, flywheel.otel_spans,  -- keys change through create/revoke_api_key; spans are the apps'
    -- training set snapshots are immutable: built by create_training_set, never edited
    flywheel.training_sets, flywheel.training_set_versions, flywheel.training_set_rows
FROM flywheel_admin;

-- flywheel_sql_checker opens (never fetches) a cursor over an admin's query to learn that it is
-- one SELECT (flywheel._one_select_problem): it reads what the admin reads, and nothing else.
GRANT USAGE ON SCHEMA flywheel TO flywheel_sql_checker;
GRANT SELECT ON ALL TABLES IN SCHEMA flywheel TO flywheel_sql_checker;

-- Both may execute every routine but the internals that only the extension itself calls (they
-- change what runs, or run what the registry says without checking it again).
DO $internal$
DECLARE
    _role text;
BEGIN
    FOREACH _role IN ARRAY ARRAY['flywheel_admin', 'flywheel_sql_checker'] LOOP
        EXECUTE format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA flywheel TO %I', _role);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION flywheel._schedule(text, text), flywheel._unschedule(text),'
                       ' flywheel._schedule_metric(text), flywheel._apply_metric(text),'
                       ' flywheel._refresh_rollup(text, boolean), flywheel._sign_python_body(text) FROM %I', _role);
    END LOOP;
END
$internal$;
GRANT EXECUTE ON FUNCTION flywheel._one_select_problem(text, boolean), flywheel._unsafe_calls(text, text[], text[])
TO flywheel_owner, flywheel_admin;
