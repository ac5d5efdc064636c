-- Privileges of the metrics, experiments and retention objects (sql/900-privileges.sql then
-- re-grants the admin everything).
-- pg_cron's jobs run as flywheel_scheduler (sql/400-metrics.sql): it may call the scheduled
-- tasks, each of which runs as flywheel_owner, and nothing else.
GRANT EXECUTE ON FUNCTION flywheel.check_drift(interval, interval, double precision, double precision, double precision),
    flywheel.check_satisfaction_trend(double precision, integer), flywheel.advance_canaries(),
    flywheel.apply_retention(), flywheel.refresh_anomaly_baselines(interval) TO flywheel_scheduler;
GRANT EXECUTE ON PROCEDURE flywheel.refresh(text, boolean), flywheel.refresh_due(boolean) TO flywheel_scheduler;
-- Readers read the metric views and their freshness.
DO $grants$
DECLARE
    _rel text;
BEGIN
    FOR _rel IN SELECT c.relname FROM pg_catalog.pg_class c
                WHERE c.relnamespace = 'flywheel'::regnamespace AND c.relname LIKE 'metric\_%' AND c.relkind IN ('v', 'm') LOOP
        EXECUTE format('GRANT SELECT ON flywheel.%I TO flywheel_reader', _rel);
    END LOOP;
END
$grants$;
GRANT SELECT ON flywheel.refresh_status, flywheel.refresh_log, flywheel.prompt_versions TO flywheel_reader;
GRANT EXECUTE ON FUNCTION flywheel.drift(text, tstzrange, tstzrange),
                          flywheel.experiment_results(text, double precision) TO flywheel_reader;
-- Applications ask for their users' variants.
GRANT EXECUTE ON FUNCTION flywheel.assign_variant(text, text) TO flywheel_app;
-- Views run the functions they call with the reader's rights.
GRANT EXECUTE ON FUNCTION flywheel._pg_cron_installed(), flywheel._cron_previous_fire(text, timestamptz),
    flywheel._cron_previous_fire_epoch(text, double precision) TO flywheel_reader;
