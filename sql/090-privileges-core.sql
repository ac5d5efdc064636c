-- Privileges of the core tables (traces, feedback): flywheel_app writes its own app's rows.
GRANT USAGE ON SCHEMA flywheel TO flywheel_app, flywheel_reader, flywheel_admin;
GRANT EXECUTE ON FUNCTION flywheel.version() TO flywheel_app, flywheel_reader;

-- Identity is the database's: an application writes every column of its traces and feedback
-- but id and created_at, which come from the sequence and the clock (an id chosen ahead of the
-- sequence would take over another app's future trace).
GRANT SELECT ON flywheel.traces, flywheel.feedback TO flywheel_app;
DO $columns$
DECLARE
    _t text;
BEGIN
    FOREACH _t IN ARRAY ARRAY['traces', 'feedback'] LOOP
        EXECUTE (SELECT format('GRANT INSERT (%s) ON flywheel.%I TO flywheel_app',
                               string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum), _t)
                 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = format('flywheel.%I', _t)::regclass AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attname NOT IN ('id', 'created_at'));
    END LOOP;
END
$columns$;
GRANT USAGE ON SEQUENCE flywheel.traces_id_seq, flywheel.feedback_id_seq TO flywheel_app;
-- Column defaults and policies call these as the inserting role.
GRANT EXECUTE ON FUNCTION flywheel._app_of(name), flywheel._apps_of(name) TO flywheel_app;
-- Every PL/Python function loads the project's modules through this, as the calling role.
GRANT EXECUTE ON FUNCTION flywheel._python_boot() TO flywheel_app, flywheel_reader;
