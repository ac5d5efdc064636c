-- Experiments (A/B, canary), the retention setting and the audit of deletions.

CREATE TABLE flywheel.experiments (
    name       text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$'),
    variants   jsonb NOT NULL,  -- {"A": 0.9, "B": 0.1}: weights that sum to 1
    baseline   text NOT NULL,   -- the variant the others are compared with: the heaviest at creation
    status     text NOT NULL DEFAULT 'running'
               CHECK (status IN ('running', 'paused', 'stopped', 'rolled_back', 'completed')),
    -- canary: {"variant": "B", "steps": [...], "step": 0, "max_drop": 0.02, "min_traces": 100,
    --          "control": "A", "step_started_at": ...}
    canary     jsonb,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT experiments_variants_is_an_object CHECK (jsonb_typeof(variants) = 'object')
);

-- How long traces (and everything keyed by them) are kept; NULL keeps them forever.
CREATE TABLE flywheel.retention (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    keep       interval CHECK (keep > interval '0'),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO flywheel.retention (keep) VALUES (NULL);

-- What was deleted, and why: counts per table, never the data. A forgotten user is kept only
-- as a SHA-256 of the id, so a repeated request can be matched without keeping the id.
CREATE TABLE flywheel.deletion_audit (
    id           bigserial PRIMARY KEY,
    reason       text NOT NULL CHECK (reason IN ('forget_user', 'retention')),
    subject_hash text,
    cutoff       timestamptz,
    counts       jsonb NOT NULL,
    requested_by name NOT NULL DEFAULT session_user,
    created_at   timestamptz NOT NULL DEFAULT now()
);
