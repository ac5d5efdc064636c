-- The schema and the ledger that every later part of the install script relies on.
CREATE EXTENSION IF NOT EXISTS plpython3u;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS flywheel;
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
