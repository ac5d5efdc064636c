-- The queue of asynchronous validator jobs (LLM judges): the insert trigger adds rows,
-- workers claim them with FOR UPDATE SKIP LOCKED and a lease.
CREATE TABLE flywheel.judge_jobs (
    id                bigserial PRIMARY KEY,
    trace_id          bigint NOT NULL,
    validator_id      bigint NOT NULL REFERENCES flywheel.validators (id) ON DELETE CASCADE,
    validator_version integer NOT NULL,
    pair_trace_id     bigint,  -- the other trace, for pairwise judges
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'leased')),
    attempts          integer NOT NULL DEFAULT 0,
    run_after         timestamptz NOT NULL DEFAULT now(),
    leased_by         text,
    lease_until       timestamptz,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT judge_jobs_once UNIQUE NULLS NOT DISTINCT (trace_id, validator_id, validator_version, pair_trace_id)
);
CREATE INDEX judge_jobs_claimable ON flywheel.judge_jobs (run_after) WHERE status = 'pending';

-- Alerts from every part of the flywheel (judge agreement, drift, satisfaction trend);
-- flywheel._raise_alert() inserts one and NOTIFYs channel 'flywheel_alerts'.
CREATE TABLE flywheel.alerts (
    id              bigserial PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    kind            text NOT NULL,  -- e.g. judge_agreement, drift, satisfaction_trend
    subject         text NOT NULL,  -- what it is about: a validator, metric or feature name
    message         text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}',
    acknowledged_at timestamptz
);
CREATE INDEX alerts_open ON flywheel.alerts (created_at) WHERE acknowledged_at IS NULL;
