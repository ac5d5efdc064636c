-- The schema and the ledger that every later part of the install script relies on.
CREATE EXTENSION IF NOT EXISTS plpython3u;
CREATE EXTENSION IF NOT EXISTS vector;
-- Names in this script resolve in pg_catalog only (pg_temp last, never first): a function or
-- type that someone planted in a schema they can write (public before PostgreSQL 15) never
-- binds into a view, a policy or a DO block of ours.
SET LOCAL search_path TO pg_catalog, pg_temp;

-- The roles the extension runs as. flywheel_owner owns the schema and everything in it, so
-- every SECURITY DEFINER function runs as a role that is neither a superuser nor a login;
-- flywheel_scheduler is the login pg_cron runs scheduled refreshes as, and may do nothing
-- else (no member of any role, no password set here); flywheel_sql_checker opens cursors over
-- admins' queries to see that each is one SELECT (sql/005-safe-sql.sql).
DO $owner$
DECLARE
    _r pg_catalog.pg_roles;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'flywheel_owner') THEN
        CREATE ROLE flywheel_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'flywheel_sql_checker') THEN
        CREATE ROLE flywheel_sql_checker NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'flywheel_scheduler') THEN
        CREATE ROLE flywheel_scheduler LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
    END IF;
    -- flywheel_server is the login `dbflywheel serve` uses: it may authenticate API keys and SET ROLE
    -- to the roles of the apps that have keys (NOINHERIT: it holds none of their rights itself).
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'flywheel_server') THEN
        CREATE ROLE flywheel_server LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
    END IF;
    FOR _r IN SELECT * FROM pg_catalog.pg_roles WHERE rolname IN ('flywheel_owner', 'flywheel_scheduler', 'flywheel_sql_checker', 'flywheel_server') LOOP
        IF _r.rolsuper OR _r.rolcreaterole OR _r.rolbypassrls OR _r.rolreplication
           OR (_r.rolname = 'flywheel_owner' AND _r.rolcanlogin) OR (_r.rolname = 'flywheel_server' AND _r.rolinherit) THEN
            RAISE EXCEPTION 'role % has more rights than dbflywheel gives it (superuser, createrole, bypassrls, replication or login)', _r.rolname
                USING HINT = 'the role is created by the install; ALTER it back to NOSUPERUSER NOCREATEROLE NOBYPASSRLS NOREPLICATION (and NOLOGIN for flywheel_owner)';
        END IF;
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m WHERE m.roleid = _r.oid) THEN
            RAISE EXCEPTION 'role % has members: whoever is one of them would hold its rights', _r.rolname
                USING HINT = 'REVOKE it from them; nobody needs to be a member of it';
        END IF;
    END LOOP;
END
$owner$;

-- A flywheel schema made by someone else is not ours to fill: it is used only when its owner is
-- flywheel_owner or a superuser (an earlier install), and nothing in it belongs to another role
-- (admins could create objects in it up to version 0.1; their metric views are handed over).
DO $schema$
DECLARE
    _owner  pg_catalog.pg_roles;
    _others text;
    _schema oid := (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = 'flywheel');
BEGIN
    SELECT r.* INTO _owner FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
    WHERE n.nspname = 'flywheel';
    IF FOUND AND NOT (_owner.rolsuper OR _owner.rolname = 'flywheel_owner') THEN
        RAISE EXCEPTION 'schema flywheel exists and belongs to %, not to flywheel_owner: refusing to install into it', _owner.rolname
            USING HINT = 'its owner could replace what the install puts there; drop it or ALTER SCHEMA flywheel OWNER TO flywheel_owner after checking its contents';
    END IF;
    SELECT string_agg(o.what, ', ' ORDER BY o.what) INTO _others
    FROM (SELECT format('%s (owned by %s)', c.oid::regclass, r.rolname) AS what
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
          WHERE c.relnamespace = _schema AND NOT r.rolsuper
            AND r.rolname NOT IN ('flywheel_owner', 'flywheel_scheduler', 'flywheel_sql_planner', 'flywheel_sql_checker')
            AND NOT (r.rolname = 'flywheel_admin' AND c.relname LIKE 'metric\_%' AND c.relkind IN ('v', 'm'))
          UNION ALL
          SELECT format('%s (owned by %s)', p.oid::regprocedure, r.rolname)
          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
          WHERE p.pronamespace = _schema AND NOT r.rolsuper
            AND r.rolname NOT IN ('flywheel_owner', 'flywheel_scheduler', 'flywheel_sql_planner', 'flywheel_sql_checker')
          UNION ALL
          SELECT format('type %s (owned by %s)', t.oid::regtype, r.rolname)
          FROM pg_catalog.pg_type t JOIN pg_catalog.pg_roles r ON r.oid = t.typowner
          WHERE t.typnamespace = _schema AND NOT r.rolsuper AND t.typrelid = 0
            AND t.typelem = 0 AND r.rolname NOT IN ('flywheel_owner', 'flywheel_scheduler', 'flywheel_sql_planner', 'flywheel_sql_checker')) o;
    IF _others IS NOT NULL THEN
        RAISE EXCEPTION 'schema flywheel holds objects that dbflywheel did not create: %', _others
            USING HINT = 'a function or view someone else owns there could run as the extension; review and drop them, then install again';
    END IF;
END
$schema$;

-- (pgspot's PS010 is ignored in make lint for this line: the block above refuses a schema that
-- is not ours, which IF NOT EXISTS alone would take over.)
CREATE SCHEMA IF NOT EXISTS flywheel AUTHORIZATION flywheel_owner;
COMMENT ON SCHEMA flywheel IS 'dbflywheel: traces, validators, judges, metrics and few-shot examples';

-- One row per applied migration, with a checksum of its body: an edited migration is refused.
CREATE TABLE IF NOT EXISTS flywheel._migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    version    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Cluster-wide group roles; granting them to login roles is the DBA's call.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flywheel_app') THEN
        CREATE ROLE flywheel_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flywheel_reader') THEN
        CREATE ROLE flywheel_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flywheel_admin') THEN
        CREATE ROLE flywheel_admin NOLOGIN;
    END IF;
END
$roles$;
