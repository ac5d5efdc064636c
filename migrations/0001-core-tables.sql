-- Traces, feedback, labels, the validator registry and its results: the tables everything else reads.

-- The login roles of each application and the app name their traces carry (row-level security).
CREATE TABLE flywheel.app_roles (
    role_name name PRIMARY KEY,
    app       text NOT NULL CHECK (app <> '')
);

-- The app of a login role: the default for traces.app (one indexed lookup). The caller passes
-- current_user, because inside a SECURITY DEFINER function current_user is the definer.
CREATE FUNCTION flywheel._app_of(role_name name) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT a.app FROM flywheel.app_roles a WHERE a.role_name = _app_of.role_name), 'default')
$$;

CREATE SEQUENCE flywheel.traces_id_seq AS bigint;

-- Partitioned by time so that retention drops whole partitions; a primary key on a
-- partitioned table must include the partition key, hence (id, created_at).
CREATE TABLE flywheel.traces (
    id             bigint NOT NULL DEFAULT nextval('flywheel.traces_id_seq'),
    uid            uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at     timestamptz NOT NULL DEFAULT now(),
    app            text NOT NULL DEFAULT flywheel._app_of(current_user),
    run_id         text,
    parent_id      bigint,
    node           text,
    node_type      text NOT NULL DEFAULT 'other',
    user_id        text,
    session_id     text,
    input          text,
    output         text,
    expected       text,
    model          text,
    prompt_version text,
    variant        text,
    latency_ms     double precision,
    tokens_in      integer,
    tokens_out     integer,
    cost_usd       double precision,
    metadata       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, created_at),
    CONSTRAINT traces_node_type_is_known CHECK (node_type IN
        ('classifier', 'writer', 'codegen', 'retriever', 'tool', 'guard', 'other')),
    CONSTRAINT traces_app_is_not_empty CHECK (app <> ''),
    CONSTRAINT traces_latency_ms_is_not_negative CHECK (latency_ms >= 0 AND latency_ms <> 'NaN'),
    CONSTRAINT traces_tokens_in_is_not_negative CHECK (tokens_in >= 0),
    CONSTRAINT traces_tokens_out_is_not_negative CHECK (tokens_out >= 0),
    CONSTRAINT traces_cost_usd_is_not_negative CHECK (cost_usd >= 0 AND cost_usd <> 'NaN'),
    CONSTRAINT traces_metadata_is_an_object CHECK (jsonb_typeof(metadata) = 'object')
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE flywheel.traces_id_seq OWNED BY flywheel.traces.id;

-- Rows outside every monthly partition land here; flywheel.ensure_trace_partitions() adds months.
CREATE TABLE flywheel._traces_default PARTITION OF flywheel.traces DEFAULT;

CREATE INDEX traces_created_at ON flywheel.traces USING brin (created_at);
CREATE INDEX traces_app_created_at ON flywheel.traces (app, created_at);
CREATE INDEX traces_prompt_version_created_at ON flywheel.traces (prompt_version, created_at);
CREATE INDEX traces_uid ON flywheel.traces (uid);
CREATE INDEX traces_run_id ON flywheel.traces (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX traces_user_id ON flywheel.traces (user_id) WHERE user_id IS NOT NULL;

CREATE TABLE flywheel.feedback (
    id               bigserial PRIMARY KEY,
    trace_id         bigint NOT NULL,
    app              text NOT NULL,  -- copied from the trace, for row-level security
    kind             text NOT NULL,
    value            double precision,
    corrected_output text,
    comment          text,
    source           text NOT NULL DEFAULT 'user',
    user_id          text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feedback_kind_is_known CHECK (kind IN
        ('thumbs', 'rating', 'correction', 'click', 'dwell', 'requery', 'continuation', 'comment')),
    CONSTRAINT feedback_thumbs_is_1_up_or_minus_1_down CHECK (kind <> 'thumbs' OR value IN (1, -1)),
    CONSTRAINT feedback_rating_is_1_to_5 CHECK (kind <> 'rating' OR value BETWEEN 1 AND 5),
    CONSTRAINT feedback_dwell_is_not_negative CHECK (kind <> 'dwell' OR (value >= 0 AND value <> 'NaN')),
    CONSTRAINT feedback_correction_needs_corrected_output
        CHECK (kind <> 'correction' OR corrected_output IS NOT NULL),
    CONSTRAINT feedback_comment_needs_comment CHECK (kind <> 'comment' OR comment IS NOT NULL)
);
CREATE INDEX feedback_trace_id ON flywheel.feedback (trace_id);
CREATE INDEX feedback_created_at ON flywheel.feedback (created_at);

-- A human verdict on one trace for one validator (or metric), by name.
CREATE TABLE flywheel.labels (
    id         bigserial PRIMARY KEY,
    trace_id   bigint NOT NULL,
    app        text NOT NULL,
    validator  text NOT NULL,
    verdict    text,
    score      double precision,
    label      text,
    annotator  text NOT NULL DEFAULT current_user,
    comment    text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT labels_verdict_is_pass_or_fail CHECK (verdict IN ('pass', 'fail')),
    CONSTRAINT labels_say_something CHECK (num_nonnulls(verdict, score, label) > 0)
);
CREATE INDEX labels_trace_id ON flywheel.labels (trace_id);
CREATE INDEX labels_validator_created_at ON flywheel.labels (validator, created_at);

-- The validator registry: one row per name with its current version; every version's
-- definition stays in validator_versions so that old results can be explained.
CREATE TABLE flywheel.validators (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    version     integer NOT NULL DEFAULT 1,
    kind        text NOT NULL,
    config      jsonb NOT NULL DEFAULT '{}',
    mode        text NOT NULL DEFAULT 'sync' CHECK (mode IN ('sync', 'async')),
    applies_to  jsonb NOT NULL DEFAULT '{}',
    sample_rate real NOT NULL DEFAULT 1.0 CHECK (sample_rate BETWEEN 0 AND 1),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE flywheel.validator_versions (
    validator_id bigint NOT NULL REFERENCES flywheel.validators (id) ON DELETE CASCADE,
    version      integer NOT NULL,
    kind         text NOT NULL,
    config       jsonb NOT NULL,
    mode         text NOT NULL,
    applies_to   jsonb NOT NULL,
    sample_rate  real NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (validator_id, version)
);

CREATE TABLE flywheel.validation_results (
    id                bigserial PRIMARY KEY,
    trace_id          bigint NOT NULL,
    validator_id      bigint NOT NULL REFERENCES flywheel.validators (id) ON DELETE CASCADE,
    validator_version integer NOT NULL,
    status            text NOT NULL CHECK (status IN ('pass', 'fail', 'error', 'skipped')),
    score             double precision,
    label             text,
    details           jsonb NOT NULL DEFAULT '{}',
    judged_by         text NOT NULL DEFAULT 'code' CHECK (judged_by IN ('code', 'llm', 'human')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (trace_id, validator_id, validator_version)
);
CREATE INDEX validation_results_validator_created_at
    ON flywheel.validation_results (validator_id, created_at);

-- PL/Python module sources, served to `import` by flywheel._python_boot().
CREATE TABLE flywheel._python_modules (
    name   text PRIMARY KEY,
    source text NOT NULL
);

-- What is installed: the version and a checksum of the install script.
CREATE TABLE flywheel._install (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version        text NOT NULL,
    script_sha256  text NOT NULL,
    installed_at   timestamptz NOT NULL DEFAULT now()
);
