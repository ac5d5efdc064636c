-- Privileges of dbflywheel serve (issue 14). flywheel_server, the server's login, may only
-- authenticate keys and take from their buckets; everything else it does, it does after SET ROLE
-- to a key's app role (NOINHERIT: it holds none of that role's rights itself).
GRANT USAGE ON SCHEMA flywheel TO flywheel_server;
GRANT EXECUTE ON FUNCTION flywheel._authenticate_api_key(text), flywheel._api_take_rows(bigint, integer),
    flywheel._judge_queue_depth() TO flywheel_server;
-- Key management: creating needs CREATEROLE (the DBA); admins may list, revoke and set limits.
REVOKE ALL ON FUNCTION flywheel.create_api_key(text, text, double precision, double precision) FROM PUBLIC;
GRANT SELECT ON flywheel.api_keys TO flywheel_admin;
GRANT EXECUTE ON FUNCTION flywheel.revoke_api_key(text), flywheel.set_api_key_limits(text, double precision, double precision)
TO flywheel_admin;

-- The spans an app ingested, under the same row-level security as its traces.
ALTER TABLE flywheel.otel_spans ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS own_app ON flywheel.otel_spans;
DROP POLICY IF EXISTS admin_all ON flywheel.otel_spans;
CREATE POLICY own_app ON flywheel.otel_spans TO flywheel_app
    USING (ARRAY[app] <@ (SELECT flywheel._apps_of(current_user)))
    WITH CHECK (ARRAY[app] <@ (SELECT flywheel._apps_of(current_user)));
CREATE POLICY admin_all ON flywheel.otel_spans TO flywheel_admin USING (true) WITH CHECK (true);
GRANT SELECT, INSERT (app, otel_trace_id, span_id, trace_row, parent_span_id) ON flywheel.otel_spans TO flywheel_app;
GRANT EXECUTE ON FUNCTION flywheel.link_otel_parents(text[]), flywheel._link_otel_parents(text[], name) TO flywheel_app;
