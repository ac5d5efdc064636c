-- The configuration of an LLM judge (kind llm_judge or llm_pairwise), checked when a validator
-- is created or changed. Replaces the minimal version of the validators' file (this file runs
-- later). Unknown keys are refused, so that a typo does not silently fall back to a default.
--   criterion     text: what the judge checks (required for llm_judge)
--   provider      'offline' (deterministic heuristics, the default) | 'openai' (any OpenAI-compatible endpoint)
--   model, base_url, api_key_env: for 'openai'; the API key itself comes from the worker's
--                 environment variable api_key_env (default OPENAI_API_KEY), never from the database;
--                 a worker calls only the base URLs and reads only the variables its operator allows
--                 (dbflywheel worker --allow-base-url, --allow-key-env), whatever this config says
--   scale         'binary' (default) | '1-5' (pass_threshold, default 4, turns a score into pass/fail)
--   few_shot      k labelled examples in the prompt (default 0)
--   redact_pii    default true: flywheel.redact_pii() on every text sent to the provider
--   agreement_floor (0..1), agreement_window (interval, default '7 days'), agreement_min_n (default 20)
--   budget        {jobs_per_hour, usd_per_day, usd_per_1m_tokens_in, usd_per_1m_tokens_out}
--   max_attempts (default 5), retry_base_seconds (2), retry_max_seconds (300), timeout_seconds (30),
--   temperature (0), latency_ms (offline judge only: simulated latency)
--   pair_window   llm_pairwise: how far back the other trace of the same input is looked for (default '7 days')
CREATE OR REPLACE FUNCTION flywheel._check_llm_judge_config(kind text, config jsonb) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _known  text[] := ARRAY['criterion', 'provider', 'model', 'base_url', 'api_key_env', 'scale', 'pass_threshold',
                            'few_shot', 'redact_pii', 'agreement_floor', 'agreement_window', 'agreement_min_n',
                            'budget', 'max_attempts', 'retry_base_seconds', 'retry_max_seconds', 'timeout_seconds',
                            'temperature', 'latency_ms', 'pair_window', 'abstain_below'];
    _key    text;
    _provider text := coalesce(config ->> 'provider', 'offline');
    _num    text;
BEGIN
    IF kind NOT IN ('llm_judge', 'llm_pairwise') THEN
        RAISE EXCEPTION 'not an LLM judge kind: % (llm_judge or llm_pairwise)', kind;
    END IF;
    IF config IS NULL OR jsonb_typeof(config) <> 'object' THEN
        RAISE EXCEPTION '% config must be a JSON object', kind;
    END IF;
    FOR _key IN SELECT jsonb_object_keys(config) LOOP
        IF _key ~* 'api_key$|secret|password|token$' AND _key <> 'api_key_env' THEN
            RAISE EXCEPTION '% config: % must not be stored in the database', kind, _key
                USING HINT = 'name the worker''s environment variable that holds it: {"api_key_env": "OPENAI_API_KEY"}';
        END IF;
        IF NOT _key = ANY (_known) THEN
            RAISE EXCEPTION '% config: unknown key "%"', kind, _key
                USING HINT = 'known keys: ' || array_to_string(_known, ', ');
        END IF;
    END LOOP;
    IF kind = 'llm_judge' AND coalesce(btrim(config ->> 'criterion'), '') = '' THEN
        RAISE EXCEPTION 'llm_judge config needs a criterion: what the judge checks in the output'
            USING HINT = '{"criterion": "The answer is polite and answers the question."}';
    END IF;
    IF config ? 'criterion' AND jsonb_typeof(config -> 'criterion') <> 'string' THEN
        RAISE EXCEPTION '% config: criterion must be a string', kind;
    END IF;
    IF _provider NOT IN ('offline', 'openai') THEN
        RAISE EXCEPTION '% config: provider must be offline or openai (any OpenAI-compatible endpoint), not %',
            kind, _provider;
    END IF;
    IF _provider = 'openai' AND coalesce(config ->> 'model', '') = '' THEN
        RAISE EXCEPTION '% config: provider openai needs a model', kind;
    END IF;
    IF config ? 'base_url' AND (config ->> 'base_url') !~ '^https?://' THEN
        RAISE EXCEPTION '% config: base_url must be an http(s) URL, not %', kind, config ->> 'base_url';
    END IF;
    IF coalesce(config ->> 'scale', 'binary') NOT IN ('binary', '1-5') THEN
        RAISE EXCEPTION '% config: scale must be binary or 1-5, not %', kind, config ->> 'scale';
    END IF;
    IF kind = 'llm_pairwise' AND coalesce(config ->> 'scale', 'binary') <> 'binary' THEN
        RAISE EXCEPTION 'llm_pairwise config: a pairwise judge answers a, b or tie; scale does not apply';
    END IF;
    IF config ? 'redact_pii' AND jsonb_typeof(config -> 'redact_pii') <> 'boolean' THEN
        RAISE EXCEPTION '% config: redact_pii must be true or false', kind;
    END IF;
    -- Numbers and their ranges.
    FOR _key, _num IN SELECT * FROM (VALUES
        ('few_shot', '0..50'), ('pass_threshold', '1..5'), ('agreement_floor', '0..1'), ('agreement_min_n', '1..1000000'),
        ('max_attempts', '1..100'), ('retry_base_seconds', '0..3600'), ('retry_max_seconds', '0..86400'),
        ('timeout_seconds', '0.1..3600'), ('temperature', '0..2'), ('latency_ms', '0..600000'),
        ('abstain_below', '0..1')) AS r(k, range)
    LOOP
        CONTINUE WHEN NOT config ? _key;
        IF jsonb_typeof(config -> _key) <> 'number'
           OR (config ->> _key)::numeric < split_part(_num, '..', 1)::numeric
           OR (config ->> _key)::numeric > split_part(_num, '..', 2)::numeric THEN
            RAISE EXCEPTION '% config: % must be a number in %, not %', kind, _key, _num, config -> _key;
        END IF;
    END LOOP;
    FOREACH _key IN ARRAY ARRAY['agreement_window', 'pair_window'] LOOP
        CONTINUE WHEN NOT config ? _key;
        BEGIN
            PERFORM (config ->> _key)::interval;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION '% config: % must be an interval such as ''7 days'', not %', kind, _key, config -> _key;
        END;
    END LOOP;
    IF config ? 'budget' THEN
        IF jsonb_typeof(config -> 'budget') <> 'object' THEN
            RAISE EXCEPTION '% config: budget must be an object such as {"jobs_per_hour": 1000}', kind;
        END IF;
        FOR _key IN SELECT jsonb_object_keys(config -> 'budget') LOOP
            IF _key NOT IN ('jobs_per_hour', 'usd_per_day', 'usd_per_1m_tokens_in', 'usd_per_1m_tokens_out') THEN
                RAISE EXCEPTION '% config: unknown budget key "%" (jobs_per_hour, usd_per_day, usd_per_1m_tokens_in, usd_per_1m_tokens_out)',
                    kind, _key;
            END IF;
            IF jsonb_typeof(config -> 'budget' -> _key) <> 'number' OR (config -> 'budget' ->> _key)::numeric < 0 THEN
                RAISE EXCEPTION '% config: budget.% must be a number >= 0', kind, _key;
            END IF;
        END LOOP;
    END IF;
END
$$;
