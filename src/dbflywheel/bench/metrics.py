"""Metrics: the daily pass-rate rollup kept incrementally against full refreshes, and reading the
pass rate on demand against reading it materialized, over 1,000,000 traces."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import psycopg

from dbflywheel.bench import Context

NAME = "metrics"
TITLE = "Metrics: incremental rollups and materialized reads"

DAYS = 100


def _seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _median(fn: Callable[[], object], times: int) -> float:
    return statistics.median(_seconds(fn) for _ in range(times))


def _load(conn: psycopg.Connection, traces: int, validator_id: int) -> None:
    """`traces` traces over the last DAYS days, with one validation result each, in batches."""
    conn.execute("SELECT flywheel.ensure_trace_partitions(now() - make_interval(days => %s), now())", (DAYS + 1,))
    # The load writes its own results: the insert-path triggers (validators, embedder) stay out
    # of it; the first full refresh then computes what their marks would have.
    conn.execute("SET session_replication_role = replica")
    batch = 100_000
    for start in range(0, traces, batch):
        n = min(batch, traces - start)
        conn.execute(
            """INSERT INTO flywheel.traces (created_at, app, model, prompt_version, node, input, output,
                                            latency_ms, tokens_in, tokens_out, cost_usd)
               SELECT now() - make_interval(days => %(days)s)
                          + ((i::double precision / %(total)s) * %(days)s) * interval '1 day',
                      'app' || (i %% 4), 'model-' || (i %% 3), 'v1.' || (i %% 5), 'answer',
                      'question ' || i, 'answer ' || i,
                      50 + (i %% 997), 20 + i %% 300, 10 + i %% 500, (i %% 100) / 10000.0
               FROM generate_series(%(start)s, %(end)s) i""",
            {"days": DAYS, "total": traces, "start": start, "end": start + n - 1},
        )
    # Stored as the insert trigger stores a code validator's results: one packed row per trace.
    conn.execute(
        """INSERT INTO flywheel._insert_results (trace_id, created_at, validator_ids, validator_versions, statuses,
                                                 scores, labels, details)
           SELECT t.id, t.created_at, ARRAY[%s::bigint], '{1}',
                  ARRAY[CASE WHEN t.id %% 10 < 8 THEN 'pass' WHEN t.id %% 50 = 0 THEN 'error' ELSE 'fail' END],
                  ARRAY[(t.id %% 100) / 100.0], '{NULL}', '{NULL}'
           FROM flywheel.traces t WHERE t.node = 'answer' AND t.app ~ '^app[0-3]$'""",
        (validator_id,),
    )
    conn.execute("SET session_replication_role = origin")
    conn.execute("VACUUM ANALYZE flywheel.traces")
    conn.execute("VACUUM ANALYZE flywheel._insert_results")


def _add_new_rows(conn: psycopg.Connection, count: int, validator_id: int) -> None:
    """1% more traces, arriving now (the latest day), with their results and the rollup's mark
    written as the insert trigger writes them."""
    conn.execute(
        """WITH t AS (
               INSERT INTO flywheel.traces (app, model, prompt_version, node, input, output, latency_ms)
               SELECT 'app' || (i %% 4), 'model-' || (i %% 3), 'v1.' || (i %% 5), 'answer', 'q', 'a', 50 + i %% 997
               FROM generate_series(1, %s) i RETURNING id),
           p AS (
               INSERT INTO flywheel._insert_results (trace_id, validator_ids, validator_versions, statuses, scores,
                                                     labels, details)
               SELECT id, ARRAY[%s::bigint], '{1}', ARRAY[CASE WHEN id %% 10 < 7 THEN 'pass' ELSE 'fail' END],
                      '{NULL}', '{NULL}', '{NULL}'
               FROM t RETURNING trace_id)
           INSERT INTO flywheel._rollup_dirty_days (metric, trace_ids)
           SELECT 'pass_rate', array_agg(trace_id) FROM p""",
        (count, validator_id),
    )


def run(ctx: Context) -> str:
    traces = 50_000 if ctx.quick else 1_000_000
    new_rows = traces // 100
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        # Disabled: the benchmark writes this validator's results itself.
        vid = conn.execute("INSERT INTO flywheel.validators (name, kind, enabled)"
                           " VALUES ('bench_metrics', 'sql', false) RETURNING id").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO flywheel.validator_versions (validator_id, version, kind, config, mode, applies_to,"
                     " sample_rate) SELECT id, 1, kind, config, mode, applies_to, sample_rate FROM flywheel.validators"
                     " WHERE id = %s", (vid,))
        load_seconds = _seconds(lambda: _load(conn, traces, vid))
        results = conn.execute("SELECT count(*) FROM flywheel.validation_results").fetchone()[0]  # type: ignore[index]

        def refresh(full: bool) -> None:
            conn.execute("CALL flywheel.refresh('pass_rate', %s)", (full,))

        # Full recomputation three ways: the rollup from scratch, a materialized view, and the
        # same materialized view CONCURRENTLY (readers never wait).
        rollup_full = _median(lambda: refresh(True), 3)
        rows = conn.execute("SELECT count(*) FROM flywheel.metric_pass_rate").fetchone()[0]  # type: ignore[index]
        conn.execute("SELECT flywheel.set_metric_mode('pass_rate', 'materialized')")
        matview_full = _median(lambda: refresh(True), 3)
        matview_concurrent = _median(lambda: refresh(False), 3)

        # Incremental: 1% new rows (today), then refresh only the days they touched.
        conn.execute("SELECT flywheel.set_metric_mode('pass_rate', 'rollup')")
        incremental = []
        for _ in range(3):
            _add_new_rows(conn, new_rows, vid)
            incremental.append(_seconds(lambda: refresh(False)))
        rollup_incremental = statistics.median(incremental)
        days = conn.execute("SELECT days FROM flywheel.refresh_log WHERE metric = 'pass_rate'"
                            " ORDER BY id DESC LIMIT 1").fetchone()[0]  # type: ignore[index]

        # Reads: the whole metric, and a dashboard's last 7 days of one app.
        whole = "SELECT * FROM flywheel.metric_pass_rate"
        dashboard = ("SELECT day, prompt_version, sum(passed)::float8 / nullif(sum(passed + failed), 0) FROM"
                     " flywheel.metric_pass_rate WHERE app = 'app1' AND day > current_date - 7 GROUP BY 1, 2")
        reads = {}
        for mode in ("rollup", "view"):
            conn.execute("SELECT flywheel.set_metric_mode('pass_rate', %s)", (mode,))
            for label, query in (("whole", whole), ("dashboard", dashboard)):
                conn.execute(query).fetchall()  # warm the cache

                def read(q: str = query) -> None:
                    conn.execute(q).fetchall()

                reads[(mode, label)] = _median(read, 1 if mode == "view" else 20)
        conn.execute("SELECT flywheel.set_metric_mode('pass_rate', 'rollup', '*/5 * * * *')")

        # What the rollup's mark adds to writing results.
        trigger = "_results_mark_rollup_insert"

        def write_results(validator: int, triggers: bool) -> float:
            if not triggers:
                conn.execute(f"ALTER TABLE flywheel._results DISABLE TRIGGER {trigger}")
            try:
                return _seconds(lambda: conn.execute(
                    "INSERT INTO flywheel._results (trace_id, validator_id, validator_version, status)"
                    " SELECT id, %s, 1, 'pass' FROM flywheel.traces ORDER BY id DESC LIMIT 100000", (validator,)))
            finally:
                conn.execute(f"ALTER TABLE flywheel._results ENABLE TRIGGER {trigger}")

        extra = []
        for i in range(2):
            vids = [conn.execute("INSERT INTO flywheel.validators (name, kind) VALUES (%s, 'sql') RETURNING id",
                                 (f"bench_write_{i}_{k}",)).fetchone()[0] for k in range(2)]  # type: ignore[index]
            extra.append(write_results(vids[0], True) / write_results(vids[1], False))
        mark_overhead = statistics.median(extra)

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:,.1f} ms"

    full, incr = matview_full, rollup_incremental
    whole_view, whole_rollup = reads[("view", "whole")], reads[("rollup", "whole")]
    dash_view, dash_rollup = reads[("view", "dashboard")], reads[("rollup", "dashboard")]
    return f"""
{traces:,} traces over {DAYS} days ({results:,} validation results, stored as the insert trigger stores
them, one packed row per trace; loaded in {load_seconds:.0f} s with `generate_series` batches); the
pass-rate metric has {rows:,} rows (day x app x validator x prompt version x model).
Each refresh is `CALL flywheel.refresh('pass_rate', ...)`; medians of 3 runs (reads: of 20, on demand: 1).

| refresh of the daily pass rate | time | ratio |
|---|---|---|
| full: REFRESH MATERIALIZED VIEW (baseline) | {ms(full)} | 1.00x |
| full: REFRESH MATERIALIZED VIEW CONCURRENTLY | {ms(matview_concurrent)} | {matview_concurrent / full:.2f}x |
| full: rollup table recomputed from scratch | {ms(rollup_full)} | {rollup_full / full:.2f}x |
| incremental: rollup after 1% new rows ({new_rows:,} traces + results, {days} day recomputed) \
| {ms(incr)} | **{incr / full:.3f}x** ({full / incr:.0f}x faster) |

| read of the pass rate | on demand (view) | materialized (rollup) | on demand / materialized |
|---|---|---|---|
| the whole metric | {ms(whole_view)} | {ms(whole_rollup)} | {whole_view / whole_rollup:,.0f}x |
| a dashboard: one app, last 7 days | {ms(dash_view)} | {ms(dash_rollup)} | {dash_view / dash_rollup:,.0f}x |

Writing 100,000 validation results with the rollup's mark (a statement-level trigger that
stores the statement's trace ids in one row, no lookup) takes {mark_overhead:.2f}x the time of
the same insert without it. The incremental refresh costs what the changed day holds (here the
latest day, ~{traces // DAYS + 3 * new_rows:,} traces by the third round), not what the table holds.
"""
