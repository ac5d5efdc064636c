-- Training sets: what flows back into the model. A set is a named selection (kind + filter); every
-- build of it is a numbered snapshot whose rows (texts as exported, already redacted) never change,
-- so a fine-tuned model can name exactly what it learned from.
CREATE TABLE flywheel.training_sets (
    name       text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    kind       text NOT NULL CHECK (kind IN ('sft', 'preference')),
    filter     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(filter) = 'object'),
    created_by text NOT NULL DEFAULT current_user,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE flywheel.training_set_versions (
    set_name       text NOT NULL REFERENCES flywheel.training_sets (name) ON DELETE CASCADE,
    version        integer NOT NULL CHECK (version >= 1),
    filter         jsonb NOT NULL,            -- the filter this build used
    row_count      integer NOT NULL,
    sources        jsonb NOT NULL DEFAULT '{}',  -- rows per source: correction, approved, validators, human, llm
    held_back      jsonb NOT NULL DEFAULT '{}',  -- reason -> candidates the leak guard kept out
    forgotten_rows integer NOT NULL DEFAULT 0,   -- rows deleted since (forget_user, retention)
    forgotten_at   timestamptz,
    built_by       text NOT NULL DEFAULT current_user,
    built_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_name, version)
);

-- trace_id / trace_b name the traces, so forget_user and retention delete a forgotten user's rows
-- here too (flywheel._trace_key_columns finds them), and the version is marked.
CREATE TABLE flywheel.training_set_rows (
    set_name text NOT NULL,
    version  integer NOT NULL,
    position integer NOT NULL,
    trace_id bigint NOT NULL,  -- sft: the trace learned from; preference: the chosen answer
    trace_b  bigint,           -- preference: the rejected answer
    app      text NOT NULL,
    input    text NOT NULL,
    output   text NOT NULL,    -- sft: the output to learn; preference: the chosen answer
    rejected text,             -- preference: the rejected answer
    source   text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (set_name, version, position),
    FOREIGN KEY (set_name, version) REFERENCES flywheel.training_set_versions ON DELETE CASCADE
);
CREATE INDEX training_set_rows_trace_id ON flywheel.training_set_rows (trace_id);
CREATE INDEX training_set_rows_trace_b ON flywheel.training_set_rows (trace_b) WHERE trace_b IS NOT NULL;
