-- Privileges of the core tables (traces, feedback): flywheel_app writes its own app's rows.
GRANT USAGE ON SCHEMA flywheel TO flywheel_app, flywheel_reader, flywheel_admin;
GRANT EXECUTE ON FUNCTION flywheel.version() TO flywheel_app, flywheel_reader;

GRANT SELECT, INSERT ON flywheel.traces TO flywheel_app;
GRANT SELECT, INSERT ON flywheel.feedback TO flywheel_app;
GRANT USAGE ON SEQUENCE flywheel.traces_id_seq, flywheel.feedback_id_seq TO flywheel_app;
-- Column defaults and policies call these as the inserting role.
GRANT EXECUTE ON FUNCTION flywheel._app_of(name), flywheel._apps_of(name) TO flywheel_app;
-- Every PL/Python function loads the project's modules through this, as the calling role.
GRANT EXECUTE ON FUNCTION flywheel._python_boot() TO flywheel_app, flywheel_reader;
