-- The built-in metrics: their queries (one place), and their registration on every install.
-- Shadow traces are kept out of every user-facing metric.

-- Per trace: how its validators judged it (errors are not verdicts).
CREATE OR REPLACE VIEW flywheel._trace_verdicts AS
SELECT r.trace_id,
       count(*) FILTER (WHERE r.status IN ('pass', 'fail')) AS verdicts,
       bool_or(r.status = 'fail') AS failed,
       avg(CASE r.status WHEN 'pass' THEN 1.0 WHEN 'fail' THEN 0.0 END)::double precision AS pass_share
FROM flywheel.validation_results r
GROUP BY r.trace_id;

-- The SQL of a built-in metric; with created_from/created_to, only the rows of the days in
-- [created_from, created_to), which is how rollups recompute the days that changed.
CREATE OR REPLACE FUNCTION flywheel._builtin_metric_sql(
    metric text, created_from timestamptz DEFAULT NULL, created_to timestamptz DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _traces   text := '';  -- a range filter on t.created_at (partition pruning, the BRIN index)
    _results  text := '';  -- the same on r.created_at, for flywheel._trace_results r
    _feedback text := '';
BEGIN
    IF created_from IS NOT NULL THEN
        _traces := format(' AND t.created_at >= %L AND t.created_at < %L', created_from, created_to);
        _results := format(' AND r.created_at >= %L AND r.created_at < %L', created_from, created_to);
        _feedback := format(' AND f.created_at >= %L AND f.created_at < %L', created_from, created_to);
    END IF;
    CASE metric
    WHEN 'pass_rate' THEN RETURN $q$
SELECT (r.created_at AT TIME ZONE 'UTC')::date AS day, r.app, v.name AS validator, r.validator_version,
       r.prompt_version, r.model,
       count(*) AS results,
       count(*) FILTER (WHERE r.status = 'pass') AS passed,
       count(*) FILTER (WHERE r.status = 'fail') AS failed,
       count(*) FILTER (WHERE r.status = 'error') AS errors,
       (count(*) FILTER (WHERE r.status = 'pass'))::double precision
           / nullif(count(*) FILTER (WHERE r.status IN ('pass', 'fail')), 0) AS pass_rate
FROM flywheel._trace_results r
JOIN flywheel.validators v ON v.id = r.validator_id
WHERE NOT r.shadow$q$ || _results || $q$
GROUP BY 1, 2, 3, 4, 5, 6$q$;

    WHEN 'satisfaction' THEN RETURN $q$
SELECT (f.created_at AT TIME ZONE 'UTC')::date AS day, f.app,
       count(*) FILTER (WHERE f.kind = 'thumbs') AS thumbs,
       count(*) FILTER (WHERE f.kind = 'thumbs' AND f.value > 0) AS thumbs_up,
       (count(*) FILTER (WHERE f.kind = 'thumbs' AND f.value > 0))::double precision
           / nullif(count(*) FILTER (WHERE f.kind = 'thumbs'), 0) AS positive_share,
       count(*) FILTER (WHERE f.kind = 'rating') AS ratings,
       avg(f.value) FILTER (WHERE f.kind = 'rating') AS mean_rating
FROM flywheel.feedback f
WHERE f.kind IN ('thumbs', 'rating')$q$ || _feedback || $q$
GROUP BY 1, 2$q$;

    WHEN 'satisfaction_trend' THEN RETURN $q$
WITH daily AS (
    SELECT (f.created_at AT TIME ZONE 'UTC')::date AS day, f.app,
           count(*) FILTER (WHERE f.kind = 'thumbs') AS thumbs,
           count(*) FILTER (WHERE f.kind = 'thumbs' AND f.value > 0) AS thumbs_up,
           count(*) FILTER (WHERE f.kind = 'rating') AS ratings,
           sum(f.value) FILTER (WHERE f.kind = 'rating') AS rating_sum
    FROM flywheel.feedback f WHERE f.kind IN ('thumbs', 'rating') GROUP BY 1, 2)
SELECT day, app,
       thumbs_up::double precision / nullif(thumbs, 0) AS positive_share,
       rating_sum / nullif(ratings, 0) AS mean_rating,
       sum(thumbs_up) OVER w / nullif(sum(thumbs) OVER w, 0)::double precision AS positive_share_30d,
       sum(rating_sum) OVER w / nullif(sum(ratings) OVER w, 0) AS mean_rating_30d,
       regr_slope(thumbs_up::double precision / nullif(thumbs, 0), (day - date '2000-01-01')::double precision) OVER w
           AS positive_share_slope_per_day,
       regr_slope(rating_sum / nullif(ratings, 0), (day - date '2000-01-01')::double precision) OVER w
           AS mean_rating_slope_per_day
FROM daily
WINDOW w AS (PARTITION BY app ORDER BY day RANGE BETWEEN '29 days' PRECEDING AND CURRENT ROW)$q$;

    WHEN 'latency' THEN RETURN $q$
SELECT (t.created_at AT TIME ZONE 'UTC')::date AS day, t.app, t.model, t.node,
       count(*) AS traces,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY t.latency_ms) AS latency_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY t.latency_ms) AS latency_p95_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY t.tokens_in) AS tokens_in_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY t.tokens_in) AS tokens_in_p95,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY t.tokens_out) AS tokens_out_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY t.tokens_out) AS tokens_out_p95,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY t.cost_usd) AS cost_usd_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY t.cost_usd) AS cost_usd_p95,
       sum(t.cost_usd) AS cost_usd_total
FROM flywheel.traces t
WHERE NOT t.shadow$q$ || _traces || $q$
GROUP BY 1, 2, 3, 4$q$;

    WHEN 'failure_modes' THEN RETURN $q$
SELECT r.app, r.prompt_version, r.model,
       count(DISTINCT r.trace_id) FILTER (WHERE r.status = 'fail') AS failed_traces,
       count(*) FILTER (WHERE m.mode = 'out_of_scope') AS out_of_scope,
       count(*) FILTER (WHERE m.mode = 'hallucination') AS hallucination,
       count(*) FILTER (WHERE m.mode = 'refusal') AS refusal,
       count(*) FILTER (WHERE m.mode = 'format_violation') AS format_violation,
       count(*) FILTER (WHERE m.mode = 'other') AS other_failures,
       count(*) FILTER (WHERE r.status = 'error') AS validator_errors
FROM flywheel._trace_results r
JOIN flywheel.validators v ON v.id = r.validator_id
-- A failure's mode: its label, else the validator's name, normalized ("Out-of-scope" = out_of_scope).
CROSS JOIN LATERAL (
    SELECT CASE WHEN r.status <> 'fail' THEN NULL
                WHEN x ~ '(scope|off_topic)' THEN 'out_of_scope'
                WHEN x ~ 'hallucinat' THEN 'hallucination'
                WHEN x ~ 'refus' THEN 'refusal'
                WHEN x ~ '(format|schema|json|syntax)' THEN 'format_violation'
                ELSE 'other' END AS mode
    FROM (SELECT regexp_replace(lower(coalesce(r.label, v.name)), '[^a-z]+', '_', 'g') AS x) l
) m
WHERE NOT r.shadow$q$ || _results || $q$
GROUP BY 1, 2, 3$q$;

    WHEN 'classifier' THEN RETURN $q$
WITH c AS (
    SELECT t.app, t.node, t.prompt_version, t.model, btrim(t.output) AS predicted, btrim(t.expected) AS actual
    FROM flywheel.traces t
    WHERE t.node_type = 'classifier' AND t.output IS NOT NULL AND t.expected IS NOT NULL AND NOT t.shadow$q$ || _traces || $q$)
-- The label is a trace's raw output or expected text: readers see it with PII redacted
-- (after grouping, so redaction runs once per label, not per trace).
SELECT c.app, c.node, c.prompt_version, c.model, flywheel.redact_pii(x.label) AS label,
       count(*) FILTER (WHERE x.predicted AND x.actual) AS true_positives,
       count(*) FILTER (WHERE x.predicted AND NOT x.actual) AS false_positives,
       count(*) FILTER (WHERE NOT x.predicted AND x.actual) AS false_negatives,
       (count(*) FILTER (WHERE x.predicted AND x.actual))::double precision
           / nullif(count(*) FILTER (WHERE x.predicted), 0) AS precision,
       (count(*) FILTER (WHERE x.predicted AND x.actual))::double precision
           / nullif(count(*) FILTER (WHERE x.actual), 0) AS recall,
       2 * (count(*) FILTER (WHERE x.predicted AND x.actual))::double precision
           / nullif(count(*) FILTER (WHERE x.predicted) + count(*) FILTER (WHERE x.actual), 0) AS f1
FROM c
-- each trace counts once for the label it predicted and, when wrong, once for the true label
CROSS JOIN LATERAL (VALUES (c.predicted, true, c.predicted = c.actual), (c.actual, false, true)) AS x(label, predicted, actual)
WHERE x.predicted OR c.predicted <> c.actual
GROUP BY c.app, c.node, c.prompt_version, c.model, x.label$q$;

    -- run_id is the application's own text: a run is a run_id within one app.
    WHEN 'pipeline_runs' THEN RETURN $q$
SELECT t.run_id, t.app, count(*) AS steps,
       count(*) FILTER (WHERE v.failed) AS failed_steps,
       (array_agg(t.node ORDER BY t.created_at, t.id) FILTER (WHERE v.failed))[1] AS first_failed_node,
       (array_agg(t.id ORDER BY t.created_at, t.id) FILTER (WHERE v.failed))[1] AS first_failed_trace_id,
       min(t.created_at) AS started_at
FROM flywheel.traces t
LEFT JOIN flywheel._trace_verdicts v ON v.trace_id = t.id
WHERE t.run_id IS NOT NULL AND NOT t.shadow$q$ || _traces || $q$
GROUP BY t.app, t.run_id$q$;

    WHEN 'error_propagation' THEN RETURN $q$
WITH RECURSIVE steps AS (
    SELECT t.id, t.parent_id, t.run_id, t.app, t.node, v.failed
    FROM flywheel.traces t JOIN flywheel._trace_verdicts v ON v.trace_id = t.id
    WHERE t.run_id IS NOT NULL AND v.verdicts > 0 AND NOT t.shadow$q$ || _traces || $q$),
-- links are followed within one app only (a parent_id may name any number)
descent (ancestor, descendant, app) AS (
    SELECT p.id, c.id, c.app FROM steps c JOIN steps p ON p.id = c.parent_id AND p.run_id = c.run_id AND p.app = c.app
    UNION
    SELECT d.ancestor, c.id, d.app FROM descent d JOIN steps c ON c.parent_id = d.descendant AND c.app = d.app)
SELECT a.app, a.node,
       count(DISTINCT a.id) FILTER (WHERE a.failed) AS times_failed,
       count(DISTINCT a.id) FILTER (WHERE NOT a.failed) AS times_passed,
       avg(s.failed::integer) FILTER (WHERE a.failed)::double precision AS descendant_failure_rate_when_failed,
       avg(s.failed::integer) FILTER (WHERE NOT a.failed)::double precision AS descendant_failure_rate_when_passed
FROM descent d
JOIN steps a ON a.id = d.ancestor
JOIN steps s ON s.id = d.descendant
GROUP BY 1, 2$q$;

    WHEN 'prompt_versions' THEN RETURN $q$
WITH tr AS (
    SELECT t.app, t.prompt_version, t.model, count(*) AS traces, min(t.created_at) AS first_seen, max(t.created_at) AS last_seen,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY t.latency_ms) AS latency_p50_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY t.latency_ms) AS latency_p95_ms,
           avg(t.tokens_in + t.tokens_out)::double precision AS mean_tokens,
           avg(t.cost_usd) AS mean_cost_usd, sum(t.cost_usd) AS cost_usd_total
    FROM flywheel.traces t WHERE NOT t.shadow$q$ || _traces || $q$ GROUP BY 1, 2, 3),
pr AS (
    SELECT r.app, r.prompt_version, r.model,
           (count(*) FILTER (WHERE r.status = 'pass'))::double precision
               / nullif(count(*) FILTER (WHERE r.status IN ('pass', 'fail')), 0) AS pass_rate,
           count(*) FILTER (WHERE r.status = 'error') AS validator_errors
    FROM flywheel._trace_results r
    WHERE NOT r.shadow$q$ || _results || $q$ GROUP BY 1, 2, 3),
sat AS (
    SELECT t.app, t.prompt_version, t.model,
           (count(*) FILTER (WHERE f.kind = 'thumbs' AND f.value > 0))::double precision
               / nullif(count(*) FILTER (WHERE f.kind = 'thumbs'), 0) AS positive_share,
           avg(f.value) FILTER (WHERE f.kind = 'rating') AS mean_rating
    FROM flywheel.feedback f JOIN flywheel.traces t ON t.id = f.trace_id
    WHERE f.kind IN ('thumbs', 'rating') AND NOT t.shadow$q$ || _traces || $q$ GROUP BY 1, 2, 3)
SELECT tr.app, tr.prompt_version, pv.name AS prompt_name, pv.notes AS prompt_notes, pv.created_at AS prompt_registered_at,
       tr.model, tr.traces, tr.first_seen, tr.last_seen, pr.pass_rate, pr.validator_errors,
       sat.positive_share, sat.mean_rating, tr.latency_p50_ms, tr.latency_p95_ms, tr.mean_tokens,
       tr.mean_cost_usd, tr.cost_usd_total
FROM tr
LEFT JOIN pr ON pr.app = tr.app AND pr.prompt_version IS NOT DISTINCT FROM tr.prompt_version AND pr.model IS NOT DISTINCT FROM tr.model
LEFT JOIN sat ON sat.app = tr.app AND sat.prompt_version IS NOT DISTINCT FROM tr.prompt_version AND sat.model IS NOT DISTINCT FROM tr.model
-- traces name a version as 'v1.1' or 'name@v1.1'
LEFT JOIN LATERAL (
    SELECT p.name, p.notes, p.created_at FROM flywheel.prompt_versions p
    WHERE tr.prompt_version IN (p.version, p.name || '@' || p.version)
    ORDER BY (tr.prompt_version = p.name || '@' || p.version) DESC, p.created_at DESC LIMIT 1
) pv ON true$q$;

    WHEN 'shadow_comparison' THEN RETURN $q$
SELECT l.app, l.prompt_version AS live_prompt_version, l.model AS live_model,
       s.prompt_version AS shadow_prompt_version, s.model AS shadow_model,
       count(*) AS pairs,
       avg((btrim(s.output) IS NOT DISTINCT FROM btrim(l.output))::integer)::double precision AS same_output_share,
       avg(vl.pass_share) AS live_pass_rate,
       avg(vs.pass_share) AS shadow_pass_rate,
       avg(s.latency_ms - l.latency_ms) AS mean_latency_diff_ms,
       avg(s.cost_usd - l.cost_usd) AS mean_cost_diff_usd
FROM flywheel.traces s
JOIN flywheel.traces l ON l.id = (CASE WHEN s.metadata->>'shadow_of' ~ '^[0-9]{1,18}$' THEN (s.metadata->>'shadow_of')::bigint END)
                      AND l.app = s.app
LEFT JOIN flywheel._trace_verdicts vs ON vs.trace_id = s.id
LEFT JOIN flywheel._trace_verdicts vl ON vl.trace_id = l.id
WHERE s.shadow AND NOT l.shadow$q$ || replace(_traces, 't.', 's.') || $q$
GROUP BY 1, 2, 3, 4, 5$q$;

    ELSE
        RAISE EXCEPTION 'no built-in metric named %', metric;
    END CASE;
END
$$;

-- Registers a built-in metric on install: new ones get their default mode; existing ones keep
-- the mode and schedule the DBA chose and are rebuilt only when their query changed.
CREATE OR REPLACE FUNCTION flywheel._register_builtin_metric(
    metric text, default_kind text, default_schedule text, rollup_table text DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _query text := btrim(flywheel._builtin_metric_sql(metric), E' \n');
    _old   flywheel.metrics;
BEGIN
    SELECT * INTO _old FROM flywheel.metrics m WHERE m.name = metric;
    IF NOT FOUND THEN
        INSERT INTO flywheel.metrics (name, query, kind, schedule, builtin, rollup_table)
        VALUES (metric, _query, default_kind, default_schedule, true, _register_builtin_metric.rollup_table);
    ELSIF _old.query IS DISTINCT FROM _query OR _old.rollup_table IS DISTINCT FROM _register_builtin_metric.rollup_table THEN
        UPDATE flywheel.metrics m SET query = _query, builtin = true, rollup_table = _register_builtin_metric.rollup_table,
                                      kind = CASE WHEN m.kind = 'rollup' AND _register_builtin_metric.rollup_table IS NULL
                                                  THEN 'materialized' ELSE m.kind END,
                                      updated_at = now()
        WHERE m.name = metric;
    ELSIF to_regclass(format('flywheel.%I', 'metric_' || metric)) IS NOT NULL THEN
        RETURN;  -- unchanged
    END IF;
    PERFORM flywheel._apply_metric(metric);
END
$$;

SELECT flywheel._register_builtin_metric('pass_rate', 'rollup', '*/5 * * * *', '_rollup_pass_rate');
SELECT flywheel._register_builtin_metric('satisfaction', 'rollup', '*/15 * * * *', '_rollup_satisfaction');
SELECT flywheel._register_builtin_metric('satisfaction_trend', 'view', NULL);
SELECT flywheel._register_builtin_metric('latency', 'view', NULL);
SELECT flywheel._register_builtin_metric('failure_modes', 'view', NULL);
SELECT flywheel._register_builtin_metric('classifier', 'view', NULL);
SELECT flywheel._register_builtin_metric('pipeline_runs', 'view', NULL);
SELECT flywheel._register_builtin_metric('error_propagation', 'view', NULL);
SELECT flywheel._register_builtin_metric('prompt_versions', 'view', NULL);
SELECT flywheel._register_builtin_metric('shadow_comparison', 'view', NULL);

-- The metric views' comments (flywheel._apply_metric keeps a view's comment when it makes it again).
COMMENT ON VIEW flywheel.metric_pass_rate IS
    'Per day, app, validator version, prompt version and model: results, passed, failed, errors and the pass rate.';
COMMENT ON VIEW flywheel.metric_satisfaction IS
    'Per day and app: thumbs, the share of positive thumbs, ratings and the mean rating.';
COMMENT ON VIEW flywheel.metric_satisfaction_trend IS
    'Per day and app: positive share and mean rating, over 30 days and with their slopes per day.';
COMMENT ON VIEW flywheel.metric_latency IS
    'Per day, app, model and node: traces, p50/p95 latency, tokens and cost.';
COMMENT ON VIEW flywheel.metric_failure_modes IS
    'Per app, prompt version and model: failed traces by failure mode (out of scope, hallucination, refusal, format).';
COMMENT ON VIEW flywheel.metric_classifier IS
    'Per app, node, prompt version, model and label: true and false positives, false negatives, precision, recall, F1.';
COMMENT ON VIEW flywheel.metric_pipeline_runs IS
    'Per pipeline run: its steps, failed steps and the first node that failed.';
COMMENT ON VIEW flywheel.metric_error_propagation IS
    'Per app and node: how often the steps after it fail when it failed and when it passed.';
COMMENT ON VIEW flywheel.metric_prompt_versions IS
    'Per app, prompt version and model: the registered prompt, traffic, pass rate, satisfaction, latency and cost.';
COMMENT ON VIEW flywheel.metric_shadow_comparison IS
    'Live against shadow prompt version or model: pairs, share of same outputs, pass rates, latency and cost differences.';

-- Alerts when user satisfaction trends down: per app, the slope of the daily share of positive
-- thumbs over the last 30 days, with at least min_days days of thumbs. Returns the alerts raised.
CREATE OR REPLACE FUNCTION flywheel.check_satisfaction_trend(
    slope_below double precision DEFAULT -0.005, min_days integer DEFAULT 7
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _row    record;
    _raised integer := 0;
BEGIN
    FOR _row IN
        WITH daily AS (
            SELECT f.app, (f.created_at AT TIME ZONE 'UTC')::date AS day,
                   avg((f.value > 0)::integer)::double precision AS positive_share
            FROM flywheel.feedback f
            WHERE f.kind = 'thumbs' AND f.created_at >= now() - interval '30 days'
            GROUP BY 1, 2)
        SELECT app, count(*) AS days, regr_slope(positive_share, (day - date '2000-01-01')::double precision) AS slope,
               min(day) AS first_day, max(day) AS last_day
        FROM daily GROUP BY app
        HAVING count(*) >= min_days
           AND regr_slope(positive_share, (day - date '2000-01-01')::double precision) < slope_below
    LOOP
        -- one open alert per app and day is enough
        CONTINUE WHEN EXISTS (SELECT 1 FROM flywheel.alerts a
                              WHERE a.kind = 'satisfaction_trend' AND a.subject = _row.app
                                AND a.acknowledged_at IS NULL AND a.created_at > now() - interval '1 day');
        PERFORM flywheel._raise_alert('satisfaction_trend', _row.app,
            format('user satisfaction of %s is trending down: the share of positive thumbs changes by %s points a day over %s days',
                   _row.app, round((_row.slope * 100)::numeric, 2), _row.days),
            jsonb_build_object('slope_per_day', _row.slope, 'days', _row.days,
                               'from', _row.first_day, 'to', _row.last_day, 'threshold', slope_below));
        _raised := _raised + 1;
    END LOOP;
    RETURN _raised;
END
$$;
COMMENT ON FUNCTION flywheel.check_satisfaction_trend(double precision, integer) IS
    'Raises a satisfaction_trend alert for each app whose share of positive thumbs falls over the last 30 days.';
