-- Privileges of the validators' objects (sql/900-privileges.sql then grants the admin everything).
-- An application may ask for a verdict on its input before calling its LLM.
GRANT EXECUTE ON FUNCTION flywheel.check_input(text, text), flywheel._check_input(text, text) TO flywheel_app;
-- Redaction runs in the judge workers (admins) and in the readers' views that show trace text
-- (metric_classifier's labels), which call it with the reader's rights. It only computes.
REVOKE ALL ON FUNCTION flywheel.redact_pii(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION flywheel.redact_pii(text) TO flywheel_admin, flywheel_reader;
