-- The review web app's records: reviewer accounts, their server-side sessions, and the leases
-- that keep two reviewers off the same queue item.

-- One row per reviewer. role_name is the NOLOGIN role a request runs as (SET LOCAL ROLE), so
-- row-level security gives the reviewer exactly the rows of `apps`.
CREATE TABLE flywheel.reviewers (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    role_name       name NOT NULL UNIQUE,
    apps            text[] NOT NULL,
    password_hash   text NOT NULL,  -- argon2id (argon2-cffi), never the password
    failed_attempts integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- A signed-in browser. Only the SHA-256 of the cookie's value is kept: a reader of this table
-- cannot sign in as anyone.
CREATE TABLE flywheel.web_sessions (
    token_sha256 bytea PRIMARY KEY,
    reviewer     text NOT NULL REFERENCES flywheel.reviewers (name) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX web_sessions_expires_at ON flywheel.web_sessions (expires_at);

-- The queue item a reviewer has open: nobody else is given it until the lease expires.
CREATE TABLE flywheel.review_leases (
    trace_id   bigint PRIMARY KEY,
    app        text NOT NULL,  -- copied from the trace, for row-level security
    reviewer   text NOT NULL,
    skipped    boolean NOT NULL DEFAULT false,  -- skipped: held (not shown again) until it expires
    expires_at timestamptz NOT NULL
);

-- Where alerts are posted (Slack-compatible JSON), and what was sent.
CREATE TABLE flywheel.alert_webhooks (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    url        text NOT NULL CHECK (url ~ '^https?://'),
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE flywheel.alert_deliveries (
    alert_id   bigint NOT NULL,
    webhook    text NOT NULL REFERENCES flywheel.alert_webhooks (name) ON DELETE CASCADE,
    attempts   integer NOT NULL DEFAULT 0,
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    last_error text,
    next_try   timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    PRIMARY KEY (alert_id, webhook)
);
CREATE INDEX alert_deliveries_pending ON flywheel.alert_deliveries (next_try) WHERE status = 'pending';

-- Reviewers' labels of today and the explorer's text search.
CREATE INDEX labels_annotator_created_at ON flywheel.labels (annotator, created_at);
