-- Experiments: A/B tests with deterministic assignment, per-variant results with tests, and
-- canaries that raise a variant's weight step by step while its pass rate holds.

-- Weights normalized to sum 1; refuses anything that is not {"name": weight >= 0, ...}.
CREATE OR REPLACE FUNCTION flywheel._normalize_variants(variants jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _total double precision;
BEGIN
    IF variants IS NULL OR jsonb_typeof(variants) <> 'object' OR variants = '{}' THEN
        RAISE EXCEPTION 'variants must be an object of weights, such as {"A": 0.9, "B": 0.1}';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_each(variants) v
               WHERE jsonb_typeof(v.value) <> 'number' OR (v.value)::double precision < 0 OR btrim(v.key) = '') THEN
        RAISE EXCEPTION 'variants: every weight must be a number >= 0 and every name non-empty, got %', variants;
    END IF;
    SELECT sum((v.value)::double precision) INTO _total FROM jsonb_each(variants) v;
    IF _total <= 0 THEN
        RAISE EXCEPTION 'variants: at least one weight must be above 0';
    END IF;
    RETURN (SELECT jsonb_object_agg(v.key, (v.value)::double precision / _total) FROM jsonb_each(variants) v);
END
$$;

CREATE OR REPLACE FUNCTION flywheel.create_experiment(name text, variants jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _variants jsonb := flywheel._normalize_variants(variants);
BEGIN
    IF EXISTS (SELECT 1 FROM flywheel.experiments e WHERE e.name = create_experiment.name) THEN
        RAISE EXCEPTION 'create_experiment: experiment % already exists', name
            USING HINT = 'stop it with flywheel.set_experiment_status(name, ''stopped'') and pick another name';
    END IF;
    INSERT INTO flywheel.experiments (name, variants, baseline)
    VALUES (name, _variants,
            (SELECT v.key FROM jsonb_each(_variants) v ORDER BY (v.value)::double precision DESC, v.key LIMIT 1));
    RETURN _variants;
END
$$;
COMMENT ON FUNCTION flywheel.create_experiment(text, jsonb) IS
    'Creates an A/B experiment from its variants'' weights (the heaviest is the baseline); returns the normalized weights.';

CREATE OR REPLACE FUNCTION flywheel.set_experiment_status(name text, status text) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE flywheel.experiments e SET status = set_experiment_status.status, updated_at = now()
    WHERE e.name = set_experiment_status.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'set_experiment_status: no experiment named %', name;
    END IF;
END
$$;
COMMENT ON FUNCTION flywheel.set_experiment_status(text, text) IS
    'Sets an experiment''s status (running, paused, stopped...): one that is not running serves its baseline.';

-- The variant of a unit (user, session...): a hash of (experiment, unit) placed on the variants'
-- cumulative weights in name order. The same unit always gets the same variant while the
-- weights stay; raising the last variant's weight only moves units into it. An experiment
-- that is not running serves its baseline.
CREATE OR REPLACE FUNCTION flywheel.assign_variant(experiment text, unit_id text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER  -- applications call it; they cannot read experiments
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _e       flywheel.experiments;
    _u       double precision;
    _variant text;
BEGIN
    SELECT * INTO _e FROM flywheel.experiments e WHERE e.name = experiment;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'assign_variant: no experiment named %', experiment;
    END IF;
    IF _e.status <> 'running' OR unit_id IS NULL THEN
        RETURN _e.baseline;
    END IF;
    -- 63 bits of the hash as a number in [0, 1)
    _u := (hashtextextended(experiment || E'\x1f' || unit_id, 0) & 9223372036854775807)::double precision
          / 9223372036854775808.0;
    SELECT c.key INTO _variant
    FROM (SELECT v.key, sum((v.value)::double precision) OVER (ORDER BY v.key) AS upper
          FROM jsonb_each(_e.variants) v) c
    WHERE c.upper > _u ORDER BY c.upper LIMIT 1;
    RETURN coalesce(_variant, (SELECT max(k) FROM jsonb_object_keys(_e.variants) k));  -- rounding at 1.0
END
$$;
COMMENT ON FUNCTION flywheel.assign_variant(text, text) IS
    'The variant a unit (user, session) gets in an experiment: a stable hash placed on the variants'' weights.';

CREATE OR REPLACE FUNCTION flywheel.experiment_results(experiment text, confidence double precision DEFAULT 0.95)
RETURNS TABLE (metric text, variant text, n bigint, value double precision, baseline text,
               difference double precision, ci_low double precision, ci_high double precision,
               p_value double precision, test text)
LANGUAGE plpython3u STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: metrics_experiments.results $python$;
COMMENT ON FUNCTION flywheel.experiment_results(text, double precision) IS
    'Per metric and variant of an experiment: the value, its difference from the baseline with a confidence interval and a p-value.';

-- Starts a canary: `variant` gets steps[1] of the traffic (the others share the rest in their
-- proportions); flywheel.advance_canaries() moves it to the next step once it has min_traces
-- judged traces in the current step, it has run for at least step_every, and its pass rate is
-- no more than max_drop below the baseline's in the same step. Otherwise it is rolled back.
CREATE OR REPLACE FUNCTION flywheel.start_canary(
    experiment text, variant text,
    steps double precision[] DEFAULT '{0.01,0.05,0.1,0.25,0.5,1.0}',
    max_drop double precision DEFAULT 0.02, min_traces integer DEFAULT 200,
    step_every interval DEFAULT '1 hour'
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _e flywheel.experiments;
BEGIN
    SELECT * INTO _e FROM flywheel.experiments e WHERE e.name = experiment FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'start_canary: no experiment named %', experiment;
    ELSIF NOT _e.variants ? variant THEN
        RAISE EXCEPTION 'start_canary: experiment % has no variant %', experiment, variant;
    ELSIF variant = _e.baseline THEN
        RAISE EXCEPTION 'start_canary: % is the baseline of %; the canary is the variant being introduced', variant, experiment;
    ELSIF cardinality(steps) = 0 OR EXISTS (SELECT 1 FROM unnest(steps) s WHERE s <= 0 OR s > 1) THEN
        RAISE EXCEPTION 'start_canary: steps must be weights in (0, 1], got %', steps;
    END IF;
    UPDATE flywheel.experiments e
    SET canary = jsonb_build_object('variant', variant, 'steps', to_jsonb(steps), 'step', 1, 'max_drop', max_drop,
                                    'min_traces', min_traces, 'step_every', step_every::text, 'step_started_at', now()),
        variants = flywheel._variants_with_weight(_e.variants, variant, steps[1]),
        status = 'running', updated_at = now()
    WHERE e.name = experiment
    RETURNING e.variants INTO _e.variants;
    RETURN _e.variants;
END
$$;
COMMENT ON FUNCTION flywheel.start_canary(text, text, double precision[], double precision, integer, interval) IS
    'Starts a canary: a variant''s share of traffic raised step by step by advance_canaries() while its pass rate holds.';

-- The variants with `variant` at `weight` and the others sharing 1 - weight in their proportions.
CREATE OR REPLACE FUNCTION flywheel._variants_with_weight(variants jsonb, variant text, weight double precision)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    WITH others AS (SELECT v.key, (v.value)::double precision AS w FROM jsonb_each(variants) v WHERE v.key <> variant),
    total AS (SELECT sum(w) AS s, count(*) AS n FROM others)
    SELECT jsonb_build_object(variant, weight) || coalesce(
        (SELECT jsonb_object_agg(o.key, CASE WHEN t.s > 0 THEN o.w / t.s ELSE 1.0 / t.n END * (1 - weight))
         FROM others o, total t), '{}')
$$;

-- One step of every running canary (scheduled every 5 minutes). Returns what it did.
CREATE OR REPLACE FUNCTION flywheel.advance_canaries()
RETURNS TABLE (experiment text, action text, canary_pass_rate double precision, baseline_pass_rate double precision)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _e      flywheel.experiments;
    _c      jsonb;
    _step   integer;
    _steps  double precision[];
    _stats  record;
BEGIN
    FOR _e IN SELECT * FROM flywheel.experiments e WHERE e.status = 'running' AND e.canary IS NOT NULL FOR UPDATE LOOP
        _c := _e.canary;
        _step := (_c->>'step')::integer;
        _steps := ARRAY(SELECT jsonb_array_elements_text(_c->'steps')::double precision);
        SELECT count(*) FILTER (WHERE t.variant = _c->>'variant') AS canary_n,
               avg((NOT v.failed)::integer) FILTER (WHERE t.variant = _c->>'variant')::double precision AS canary_rate,
               count(*) FILTER (WHERE t.variant = _e.baseline) AS baseline_n,
               avg((NOT v.failed)::integer) FILTER (WHERE t.variant = _e.baseline)::double precision AS baseline_rate
        INTO _stats
        FROM flywheel.traces t JOIN flywheel._trace_verdicts v ON v.trace_id = t.id AND v.verdicts > 0
        WHERE t.created_at >= (_c->>'step_started_at')::timestamptz AND NOT t.shadow
          AND t.variant IN (_c->>'variant', _e.baseline)
          AND (t.metadata->>'experiment' = _e.name OR t.metadata->>'experiment' IS NULL);
        experiment := _e.name;
        canary_pass_rate := _stats.canary_rate;
        baseline_pass_rate := _stats.baseline_rate;
        IF _stats.canary_n > 0 AND _stats.baseline_n > 0
           AND _stats.canary_rate < _stats.baseline_rate - (_c->>'max_drop')::double precision THEN
            UPDATE flywheel.experiments e
            SET variants = flywheel._variants_with_weight(e.variants, _c->>'variant', 0), status = 'rolled_back',
                canary = _c || jsonb_build_object('rolled_back_at', now()), updated_at = now()
            WHERE e.name = _e.name;
            PERFORM flywheel._raise_alert('canary', _e.name,
                format('canary %s of %s rolled back at step %s: pass rate %s against %s for %s',
                       _c->>'variant', _e.name, _step, round(_stats.canary_rate::numeric, 3),
                       round(_stats.baseline_rate::numeric, 3), _e.baseline),
                jsonb_build_object('canary', _c, 'canary_n', _stats.canary_n, 'baseline_n', _stats.baseline_n));
            action := 'rolled_back';
        ELSIF _stats.canary_n < (_c->>'min_traces')::integer
              OR now() - (_c->>'step_started_at')::timestamptz < (_c->>'step_every')::interval THEN
            action := 'waiting';
        ELSIF _step >= cardinality(_steps) THEN
            UPDATE flywheel.experiments e SET status = 'completed', updated_at = now() WHERE e.name = _e.name;
            action := 'completed';
        ELSE
            UPDATE flywheel.experiments e
            SET variants = flywheel._variants_with_weight(e.variants, _c->>'variant', _steps[_step + 1]),
                canary = _c || jsonb_build_object('step', _step + 1, 'step_started_at', now()), updated_at = now()
            WHERE e.name = _e.name;
            action := format('advanced to %s', _steps[_step + 1]);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION flywheel.advance_canaries() IS
    'One step of every running canary: advanced, held or rolled back on its pass rate against the baseline''s.';

SELECT flywheel._schedule('flywheel_advance_canaries', '*/5 * * * *');

-- The catalog's comments of this area's tables (created in migrations/0410): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.experiments IS
    'A/B experiments and canaries: variants with weights, baseline, status and the canary''s state.';
