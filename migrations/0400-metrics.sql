-- Metrics: the registry, the refresh log, schedules, incremental daily rollups, prompt versions.

-- One row per metric; flywheel.metric_<name> is a view, a materialized view, or (rollup) a
-- view over a table whose changed days are recomputed incrementally.
CREATE TABLE flywheel.metrics (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,48}$'),
    query      text NOT NULL,
    kind       text NOT NULL DEFAULT 'view' CHECK (kind IN ('view', 'materialized', 'rollup')),
    schedule   text,
    builtin    boolean NOT NULL DEFAULT false,
    -- built-in metrics that can be kept incrementally: the table that holds their rows, whose
    -- changed days flywheel._builtin_metric_sql(name, from, to) recomputes
    rollup_table text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT metrics_rollup_has_a_function CHECK (kind <> 'rollup' OR rollup_table IS NOT NULL)
);

-- Every refresh, successful or not.
CREATE TABLE flywheel.refresh_log (
    id          bigserial PRIMARY KEY,
    metric      text NOT NULL,
    mode        text NOT NULL CHECK (mode IN ('full', 'concurrent', 'incremental')),
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    duration    interval GENERATED ALWAYS AS (finished_at - started_at) STORED,
    rows        bigint,
    days        integer,  -- incremental: how many days were recomputed
    error       text
);
CREATE INDEX refresh_log_metric_started_at ON flywheel.refresh_log (metric, started_at DESC);

-- Everything that runs on a schedule: metric refreshes and checks. pg_cron runs them where it
-- is installed (a job of the same name); elsewhere `dbflywheel refresh --loop` does.
CREATE TABLE flywheel.schedules (
    name        text PRIMARY KEY,
    schedule    text NOT NULL,
    command     text NOT NULL,
    last_run_at timestamptz,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Days whose rollup rows must be recomputed; append-only so concurrent writers never wait on
-- each other: a refresh deletes (and so consumes) only the committed rows it sees. Inserted
-- results leave the ids of their traces (one row per statement, no lookup in the write
-- path); the refresh turns them into days.
CREATE TABLE flywheel._rollup_dirty_days (
    metric    text NOT NULL,
    day       date,
    trace_ids bigint[],
    CONSTRAINT _rollup_dirty_days_day_or_traces CHECK (num_nonnulls(day, trace_ids) = 1)
);
CREATE INDEX _rollup_dirty_days_metric ON flywheel._rollup_dirty_days (metric);

-- Rollup tables have exactly the columns of their metric's query.
CREATE TABLE flywheel._rollup_pass_rate (
    day               date NOT NULL,
    app               text NOT NULL,
    validator         text NOT NULL,
    validator_version integer NOT NULL,
    prompt_version    text,
    model             text,
    results           bigint NOT NULL,
    passed            bigint NOT NULL,
    failed            bigint NOT NULL,
    errors            bigint NOT NULL,
    pass_rate         double precision  -- passed / (passed + failed); errors are not verdicts
);
CREATE INDEX _rollup_pass_rate_day ON flywheel._rollup_pass_rate (day);

CREATE TABLE flywheel._rollup_satisfaction (
    day          date NOT NULL,
    app          text NOT NULL,
    thumbs         bigint NOT NULL,
    thumbs_up      bigint NOT NULL,
    positive_share double precision,
    ratings        bigint NOT NULL,
    mean_rating    double precision
);
CREATE INDEX _rollup_satisfaction_day ON flywheel._rollup_satisfaction (day);

-- The prompt (model registry) history: what each prompt_version on traces was.
CREATE TABLE flywheel.prompt_versions (
    name       text NOT NULL,
    version    text NOT NULL,
    template   text,
    notes      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- Shadow traces answer the same request as a live one (metadata->>'shadow_of' names it) and
-- never reach the user: they are compared with the live traces and kept out of every metric.
ALTER TABLE flywheel.traces ADD COLUMN shadow boolean NOT NULL DEFAULT false;
