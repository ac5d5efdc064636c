-- Privileges of the review web app. A reviewer's role (member of flywheel_reviewer) reads the
-- traces, feedback, labels and preferences of its apps (policies in sql/630) and what the
-- annotation queue and trace pages read; it writes labels, corrections, preferences and its
-- leases, never the columns that say who wrote them or which app a row belongs to.
GRANT USAGE ON SCHEMA flywheel TO flywheel_reviewer;
GRANT SELECT ON flywheel.traces, flywheel.feedback, flywheel.labels, flywheel.preferences, flywheel.review_leases,
    flywheel.validation_results, flywheel.validators TO flywheel_reviewer;
-- The queue's novelty needs the examples' and embeddings' vectors only, not their text.
GRANT SELECT (embedder, embedding) ON flywheel.examples TO flywheel_reviewer;
GRANT SELECT (trace_id, embedder, embedding) ON flywheel.embeddings TO flywheel_reviewer;
GRANT INSERT (trace_id, validator, verdict, score, label, comment) ON flywheel.labels TO flywheel_reviewer;
GRANT INSERT (trace_id, app, kind, value, corrected_output, comment, source, user_id) ON flywheel.feedback TO flywheel_reviewer;
GRANT INSERT (trace_a, trace_b, winner, reason) ON flywheel.preferences TO flywheel_reviewer;
GRANT INSERT (trace_id, reviewer, expires_at), UPDATE (reviewer, skipped, expires_at), DELETE ON flywheel.review_leases TO flywheel_reviewer;
GRANT USAGE ON SEQUENCE flywheel.labels_id_seq, flywheel.feedback_id_seq, flywheel.preferences_id_seq TO flywheel_reviewer;
GRANT EXECUTE ON FUNCTION flywheel._reviewer_apps(name), flywheel._reviewer_name(name), flywheel._is_labelled(bigint),
    flywheel._active_embedder(), flywheel._annotation_queue(),
    flywheel.record_feedback(bigint, text, double precision, text, text, text, text) TO flywheel_reviewer;
GRANT SELECT ON flywheel.annotation_queue TO flywheel_reviewer;
-- Dashboards read the metric views (filtered to the reviewer's apps by the server), as readers do.
DO $grants$
DECLARE
    _rel text;
BEGIN
    FOR _rel IN SELECT c.relname FROM pg_catalog.pg_class c
                WHERE c.relnamespace = 'flywheel'::regnamespace AND c.relname LIKE 'metric\_%' AND c.relkind IN ('v', 'm') LOOP
        EXECUTE format('GRANT SELECT ON flywheel.%I TO flywheel_reviewer', _rel);
    END LOOP;
END
$grants$;
GRANT SELECT ON flywheel.refresh_status, flywheel.validator_alignment_weekly, flywheel.queue_status, flywheel.alerts
TO flywheel_reviewer;
-- Functions those views call (as the reader): aggregates only, as for flywheel_reader.
GRANT EXECUTE ON FUNCTION flywheel._agreement(text[], text[]), flywheel._judge_budget(bigint),
    flywheel._pg_cron_installed(), flywheel._cron_previous_fire(text, timestamptz),
    flywheel._cron_previous_fire_epoch(text, double precision) TO flywheel_reviewer;

-- The server's login signs reviewers in and reads sessions; nobody else needs to.
DO $server$
DECLARE
    _r record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'flywheel_server') THEN
        GRANT EXECUTE ON FUNCTION flywheel.reviewer_sign_in(text, text), flywheel.reviewer_session(text),
            flywheel.reviewer_sign_out(text), flywheel.due_alert_deliveries(integer),
            flywheel.record_alert_delivery(bigint, text, boolean, text, integer) TO flywheel_server;
        FOR _r IN SELECT v.role_name FROM flywheel.reviewers v LOOP
            EXECUTE format('GRANT %I TO flywheel_server', _r.role_name);
        END LOOP;
    END IF;
END
$server$;
