-- Privileges, in one place, applied after every object exists.
-- flywheel_app: writes traces and feedback for its own app; flywheel_reader: reads metric
-- views; flywheel_admin: everything. Nothing in the schema is executable by PUBLIC.
REVOKE ALL ON SCHEMA flywheel FROM PUBLIC;
GRANT USAGE ON SCHEMA flywheel TO flywheel_app, flywheel_reader, flywheel_admin;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA flywheel FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA flywheel FROM flywheel_app, flywheel_reader;

GRANT ALL ON ALL TABLES IN SCHEMA flywheel TO flywheel_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA flywheel TO flywheel_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA flywheel TO flywheel_admin;
GRANT EXECUTE ON FUNCTION flywheel.version() TO flywheel_app, flywheel_reader;

GRANT SELECT, INSERT ON flywheel.traces TO flywheel_app;
GRANT SELECT, INSERT ON flywheel.feedback TO flywheel_app;
GRANT USAGE ON SEQUENCE flywheel.traces_id_seq, flywheel.feedback_id_seq TO flywheel_app;
-- Column defaults and policies call these as the inserting role.
GRANT EXECUTE ON FUNCTION flywheel._app_of(name), flywheel._apps_of(name) TO flywheel_app;
