-- Running validators: the insert trigger, validate_traces(), revalidate(), check_input(),
-- redact_pii() and the anomaly baselines.

-- Evaluates validators over a batch given as column arrays (see plpython/validators_runtime.py);
-- it only reads, and returns the result rows and judge jobs for its caller to write, as array
-- literals (text) of the types given in the comments, which the caller casts.
CREATE OR REPLACE FUNCTION flywheel._evaluate(
    purpose text, names text[], ids bigint[], apps text[], nodes text[], node_types text[], models text[],
    prompt_versions text[], inputs text[], outputs text[], expecteds text[], latencies double precision[],
    tokens_ins integer[], tokens_outs integer[], costs double precision[], metadatas text[],
    OUT r_trace_ids text, OUT r_validator_ids text, OUT r_names text, OUT r_versions text,   -- bigint[], bigint[], text[], integer[]
    OUT r_statuses text, OUT r_scores text, OUT r_labels text, OUT r_details text,           -- text[], float8[], text[], jsonb[]
    OUT j_trace_ids text, OUT j_validator_ids text, OUT j_versions text,                     -- bigint[], bigint[], integer[]
    OUT p_trace_ids text,                                              -- bigint[]: the traces with results
    OUT p_rows text                                                    -- flywheel._insert_results[] (purpose 'insert')
)
LANGUAGE plpython3u
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: validators_runtime.evaluate $python$;

-- The statement-level trigger: one call into PL/Python per INSERT statement with the whole
-- batch, then one INSERT of all results (one packed row per trace, see sql/105) and one of all
-- judge jobs. Neither INSERT runs in a
-- subtransaction, so an application's transaction gains no subtransaction ids however many
-- traces it inserts (see DESIGN.md on the 64-subtransaction cliff). SECURITY DEFINER: the
-- application role may not write results or jobs itself.
CREATE OR REPLACE FUNCTION flywheel._validate_inserted_traces() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    ids bigint[]; apps text[]; nodes text[]; node_types text[]; models text[]; prompt_versions text[];
    inputs text[]; outputs text[]; expecteds text[]; latencies float8[]; tokens_ins integer[];
    tokens_outs integer[]; costs float8[]; metadatas text[];
    b record;
    packed flywheel._insert_results[];
    linked boolean;
    bad record;
BEGIN
    SELECT array_agg(t.id), array_agg(t.app), array_agg(t.node), array_agg(t.node_type), array_agg(t.model),
           array_agg(t.prompt_version), array_agg(t.input), array_agg(t.output), array_agg(t.expected),
           array_agg(t.latency_ms), array_agg(t.tokens_in), array_agg(t.tokens_out), array_agg(t.cost_usd),
           array_agg(t.metadata::text), bool_or(t.parent_id IS NOT NULL OR t.metadata ? 'shadow_of')
    INTO ids, apps, nodes, node_types, models, prompt_versions, inputs, outputs, expecteds, latencies,
         tokens_ins, tokens_outs, costs, metadatas, linked
    FROM new_traces t;
    -- A trace's links (parent_id, metadata.shadow_of) stay within its app: a link to another
    -- app's trace would join that trace into this app's runs and shadow comparisons. One query
    -- per statement, only when some row has a link. (A link to no trace yet is allowed: a parent
    -- may arrive later; the metrics join links within the app.)
    IF linked THEN
        SELECT l.id, l.app, l.link, l.target INTO bad
        FROM (SELECT t.id, t.app, 'parent_id' AS link, t.parent_id AS target
              FROM new_traces t WHERE t.parent_id IS NOT NULL
              UNION ALL
              SELECT t.id, t.app, 'shadow_of', (t.metadata ->> 'shadow_of')::bigint
              FROM new_traces t WHERE t.metadata ->> 'shadow_of' ~ '^[0-9]{1,18}$') l
        WHERE EXISTS (SELECT 1 FROM flywheel.traces o WHERE o.id = l.target AND o.app <> l.app)
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'trace %: % % is not a trace of app %', bad.id, bad.link, bad.target, quote_literal(bad.app)
                USING ERRCODE = 'foreign_key_violation',
                      HINT = 'parent_id and metadata.shadow_of name traces of the same app';
        END IF;
    END IF;
    -- A block of its own: validators run read-only, which PostgreSQL enforces (the flag is
    -- restored when the block ends), and nothing they do can abort the application's INSERT.
    -- The block writes nothing, so it takes no subtransaction id.
    BEGIN
        SET LOCAL transaction_read_only = on;
        b := flywheel._evaluate('insert', NULL, ids, apps, nodes, node_types, models, prompt_versions, inputs,
                                outputs, expecteds, latencies, tokens_ins, tokens_outs, costs, metadatas);
        -- Parsed here, so that a malformed literal is a WARNING too, never a failed INSERT.
        packed := b.p_rows;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'dbflywheel: validators did not run on this INSERT: %', SQLERRM;
        RETURN NULL;
    END;
    IF b.p_trace_ids <> '{}' THEN
        -- One packed row per trace, from one literal of the table's row type (parsed in C, which
        -- costs less than slicing the r_ arrays per trace here).
        INSERT INTO flywheel._insert_results
            (trace_id, validator_ids, validator_versions, statuses, scores, labels, details)
        SELECT p.trace_id, p.validator_ids, p.validator_versions, p.statuses, p.scores, p.labels, p.details
        FROM unnest(packed) AS p;
        -- The pass-rate rollup's mark, as flywheel._mark_pass_rate_days() makes it for results
        -- written one by one.
        IF EXISTS (SELECT 1 FROM flywheel.metrics m WHERE m.name = 'pass_rate' AND m.kind = 'rollup') THEN
            INSERT INTO flywheel._rollup_dirty_days (metric, trace_ids) VALUES ('pass_rate', b.p_trace_ids::bigint[]);
        END IF;
    END IF;
    IF b.j_trace_ids <> '{}' THEN
        INSERT INTO flywheel.judge_jobs (trace_id, validator_id, validator_version)
        SELECT * FROM unnest(b.j_trace_ids::bigint[], b.j_validator_ids::bigint[], b.j_versions::integer[])
        ON CONFLICT DO NOTHING;
        PERFORM pg_notify('flywheel_judge_jobs', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER validate_inserted_traces AFTER INSERT ON flywheel.traces
    REFERENCING NEW TABLE AS new_traces
    FOR EACH STATEMENT EXECUTE FUNCTION flywheel._validate_inserted_traces();

-- Runs validators over stored traces now, upserts their results (and, for revalidate, queues
-- judge jobs), and returns the results. purpose: 'validate' or 'revalidate'.
CREATE OR REPLACE FUNCTION flywheel._validate(trace_ids bigint[], validators text[], purpose text)
RETURNS TABLE (trace_id bigint, validator text, validator_version integer, status text,
               score double precision, label text, details jsonb)
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    b record;
BEGIN
    BEGIN  -- read-only, as in the trigger; the EXCEPTION clause makes it a block that restores the flag
    SET LOCAL transaction_read_only = on;
    SELECT e.* INTO b
    FROM (SELECT array_agg(t.id) AS ids, array_agg(t.app) AS apps, array_agg(t.node) AS nodes,
                 array_agg(t.node_type) AS node_types, array_agg(t.model) AS models,
                 array_agg(t.prompt_version) AS prompt_versions, array_agg(t.input) AS inputs,
                 array_agg(t.output) AS outputs, array_agg(t.expected) AS expecteds,
                 array_agg(t.latency_ms) AS latencies, array_agg(t.tokens_in) AS tokens_ins,
                 array_agg(t.tokens_out) AS tokens_outs, array_agg(t.cost_usd) AS costs,
                 array_agg(t.metadata::text) AS metadatas
          FROM flywheel.traces t WHERE t.id = ANY (_validate.trace_ids)) a,
         LATERAL flywheel._evaluate(_validate.purpose, _validate.validators, a.ids, a.apps, a.nodes,
                                    a.node_types, a.models, a.prompt_versions, a.inputs, a.outputs,
                                    a.expecteds, a.latencies, a.tokens_ins, a.tokens_outs, a.costs,
                                    a.metadatas) e;
    EXCEPTION WHEN OTHERS THEN
        RAISE;
    END;
    IF b.r_trace_ids <> '{}' THEN
        PERFORM flywheel._upsert_code_results(b.r_trace_ids::bigint[], b.r_validator_ids::bigint[],
                                              b.r_versions::integer[], b.r_statuses::text[], b.r_scores::float8[],
                                              b.r_labels::text[], b.r_details::jsonb[]);
    END IF;
    IF b.j_trace_ids <> '{}' THEN
        INSERT INTO flywheel.judge_jobs (trace_id, validator_id, validator_version)
        SELECT * FROM unnest(b.j_trace_ids::bigint[], b.j_validator_ids::bigint[], b.j_versions::integer[])
        ON CONFLICT DO NOTHING;
        PERFORM pg_notify('flywheel_judge_jobs', '');
    END IF;
    RETURN QUERY
        SELECT u.trace_id, u.name, u.version, u.status, u.score, u.label, coalesce(u.details, '{}')
        FROM unnest(b.r_trace_ids::bigint[], b.r_names::text[], b.r_versions::integer[], b.r_statuses::text[],
                    b.r_scores::float8[], b.r_labels::text[], b.r_details::jsonb[])
             AS u(trace_id, name, version, status, score, label, details)
        ORDER BY u.trace_id, u.name;
END
$$;

-- The current version of the named sync validators (all enabled ones when NULL) over these
-- traces, now, whatever their sample rate; results are upserted and returned. The golden-set
-- CI gate and revalidate() use it.
CREATE OR REPLACE FUNCTION flywheel.validate_traces(trace_ids bigint[], validators text[] DEFAULT NULL)
RETURNS TABLE (trace_id bigint, validator text, validator_version integer, status text,
               score double precision, label text, details jsonb)
LANGUAGE sql
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT * FROM flywheel._validate(trace_ids, validators, 'validate') $$;

-- Runs the current version of one validator over past traces (all, or those created since),
-- in batches of 1000 with a NOTICE after each; a sync validator's results are upserted, an
-- async one's judge jobs are queued. Sampling applies as on insert. Returns the traces seen.
CREATE OR REPLACE FUNCTION flywheel.revalidate(name text, since timestamptz DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    _ids     bigint[];
    _last    bigint := -9223372036854775808;
    _seen    bigint := 0;
    _results bigint;
    _total   bigint := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM flywheel.validators v WHERE v.name = revalidate.name) THEN
        RAISE EXCEPTION 'revalidate: no validator named %', coalesce(quote_literal(revalidate.name), 'NULL');
    END IF;
    LOOP
        SELECT array_agg(s.id ORDER BY s.id) INTO _ids
        FROM (SELECT t.id FROM flywheel.traces t
              WHERE t.id > _last AND (revalidate.since IS NULL OR t.created_at >= revalidate.since)
              ORDER BY t.id LIMIT 1000) s;
        EXIT WHEN _ids IS NULL;
        _last := _ids[cardinality(_ids)];
        SELECT count(*) INTO _results FROM flywheel._validate(_ids, ARRAY[revalidate.name], 'revalidate');
        _seen := _seen + cardinality(_ids);
        _total := _total + _results;
        RAISE NOTICE 'revalidate %: % traces seen, % results written (up to trace id %)',
            revalidate.name, _seen, _total, _last;
    END LOOP;
    RETURN _seen;
END
$$;

-- The input guards (pii, injection, language and validators whose config says
-- "input_guard": true) on text that is not a trace yet: an application asks before it calls
-- its LLM. Nothing is stored. Applications may call it directly (check_input calls it as
-- them), so it checks the app itself: one of the session's apps, any app for an admin.
CREATE OR REPLACE FUNCTION flywheel._check_input(input text, app text)
RETURNS TABLE (validator text, validator_version integer, status text, score double precision,
               label text, details jsonb)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    _apps text[] := flywheel._visible_apps(session_user);  -- NULL: every app (admins)
BEGIN
    IF _apps IS NOT NULL AND NOT coalesce(_check_input.app = ANY (_apps), false) THEN
        RAISE EXCEPTION 'check_input: app % is not one of yours', coalesce(quote_literal(_check_input.app), 'NULL')
            USING ERRCODE = 'insufficient_privilege', HINT = 'omit app to use your own';
    END IF;
    BEGIN  -- read-only, as in the trigger (the EXCEPTION clause makes a block that restores the flag)
        SET LOCAL transaction_read_only = on;
        SELECT e.* INTO b
        FROM flywheel._evaluate('check_input', NULL, ARRAY[NULL::bigint], ARRAY[_check_input.app], ARRAY[NULL::text],
                                ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[_check_input.input],
                                ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::float8], ARRAY[NULL::integer],
                                ARRAY[NULL::integer], ARRAY[NULL::float8], ARRAY['{}'::text]) e;
    EXCEPTION WHEN OTHERS THEN
        RAISE;
    END;
    RETURN QUERY
        SELECT u.name, u.version, u.status, u.score, u.label, coalesce(u.details, '{}')
        FROM unnest(b.r_names::text[], b.r_versions::integer[], b.r_statuses::text[], b.r_scores::float8[],
                    b.r_labels::text[], b.r_details::jsonb[])
             AS u(name, version, status, score, label, details)
        ORDER BY u.name;
END
$$;

CREATE OR REPLACE FUNCTION flywheel.check_input(input text, app text DEFAULT NULL)
RETURNS TABLE (validator text, validator_version integer, status text, score double precision,
               label text, details jsonb)
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _app text := coalesce(check_input.app, flywheel._app_of(current_user));
BEGIN
    -- An application asks with its own app's guards; naming another app would show that app's
    -- validators and verdicts. Admins may name any app.
    IF NOT pg_has_role(current_user, 'flywheel_admin', 'MEMBER')
       AND NOT (ARRAY[_app] <@ flywheel._apps_of(current_user)) THEN
        RAISE EXCEPTION 'check_input: app % is not one of yours', quote_literal(_app)
            USING ERRCODE = 'insufficient_privilege', HINT = 'omit app to use your own';
    END IF;
    RETURN QUERY SELECT * FROM flywheel._check_input(check_input.input, _app);
END
$$;

-- The text with every finding of the pii validator replaced by its category: [EMAIL], [PHONE],
-- [CARD], [IBAN], [SSN], [IP]. Judge workers call it before any text leaves the database.
CREATE OR REPLACE FUNCTION flywheel.redact_pii(input text) RETURNS text
LANGUAGE plpython3u IMMUTABLE STRICT
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: validators_pii.redact_pii $python$;

-- Recomputes the anomaly validator's norms from the traces of the last `lookback`:
-- median and median absolute deviation of log(1 + value) per model, node and metric.
CREATE OR REPLACE FUNCTION flywheel.refresh_anomaly_baselines(lookback interval DEFAULT '7 days') RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER  -- callers: admins and pg_cron's flywheel_scheduler
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _rows integer;
BEGIN
    DELETE FROM flywheel._anomaly_baselines;
    WITH src AS (
        SELECT t.model, t.node, m.metric, ln(1 + greatest(m.value, 0)) AS v
        FROM flywheel.traces t
        CROSS JOIN LATERAL (VALUES ('latency_ms', t.latency_ms), ('cost_usd', t.cost_usd),
                                   ('tokens_in', t.tokens_in::float8), ('tokens_out', t.tokens_out::float8))
            AS m(metric, value)
        WHERE t.created_at >= now() - lookback AND m.value IS NOT NULL
    ), med AS (
        SELECT model, node, metric, count(*) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS median_log
        FROM src GROUP BY model, node, metric
    )
    INSERT INTO flywheel._anomaly_baselines (model, node, metric, n, median_log, mad_log)
    SELECT med.model, med.node, med.metric, med.n, med.median_log,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(src.v - med.median_log))
    FROM med JOIN src ON src.model IS NOT DISTINCT FROM med.model AND src.node IS NOT DISTINCT FROM med.node
                     AND src.metric = med.metric
    GROUP BY med.model, med.node, med.metric, med.n, med.median_log;
    GET DIAGNOSTICS _rows = ROW_COUNT;
    RETURN _rows;
END
$$;

-- (sql/400-metrics.sql schedules the refresh every 10 minutes.)
