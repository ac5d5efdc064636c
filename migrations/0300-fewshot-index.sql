-- The semantic index: embedders, embeddings of every trace, the few-shot examples (the only
-- rows under HNSW), the re-embed backlog, and golden sets.

-- Who makes embeddings. Exactly one is 'active' (few_shot uses it); one may be 'building'
-- (being back-filled; the active one stays in use until it is complete).
CREATE TABLE flywheel.embedders (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    dims         integer NOT NULL DEFAULT 384 CHECK (dims = 384),
    runs_in      text NOT NULL DEFAULT 'database' CHECK (runs_in IN ('database', 'worker', 'application')),
    state        text NOT NULL DEFAULT 'building' CHECK (state IN ('active', 'building', 'retired')),
    backfill_after_id bigint NOT NULL DEFAULT 0,  -- the back-fill has embedded every trace up to this id
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz
);
CREATE UNIQUE INDEX embedders_one_active ON flywheel.embedders ((true)) WHERE state = 'active';
CREATE UNIQUE INDEX embedders_one_building ON flywheel.embedders ((true)) WHERE state = 'building';
INSERT INTO flywheel.embedders (name, runs_in, state, activated_at)
VALUES ('fewshot-hash-384-v1', 'database', 'active', now());

-- One embedding of a trace's input per embedder. No vector index here: ordinary traces are
-- never searched by similarity, so inserts pay only for this heap row and its primary key.
CREATE TABLE flywheel.embeddings (
    trace_id   bigint NOT NULL,
    embedder   text NOT NULL REFERENCES flywheel.embedders (name) ON DELETE CASCADE,
    app        text NOT NULL,
    embedding  vector(384) NOT NULL,
    input_key  uuid,  -- md5 of the normalised input: the exact-match key of cache_lookup
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, embedder)
);
CREATE INDEX embeddings_input_key ON flywheel.embeddings (input_key) WHERE input_key IS NOT NULL;

-- Traces still to embed: a failed insert-time embedding, or an embedder that runs in a worker.
-- flywheel.embed_backlog() (pg_cron or `dbflywheel embed`) drains it.
CREATE TABLE flywheel.embedding_backlog (
    trace_id   bigint NOT NULL,
    embedder   text NOT NULL REFERENCES flywheel.embedders (name) ON DELETE CASCADE,
    reason     text NOT NULL CHECK (reason IN ('failed', 'worker')),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, embedder)
);

-- The few-shot examples: traces with a human label, a correction or a golden-set place, one
-- row per embedder, with what few_shot returns copied in (so the application role needs no
-- access to labels). Only these rows are in the HNSW index.
CREATE TABLE flywheel.examples (
    trace_id      bigint NOT NULL,
    embedder      text NOT NULL REFERENCES flywheel.embedders (name) ON DELETE CASCADE,
    app           text NOT NULL,
    embedding     vector(384) NOT NULL,
    input         text,
    output        text,              -- the corrected output where there is one
    labels        jsonb NOT NULL DEFAULT '{}',  -- validator -> the latest human label or verdict
    label         text,              -- the latest human label of any validator
    corrected     boolean NOT NULL DEFAULT false,
    disagreement  boolean NOT NULL DEFAULT false,  -- a human and a validator disagreed
    golden        boolean NOT NULL DEFAULT false,
    labelled_at   timestamptz NOT NULL,  -- when it last became more useful: label, correction, golden
    PRIMARY KEY (trace_id, embedder)
);
-- ef_construction 128 (default 64): recall@10 0.97 -> 0.98 at 100,000 hashed n-gram vectors (BENCHMARKS.md).
CREATE INDEX examples_embedding ON flywheel.examples USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 128);
CREATE INDEX examples_embedder_app ON flywheel.examples (embedder, app);
CREATE INDEX examples_labels ON flywheel.examples USING gin (labels);

-- Golden sets: named sets of traces with expected verdicts or outputs. Every change bumps the
-- set's version; items keep the version they were added (and removed) in, so an old version
-- can be re-run.
CREATE TABLE flywheel.golden_sets (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    version     integer NOT NULL DEFAULT 1,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE flywheel.golden_set_items (
    set_name          text NOT NULL REFERENCES flywheel.golden_sets (name) ON DELETE CASCADE,
    trace_id          bigint NOT NULL,
    expected_verdicts jsonb NOT NULL DEFAULT '{}',  -- validator -> 'pass' | 'fail'
    expected_output   text,
    added_in_version  integer NOT NULL,
    removed_in_version integer,
    added_by          text NOT NULL DEFAULT current_user,
    added_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT golden_set_items_expect_something
        CHECK (expected_verdicts <> '{}' OR expected_output IS NOT NULL),
    CONSTRAINT golden_set_items_verdicts_are_an_object CHECK (jsonb_typeof(expected_verdicts) = 'object')
);
CREATE UNIQUE INDEX golden_set_items_current ON flywheel.golden_set_items (set_name, trace_id)
    WHERE removed_in_version IS NULL;
CREATE INDEX golden_set_items_trace_id ON flywheel.golden_set_items (trace_id);
