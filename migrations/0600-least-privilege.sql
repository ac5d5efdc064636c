-- Least privilege: the PL/Python modules live in the body of flywheel._python_boot(), which
-- only a superuser can replace, instead of a table that its owner could rewrite.
DROP TABLE flywheel._python_modules;
-- pg_cron jobs of earlier installs ran as the installing superuser; flywheel_scheduler runs them now.
DO $cron$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE $q$SELECT cron.unschedule(j.jobid) FROM cron.job j
                   WHERE (j.jobname LIKE 'flywheel\_%' OR j.jobname = 'flywheel-anomaly-baselines')
                     AND j.username <> 'flywheel_scheduler'$q$;
    END IF;
END
$cron$;
-- A schedule's command is derived from its name now; the form that took any command goes.
DROP FUNCTION IF EXISTS flywheel._schedule(text, text, text);
