-- The sql_codegen validator's planner (plpython/validators_sql_codegen.py).
--
-- Planning evaluates IMMUTABLE functions (and STABLE ones for estimates): EXPLAIN of generated
-- SQL runs code that the SQL reaches. It runs as flywheel_sql_planner, a role with no rights of
-- its own: a DBA grants it USAGE on the schema a validator checks and SELECT on its tables, and
-- nothing else, so whatever a query reaches can read that schema at most; it cannot run
-- programs, read files or write.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flywheel_sql_planner') THEN
        CREATE ROLE flywheel_sql_planner NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB NOCREATEROLE NOREPLICATION
            NOBYPASSRLS;
    END IF;
END
$roles$;
-- Also when the role was there before: it must stay powerless.
ALTER ROLE flywheel_sql_planner NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE flywheel_sql_planner IS
    'dbflywheel: plans (EXPLAIN, never runs) generated SQL for sql_codegen validators; grant it USAGE and SELECT on the schemas they check, nothing else';

-- Plans query (EXPLAIN, never ANALYZE) over schema_name and returns NULLs when it plans, else
-- the error's SQLSTATE and message. SECURITY DEFINER owned by flywheel_sql_planner: anything the
-- planner runs, runs as that role. Read-only, in a block that is always rolled back (the
-- settings below with it). The search path puts pg_temp last, so that a temporary table or
-- view cannot stand in for the schema's (functions and operators are never looked up there).
-- The query is the generated text itself, by design: it is checked before (sqlglot refuses
-- other schemas, pg_temp and functions outside an allowlist), and a cursor takes exactly one
-- statement. WHEN OTHERS does not catch query_canceled: a statement_timeout or cancel stops
-- the caller's statement.
CREATE OR REPLACE FUNCTION flywheel._plan_generated_sql(schema_name text, query text, lock_timeout_ms integer,
                                                        OUT error_state text, OUT error_message text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _line    text;
    _planned boolean := false;
BEGIN
    BEGIN
        PERFORM pg_catalog.set_config('transaction_read_only', 'on', true);
        PERFORM pg_catalog.set_config('lock_timeout', greatest(coalesce(lock_timeout_ms, 200), 1)::text, true);
        PERFORM pg_catalog.set_config('search_path', pg_catalog.format('pg_catalog, %I, pg_temp', schema_name), true);
        FOR _line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
        END LOOP;
        _planned := true;  -- set here only: the same state raised by code the planner ran is no pass
        RAISE SQLSTATE 'FWPLN';  -- planned: roll the block back
    EXCEPTION
        WHEN SQLSTATE 'FWPLN' THEN
            IF NOT _planned THEN
                _plan_generated_sql.error_state := 'FWPLN';
                _plan_generated_sql.error_message := 'the query raised the planner''s own condition';
            END IF;
            RETURN;
        WHEN OTHERS THEN
            _plan_generated_sql.error_state := SQLSTATE;
            _plan_generated_sql.error_message := SQLERRM;
            RETURN;
    END;
END
$$;
ALTER FUNCTION flywheel._plan_generated_sql(text, text, integer) OWNER TO flywheel_sql_planner;
COMMENT ON FUNCTION flywheel._plan_generated_sql(text, text, integer) IS
    'sql_codegen: EXPLAIN of generated SQL as flywheel_sql_planner, read-only and rolled back; NULLs when it plans, else the error';
-- Only the insert trigger's owner runs it (900-privileges.sql also grants the admin, for
-- validate_traces(); as the planner role, that gives nobody more than the planner's rights).
REVOKE ALL ON FUNCTION flywheel._plan_generated_sql(text, text, integer) FROM PUBLIC;
DO $grants$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flywheel_owner') THEN
        GRANT EXECUTE ON FUNCTION flywheel._plan_generated_sql(text, text, integer) TO flywheel_owner;
    END IF;
END
$grants$;
