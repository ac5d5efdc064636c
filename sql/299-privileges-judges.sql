-- Privileges of the judges' objects (sql/900-privileges.sql then re-grants admin everything).
-- Workers connect as a member of flywheel_admin. Applications may record their users' A/B
-- choices as human preferences; readers see alignment, rankings and the queue, not traces.
GRANT SELECT, INSERT ON flywheel.preferences TO flywheel_app;
GRANT USAGE ON SEQUENCE flywheel.preferences_id_seq TO flywheel_app;

GRANT SELECT ON flywheel.validator_alignment, flywheel.validator_alignment_weekly,
    flywheel.pairwise_ranking, flywheel.queue_status TO flywheel_reader;
-- Functions the reader's views call (as the reader): aggregates only.
GRANT EXECUTE ON FUNCTION flywheel._agreement(text[], text[]), flywheel._bradley_terry(),
    flywheel._judge_budget(bigint) TO flywheel_reader;
