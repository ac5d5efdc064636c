-- Privileges, last step, after every object exists: the admin may do everything, and
-- nothing in the schema is usable by PUBLIC (functions are executable by PUBLIC by default).
REVOKE ALL ON SCHEMA flywheel FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA flywheel FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA flywheel FROM PUBLIC;

GRANT ALL ON ALL TABLES IN SCHEMA flywheel TO flywheel_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA flywheel TO flywheel_admin;
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA flywheel TO flywheel_admin;
