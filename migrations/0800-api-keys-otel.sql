-- dbflywheel serve (issue 14): API keys with their rate-limit buckets, and the OTel spans already ingested.

-- One row per API key: only the sha256 of the token is kept. A key acts as `role_name` (a NOLOGIN
-- role mapped to `app` in app_roles); its token buckets are shared by every server process.
CREATE TABLE flywheel._api_keys (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name <> ''),
    app             text NOT NULL CHECK (app <> ''),
    role_name       name NOT NULL,
    token_sha256    bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    requests_per_s  double precision NOT NULL DEFAULT 50 CHECK (requests_per_s > 0),
    rows_per_s      double precision NOT NULL DEFAULT 5000 CHECK (rows_per_s > 0),
    request_tokens  double precision NOT NULL DEFAULT 50,
    row_tokens      double precision NOT NULL DEFAULT 5000,
    refilled_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at    timestamptz
);

-- Each OTel span ingested once per app: a re-sent span is recognised here and not doubled.
CREATE TABLE flywheel.otel_spans (
    app           text NOT NULL DEFAULT flywheel._app_of(current_user),
    otel_trace_id text NOT NULL CHECK (otel_trace_id ~ '^[0-9a-f]{32}$'),
    span_id       text NOT NULL CHECK (span_id ~ '^[0-9a-f]{16}$'),
    trace_row     bigint NOT NULL,
    parent_span_id text CHECK (parent_span_id ~ '^[0-9a-f]{16}$'),
    PRIMARY KEY (app, otel_trace_id, span_id)
);
-- Re-sends are looked up by (trace id, span id) under row-level security (app is its filter, not a key).
CREATE INDEX otel_spans_ids ON flywheel.otel_spans (otel_trace_id, span_id);
-- A parent that arrives after its children (exporters send a span when it ends) finds them here.
CREATE INDEX otel_spans_parent ON flywheel.otel_spans (app, otel_trace_id, parent_span_id) WHERE parent_span_id IS NOT NULL;
COMMENT ON TABLE flywheel._api_keys IS 'API keys of dbflywheel serve: the sha256 of each token, its app role and its rate-limit buckets';
COMMENT ON TABLE flywheel.otel_spans IS 'The OTel spans each app ingested over OTLP, with the trace row each became (re-sent spans are not doubled)';
