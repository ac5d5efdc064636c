-- Privileges, first step: take back what the application and reader roles hold, so that a
-- grant removed from the sources is gone after a re-install. Every area's NNN-privileges-*.sql
-- then grants what it needs, and 900-privileges.sql closes with the admin grants and PUBLIC.
REVOKE ALL ON ALL TABLES IN SCHEMA flywheel FROM flywheel_app, flywheel_reader, flywheel_sql_checker;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA flywheel FROM flywheel_app, flywheel_reader, flywheel_sql_checker;
REVOKE ALL ON ALL ROUTINES IN SCHEMA flywheel FROM flywheel_app, flywheel_reader, flywheel_sql_checker;
