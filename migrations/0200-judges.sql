-- LLM judges: dead letters, worker heartbeats, a log of provider calls (budgets), and
-- pairwise preferences (human votes and judge verdicts on the same pairs of traces).

-- A job that failed max_attempts times, with its last error; flywheel.requeue_dead() puts it back.
CREATE TABLE flywheel.judge_dead_letters (
    id                bigint PRIMARY KEY,  -- the job's id in judge_jobs
    trace_id          bigint NOT NULL,
    validator_id      bigint NOT NULL REFERENCES flywheel.validators (id) ON DELETE CASCADE,
    validator_version integer NOT NULL,
    pair_trace_id     bigint,
    attempts          integer NOT NULL,
    error             text NOT NULL,
    created_at        timestamptz NOT NULL,  -- when the job was first enqueued
    dead_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX judge_dead_letters_validator ON flywheel.judge_dead_letters (validator_id, dead_at);

-- Expired leases are found by this index (a worker killed with -9 never releases its jobs).
CREATE INDEX judge_jobs_leased ON flywheel.judge_jobs (lease_until) WHERE status = 'leased';
CREATE INDEX judge_jobs_validator ON flywheel.judge_jobs (validator_id);

-- Live workers: each one upserts its row every few seconds and deletes it on a clean exit.
CREATE TABLE flywheel.judge_workers (
    worker_id   text PRIMARY KEY,
    hostname    text NOT NULL,
    pid         integer NOT NULL,
    concurrency integer NOT NULL,
    in_flight   integer NOT NULL DEFAULT 0,
    jobs_done   bigint NOT NULL DEFAULT 0,
    jobs_failed bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

-- Every provider call a worker made (successful or not): what budgets count and what it cost.
CREATE TABLE flywheel.judge_calls (
    id           bigserial PRIMARY KEY,
    validator_id bigint NOT NULL REFERENCES flywheel.validators (id) ON DELETE CASCADE,
    job_id       bigint NOT NULL,
    worker_id    text,
    ok           boolean NOT NULL,
    tokens_in    integer,
    tokens_out   integer,
    cost_usd     double precision,
    latency_ms   double precision,
    called_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX judge_calls_validator_called_at ON flywheel.judge_calls (validator_id, called_at);

-- Pairwise verdicts: which of two traces answering the same input is better. Human votes
-- (several annotators per pair) and judge verdicts (validator = the judge's name) side by
-- side, imported ones included.
CREATE TABLE flywheel.preferences (
    id                bigserial PRIMARY KEY,
    trace_a           bigint NOT NULL,
    trace_b           bigint NOT NULL,
    app               text NOT NULL,  -- copied from trace_a, for row-level security
    winner            text NOT NULL CHECK (winner IN ('a', 'b', 'tie')),
    judged_by         text NOT NULL DEFAULT 'human' CHECK (judged_by IN ('human', 'llm')),
    validator         text,
    validator_version integer,
    annotator         text,
    reason            text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT preferences_two_traces CHECK (trace_a <> trace_b),
    CONSTRAINT preferences_judge_names_itself CHECK (judged_by = 'human' OR validator IS NOT NULL)
);
-- Pairs are unordered: (a, b) and (b, a) are the same pair, with the winner flipped.
CREATE INDEX preferences_pair ON flywheel.preferences (least(trace_a, trace_b), greatest(trace_a, trace_b));
CREATE INDEX preferences_validator_created_at ON flywheel.preferences (validator, created_at);
-- A worker writes a judge's verdict on a pair once, however often the job is retried.
CREATE UNIQUE INDEX preferences_judge_once ON flywheel.preferences
    (validator, validator_version, trace_a, trace_b) WHERE judged_by = 'llm' AND validator_version IS NOT NULL;
