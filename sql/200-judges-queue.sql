-- The judge queue: claim with FOR UPDATE SKIP LOCKED and a lease, complete idempotently,
-- retry with exponential backoff and jitter, dead-letter after max_attempts, budgets, status.
-- Workers (src/dbflywheel/worker.py) call these; the provider is called between a claim
-- and its completion, outside any transaction.

-- How many more jobs a validator may start now (NULL: no limit) and, when none, why.
-- config.budget: {"jobs_per_hour": N, "usd_per_day": X, "usd_per_1m_tokens_in": P, "usd_per_1m_tokens_out": Q}.
CREATE OR REPLACE FUNCTION flywheel._judge_budget(validator_id bigint, OUT remaining bigint, OUT reason text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER  -- queue_status readers see why jobs wait, not the calls behind it
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _budget jsonb;
    _used   bigint;
    _spent  double precision;
BEGIN
    SELECT v.config -> 'budget' INTO _budget FROM flywheel.validators v WHERE v.id = _judge_budget.validator_id;
    IF _budget IS NULL OR jsonb_typeof(_budget) <> 'object' THEN
        RETURN;
    END IF;
    IF _budget ? 'usd_per_day' THEN
        SELECT coalesce(sum(c.cost_usd), 0) INTO _spent FROM flywheel.judge_calls c
        WHERE c.validator_id = _judge_budget.validator_id AND c.called_at > now() - interval '1 day';
        IF _spent >= (_budget ->> 'usd_per_day')::double precision THEN
            remaining := 0;
            reason := format('budget: $%s of $%s per day spent; jobs wait', round(_spent::numeric, 4),
                             _budget ->> 'usd_per_day');
            RETURN;
        END IF;
    END IF;
    IF _budget ? 'jobs_per_hour' THEN
        -- Calls in the last hour plus jobs in hand now, so that a big claim cannot overshoot.
        SELECT (SELECT count(*) FROM flywheel.judge_calls c
                WHERE c.validator_id = _judge_budget.validator_id AND c.called_at > now() - interval '1 hour')
             + (SELECT count(*) FROM flywheel.judge_jobs j
                WHERE j.validator_id = _judge_budget.validator_id AND j.status = 'leased')
        INTO _used;
        remaining := greatest((_budget ->> 'jobs_per_hour')::bigint - _used, 0);
        IF remaining = 0 THEN
            reason := format('budget: %s jobs per hour reached; jobs wait', _budget ->> 'jobs_per_hour');
        END IF;
    END IF;
END
$$;

-- The other trace a pairwise job compares with: the most recent earlier trace of the same app
-- answering the same input with a different model, prompt version or variant, within the
-- judge's pair_window (default 7 days). Pairing only with earlier traces judges each pair
-- once: when its second trace arrives. The search walks the app's traces of that window by
-- (app, created_at) instead of an index on input, which every insert would pay for.
CREATE OR REPLACE FUNCTION flywheel._judge_pair_for(trace_id bigint, pair_window interval DEFAULT interval '7 days')
RETURNS bigint
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT o.id
    FROM flywheel.traces t
    JOIN flywheel.traces o ON o.app = t.app AND o.created_at >= t.created_at - pair_window AND o.created_at <= t.created_at
    WHERE t.id = _judge_pair_for.trace_id
      AND o.input = t.input
      AND (o.created_at, o.id) < (t.created_at, t.id)
      AND (o.model, o.prompt_version, o.variant) IS DISTINCT FROM (t.model, t.prompt_version, t.variant)
    ORDER BY o.created_at DESC, o.id DESC
    LIMIT 1
$$;

-- The few-shot examples of a judge prompt: the k labelled examples of the validator that the
-- semantic index (flywheel._few_shot) finds most useful for this trace, the trace excluded.
CREATE OR REPLACE FUNCTION flywheel._judge_examples(validator text, trace_id bigint, k integer)
RETURNS TABLE (input text, output text, verdict text, score double precision, comment text)
LANGUAGE plpgsql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _app text;
BEGIN
    IF coalesce(_judge_examples.k, 0) <= 0 THEN
        RETURN;
    END IF;
    -- Examples come from the judged trace's app only: another app's labelled texts must never
    -- reach this app's judge prompt.
    SELECT t.app INTO _app FROM flywheel.traces t WHERE t.id = _judge_examples.trace_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The semantic index: the examples of this validator most useful for this trace's input
    -- (similar, recently labelled, corrected or where people and the judge disagreed), same app.
    RETURN QUERY
    SELECT f.input, f.output, l.verdict, l.score, l.comment
    FROM flywheel.traces t
    JOIN flywheel.embeddings e ON e.trace_id = t.id AND e.embedder = flywheel._active_embedder()
    CROSS JOIN LATERAL flywheel._few_shot(e.embedding, _judge_examples.k + 1, _judge_examples.validator, _app,
                                          '30 days', current_user) f
    LEFT JOIN LATERAL (
        SELECT lb.verdict, lb.score, lb.comment FROM flywheel.labels lb
        WHERE lb.trace_id = f.trace_id AND lb.validator = _judge_examples.validator
        ORDER BY lb.created_at DESC, lb.id DESC LIMIT 1) l ON true
    WHERE t.id = _judge_examples.trace_id AND f.trace_id <> _judge_examples.trace_id
    ORDER BY f.score DESC
    LIMIT _judge_examples.k;
    IF FOUND THEN
        RETURN;
    END IF;
    -- No embedding yet (a worker embedder still filling in) or nothing similar: the most
    -- recent labelled examples of the validator, in the same app.
    RETURN QUERY
    SELECT t.input, t.output, l.verdict, l.score, l.comment
    FROM (SELECT DISTINCT ON (lb.trace_id) lb.*
          FROM flywheel.labels lb
          WHERE lb.validator = _judge_examples.validator AND lb.trace_id <> _judge_examples.trace_id
            AND lb.app = _app AND (lb.verdict IS NOT NULL OR lb.score IS NOT NULL)
          ORDER BY lb.trace_id, lb.created_at DESC, lb.id DESC) l
    JOIN flywheel.traces t ON t.id = l.trace_id AND t.app = _app
    ORDER BY l.created_at DESC, l.id DESC
    LIMIT _judge_examples.k;
END
$$;

-- Text leaving the database for a provider: PII redacted unless the validator says otherwise.
CREATE OR REPLACE FUNCTION flywheel._judge_text(body text, redact boolean) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    IF body IS NULL OR NOT redact THEN
        RETURN body;
    END IF;
    RETURN flywheel.redact_pii(body);
END
$$;

-- Claims up to max_jobs due jobs for one worker: validators over budget are skipped, and
-- every claim counts one attempt (so a job that kills its worker still ends in the
-- dead-letter table). Returns what the prompt needs, already redacted.
CREATE OR REPLACE FUNCTION flywheel._claim_judge_jobs(worker_id text, max_jobs integer, lease interval)
RETURNS TABLE (job_id bigint, trace_id bigint, pair_trace_id bigint, validator_id bigint, validator text,
               validator_version integer, kind text, config jsonb, attempts integer,
               input text, output text, expected text, pair_input text, pair_output text, examples jsonb)
LANGUAGE plpgsql
SET jit TO off  -- the planner's cost guesses for the functions below made JIT compile every claim (~80 ms)
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _limits  jsonb := '{}';  -- validator id -> jobs it may still start
    _ids     bigint[] := '{}';
    _taken   jsonb := '{}';
    _row     record;
BEGIN
    SELECT coalesce(jsonb_object_agg(v.id::text, b.remaining), '{}') INTO _limits
    FROM flywheel.validators v, flywheel._judge_budget(v.id) b
    WHERE v.config ? 'budget' AND b.remaining IS NOT NULL;

    FOR _row IN
        SELECT j.id, j.validator_id FROM flywheel.judge_jobs j
        WHERE j.status = 'pending' AND j.run_after <= now()
          AND coalesce((_limits ->> j.validator_id::text)::bigint, 1) > 0
        ORDER BY j.run_after  -- the order of the index judge_jobs_claimable
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    LOOP
        IF _limits ? _row.validator_id::text THEN
            IF coalesce((_taken ->> _row.validator_id::text)::bigint, 0) >= (_limits ->> _row.validator_id::text)::bigint THEN
                CONTINUE;
            END IF;
            _taken := jsonb_set(_taken, ARRAY[_row.validator_id::text],
                                to_jsonb(coalesce((_taken ->> _row.validator_id::text)::bigint, 0) + 1));
        END IF;
        _ids := _ids || _row.id;
    END LOOP;

    RETURN QUERY
    WITH leased AS (
        UPDATE flywheel.judge_jobs j
        SET status = 'leased', leased_by = _claim_judge_jobs.worker_id, lease_until = now() + lease,
            attempts = j.attempts + 1
        WHERE j.id = ANY (_ids)
        RETURNING j.*
    ), jobs AS (
        SELECT l.*, v.name, coalesce(vv.kind, v.kind) AS kind, coalesce(vv.config, v.config) AS config,
               CASE WHEN coalesce(vv.kind, v.kind) = 'llm_pairwise'
                    THEN coalesce(l.pair_trace_id, flywheel._judge_pair_for(l.trace_id,
                        coalesce((coalesce(vv.config, v.config) ->> 'pair_window')::interval, interval '7 days'))) END AS pair_id
        FROM leased l
        JOIN flywheel.validators v ON v.id = l.validator_id
        LEFT JOIN flywheel.validator_versions vv ON vv.validator_id = l.validator_id AND vv.version = l.validator_version
    ), prepared AS (
        SELECT j.*, coalesce((j.config ->> 'redact_pii')::boolean, true) AS redact FROM jobs j
    )
    SELECT p.id, p.trace_id, p.pair_id, p.validator_id, p.name, p.validator_version, p.kind, p.config, p.attempts,
           flywheel._judge_text(t.input, p.redact), flywheel._judge_text(t.output, p.redact),
           flywheel._judge_text(t.expected, p.redact),
           flywheel._judge_text(o.input, p.redact), flywheel._judge_text(o.output, p.redact),
           (SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'input', flywheel._judge_text(e.input, p.redact),
                       'output', flywheel._judge_text(e.output, p.redact),
                       'verdict', e.verdict, 'score', e.score, 'comment', e.comment)), '[]')
            FROM flywheel._judge_examples(p.name, p.trace_id, coalesce((p.config ->> 'few_shot')::integer, 0)) e)
    FROM prepared p
    LEFT JOIN flywheel.traces t ON t.id = p.trace_id
    LEFT JOIN flywheel.traces o ON o.id = p.pair_id
    ORDER BY p.id;
END
$$;

-- Writes a verdict once (the unique key of _results makes a second writer a no-op),
-- records the provider call, and removes the job, whoever holds its lease now.
-- Returns true when this call wrote the result.
CREATE OR REPLACE FUNCTION flywheel._complete_judge_job(
    job_id bigint, worker_id text, validator_id bigint, status text, score double precision, label text,
    details jsonb, tokens_in integer DEFAULT NULL, tokens_out integer DEFAULT NULL, latency_ms double precision DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _job     flywheel.judge_jobs;
    _v       flywheel.validators;
    _pair    bigint;
    _written integer;
    _budget  jsonb;
BEGIN
    SELECT * INTO _v FROM flywheel.validators v WHERE v.id = _complete_judge_job.validator_id;
    _budget := coalesce(_v.config -> 'budget', '{}');
    INSERT INTO flywheel.judge_calls (validator_id, job_id, worker_id, ok, tokens_in, tokens_out, cost_usd, latency_ms)
    VALUES (_complete_judge_job.validator_id, job_id, worker_id, true, tokens_in, tokens_out,
            coalesce(tokens_in, 0) * coalesce((_budget ->> 'usd_per_1m_tokens_in')::double precision, 0) / 1e6
          + coalesce(tokens_out, 0) * coalesce((_budget ->> 'usd_per_1m_tokens_out')::double precision, 0) / 1e6,
            latency_ms);

    SELECT * INTO _job FROM flywheel.judge_jobs j WHERE j.id = _complete_judge_job.job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;  -- another worker finished it after this one's lease expired
    END IF;
    INSERT INTO flywheel._results AS r
        (trace_id, validator_id, validator_version, status, score, label, details, judged_by)
    VALUES (_job.trace_id, _job.validator_id, _job.validator_version, _complete_judge_job.status,
            _complete_judge_job.score, _complete_judge_job.label, coalesce(_complete_judge_job.details, '{}'), 'llm')
    ON CONFLICT ON CONSTRAINT _results_key DO NOTHING;
    GET DIAGNOSTICS _written = ROW_COUNT;

    _pair := coalesce(_job.pair_trace_id, (_complete_judge_job.details ->> 'pair_trace_id')::bigint);
    IF _written > 0 AND _pair IS NOT NULL AND _complete_judge_job.label IN ('a', 'b', 'tie') THEN
        INSERT INTO flywheel.preferences (trace_a, trace_b, winner, judged_by, validator, validator_version, reason)
        VALUES (_job.trace_id, _pair, _complete_judge_job.label, 'llm', _v.name, _job.validator_version,
                _complete_judge_job.details ->> 'reason')
        ON CONFLICT DO NOTHING;
    END IF;
    DELETE FROM flywheel.judge_jobs j WHERE j.id = _job.id;
    RETURN _written > 0;
END
$$;

-- A failed provider call: back to pending after exponential backoff with jitter (or the
-- provider's Retry-After, when longer), or into the dead-letter table after max_attempts, or
-- at once when final (the worker refuses the job's config: retrying cannot help).
-- Returns 'retry', 'dead', or 'gone' when this worker no longer holds the job's lease.
DROP FUNCTION IF EXISTS flywheel._fail_judge_job(bigint, text, bigint, text, double precision);  -- before final
CREATE OR REPLACE FUNCTION flywheel._fail_judge_job(
    job_id bigint, worker_id text, validator_id bigint, error text, retry_after double precision DEFAULT NULL,
    final boolean DEFAULT false
) RETURNS text
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _job     flywheel.judge_jobs;
    _config  jsonb;
    _max     integer;
    _backoff double precision;
BEGIN
    INSERT INTO flywheel.judge_calls (validator_id, job_id, worker_id, ok)
    VALUES (_fail_judge_job.validator_id, job_id, worker_id, false);
    SELECT * INTO _job FROM flywheel.judge_jobs j
    WHERE j.id = _fail_judge_job.job_id AND j.status = 'leased' AND j.leased_by = _fail_judge_job.worker_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    SELECT coalesce(vv.config, v.config) INTO _config
    FROM flywheel.validators v
    LEFT JOIN flywheel.validator_versions vv ON vv.validator_id = v.id AND vv.version = _job.validator_version
    WHERE v.id = _job.validator_id;
    _max := coalesce((_config ->> 'max_attempts')::integer, 5);
    IF _job.attempts >= _max OR coalesce(_fail_judge_job.final, false) THEN
        INSERT INTO flywheel.judge_dead_letters
            (id, trace_id, validator_id, validator_version, pair_trace_id, attempts, error, created_at)
        VALUES (_job.id, _job.trace_id, _job.validator_id, _job.validator_version, _job.pair_trace_id,
                _job.attempts, left(coalesce(error, 'unknown error'), 2000), _job.created_at)
        ON CONFLICT (id) DO UPDATE SET attempts = EXCLUDED.attempts, error = EXCLUDED.error, dead_at = now();
        DELETE FROM flywheel.judge_jobs j WHERE j.id = _job.id;
        RETURN 'dead';
    END IF;
    -- Full jitter around the exponential step: workers that failed together do not retry together.
    _backoff := least(coalesce((_config ->> 'retry_max_seconds')::double precision, 300),
                      coalesce((_config ->> 'retry_base_seconds')::double precision, 2) * 2 ^ (_job.attempts - 1))
                * (0.5 + random());
    UPDATE flywheel.judge_jobs j
    SET status = 'pending', leased_by = NULL, lease_until = NULL, last_error = left(error, 2000),
        run_after = now() + make_interval(secs => greatest(_backoff, least(coalesce(retry_after, 0), 86400)))
    WHERE j.id = _job.id;
    RETURN 'retry';
END
$$;

-- Jobs whose lease expired (their worker died or lost the database) become pending again.
-- Run by every worker's heartbeat rather than every claim: a sweep per claim scanned the
-- queue's dead tuples on every claim, for leases that expire only once per lease period.
CREATE OR REPLACE FUNCTION flywheel._release_expired_leases() RETURNS integer
LANGUAGE sql
SET search_path TO pg_catalog, pg_temp
AS $$
    WITH released AS (
        UPDATE flywheel.judge_jobs j
        SET status = 'pending', leased_by = NULL, lease_until = NULL,
            last_error = format('lease of worker %s expired', j.leased_by)
        WHERE j.id IN (SELECT e.id FROM flywheel.judge_jobs e
                       WHERE e.status = 'leased' AND e.lease_until < now() FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*)::integer FROM released
$$;

-- A worker's heartbeat: its row in judge_workers, its leases extended (a slow provider call
-- keeps its job; a worker killed with -9 stops extending and its leases expire), and the
-- expired leases of others released. job_ids: the jobs the worker still processes; only
-- their leases are extended, so a job whose processing ended without an outcome is not held
-- forever (NULL, from older workers: all of the worker's leases).
DROP FUNCTION IF EXISTS flywheel._judge_heartbeat(text, text, integer, integer, integer, bigint, bigint, interval);
CREATE OR REPLACE FUNCTION flywheel._judge_heartbeat(
    worker_id text, hostname text, pid integer, concurrency integer, in_flight integer,
    jobs_done bigint, jobs_failed bigint, lease interval, job_ids bigint[] DEFAULT NULL
) RETURNS void
LANGUAGE sql
SET search_path TO pg_catalog, pg_temp
AS $$
    INSERT INTO flywheel.judge_workers AS w
        (worker_id, hostname, pid, concurrency, in_flight, jobs_done, jobs_failed)
    VALUES (worker_id, hostname, pid, concurrency, in_flight, jobs_done, jobs_failed)
    ON CONFLICT (worker_id) DO UPDATE
    SET in_flight = EXCLUDED.in_flight, jobs_done = EXCLUDED.jobs_done, jobs_failed = EXCLUDED.jobs_failed,
        last_seen = now();
    UPDATE flywheel.judge_jobs j SET lease_until = now() + lease
    WHERE j.status = 'leased' AND j.leased_by = _judge_heartbeat.worker_id
      AND (_judge_heartbeat.job_ids IS NULL OR j.id = ANY (_judge_heartbeat.job_ids));
    SELECT flywheel._release_expired_leases();
$$;

-- Puts dead-lettered jobs back in the queue with a fresh attempt count: all of them, those of
-- one validator (by name), or the given job ids. Returns how many were requeued.
CREATE OR REPLACE FUNCTION flywheel.requeue_dead(validator text DEFAULT NULL, job_ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _n integer;
BEGIN
    WITH moved AS (
        DELETE FROM flywheel.judge_dead_letters d
        USING flywheel.validators v
        WHERE v.id = d.validator_id
          AND (requeue_dead.validator IS NULL OR v.name = requeue_dead.validator)
          AND (requeue_dead.job_ids IS NULL OR d.id = ANY (requeue_dead.job_ids))
        RETURNING d.*
    ), requeued AS (
        INSERT INTO flywheel.judge_jobs (id, trace_id, validator_id, validator_version, pair_trace_id, last_error, created_at)
        SELECT m.id, m.trace_id, m.validator_id, m.validator_version, m.pair_trace_id,
               'requeued after: ' || m.error, m.created_at
        FROM moved m
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO _n FROM requeued;
    IF _n > 0 THEN
        PERFORM pg_notify('flywheel_judge_jobs', 'requeued');
    END IF;
    RETURN _n;
END
$$;
COMMENT ON FUNCTION flywheel.requeue_dead(text, bigint[]) IS
    'Puts dead-lettered judge jobs (all, one validator''s, or the given ids) back in the queue with a fresh attempt count; returns how many.';

-- The queue per async validator: what waits, what is in hand, what is done or dead, and why
-- jobs wait when a budget holds them.
CREATE OR REPLACE VIEW flywheel.queue_status AS
SELECT v.name AS validator,
       v.version AS validator_version,
       coalesce(q.pending, 0) AS pending,
       coalesce(q.leased, 0) AS leased,
       coalesce(r.done, 0) AS done,
       coalesce(d.dead, 0) AS dead,
       now() - q.oldest_pending AS oldest_pending_age,
       coalesce(q.retrying, 0) AS retrying,
       b.reason AS waiting_reason
FROM flywheel.validators v
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE j.status = 'pending') AS pending,
           count(*) FILTER (WHERE j.status = 'leased') AS leased,
           count(*) FILTER (WHERE j.status = 'pending' AND j.attempts > 0) AS retrying,
           min(j.created_at) FILTER (WHERE j.status = 'pending') AS oldest_pending
    FROM flywheel.judge_jobs j WHERE j.validator_id = v.id) q ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS done FROM flywheel._results r WHERE r.validator_id = v.id AND r.judged_by = 'llm') r ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS dead FROM flywheel.judge_dead_letters d WHERE d.validator_id = v.id) d ON true
LEFT JOIN LATERAL flywheel._judge_budget(v.id) b ON true
WHERE v.mode = 'async' OR q.pending + q.leased > 0 OR d.dead > 0;
COMMENT ON VIEW flywheel.queue_status IS
    'The judge queue per async validator: jobs pending, leased, done and dead, and why jobs wait when a budget holds them.';

-- The catalog's comments of this area's tables (created in migrations/0002 and 0200): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.judge_jobs IS
    'The queue of asynchronous validator jobs (LLM judges): enqueued by the insert trigger, leased by workers.';
COMMENT ON TABLE flywheel.judge_dead_letters IS
    'Judge jobs that failed max_attempts times or for good, with their last error; flywheel.requeue_dead puts them back.';
COMMENT ON TABLE flywheel.judge_workers IS
    'One row per judge worker: its host, pid, concurrency and counters, updated by its heartbeat.';
COMMENT ON TABLE flywheel.judge_calls IS
    'Every provider call a judge worker made, successful or not: what budgets count and what it cost.';
