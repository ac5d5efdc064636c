-- A lighter traces table (issue 3's performance targets). Every index is paid on every
-- INSERT; with 4 clients a random uuid default and its btree cost more than the validators.
-- uid is now the application's own id for a trace (for idempotent retries and feedback by an
-- id it already knows): NULL unless given, and indexed only where given.
ALTER TABLE flywheel.traces ALTER COLUMN uid DROP DEFAULT, ALTER COLUMN uid DROP NOT NULL;
DROP INDEX flywheel.traces_uid;
CREATE INDEX traces_uid ON flywheel.traces (uid) WHERE uid IS NOT NULL;
-- Prompt versions are compared through the metrics (rollups per day and prompt version), and
-- a raw query over a time window finds its rows through the BRIN index on created_at.
DROP INDEX flywheel.traces_prompt_version_created_at;
