"""Judge queue: drain rate of real `dbflywheel worker` processes, and what judges cost the insert path."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dbflywheel.bench import Context
from dbflywheel.build import REPO_ROOT

NAME = "judges"
TITLE = "LLM judges: queue drain rate and enqueue cost"

DBFLYWHEEL = str(Path(sys.executable).with_name("dbflywheel"))
INSERT_ONE = "INSERT INTO flywheel.traces (app, input, output, model) VALUES ('bench', 'What is 2+2?', '4', 'm1');\n"


def _judge(conn: psycopg.Connection, config: dict[str, Any], applies_to: dict[str, Any] | None = None) -> int:
    """An enabled async judge validator; the insert trigger enqueues its jobs."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    kind = "llm_judge"
    config = {"criterion": "The answer is correct.", "redact_pii": False, **config}
    row = conn.execute("SELECT flywheel.create_validator(%s, %s, %s, 'async', %s)",
                       (name, kind, Jsonb(config), Jsonb(applies_to or {"app": "bench-drain"}))).fetchone()
    assert row is not None
    return int(row[0])


def _drain(ctx: Context, jobs: int, workers: int, concurrency: int, config: dict[str, Any]) -> float:
    """Jobs per second from the first verdict to the last, with `workers` worker processes
    (allowed to call the config's base_url, the bench's local fake provider)."""
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        vid = _judge(conn, config)
        conn.execute("DELETE FROM flywheel.judge_jobs")
        ids = [r[0] for r in conn.execute(
            "INSERT INTO flywheel.traces (app, input, output, model)"
            " SELECT 'bench-drain', 'Question ' || g, 'Answer ' || g, 'm1' FROM generate_series(1, %s) g RETURNING id",
            (jobs,))]
        conn.execute("INSERT INTO flywheel.judge_jobs (trace_id, validator_id, validator_version)"
                      " SELECT unnest(%s::bigint[]), %s, 1 ON CONFLICT DO NOTHING", (ids, vid))
        procs = [
            subprocess.Popen([DBFLYWHEEL, "worker", "--dsn", ctx.dsn, "--once", "--concurrency", str(concurrency),
                              "--poll-seconds", "0.2",
                              *(["--allow-base-url", config["base_url"]] if config.get("base_url") else [])],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(workers)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"worker failed: {err[-500:]}")
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(created_at) - min(created_at))"
            " FROM flywheel.validation_results WHERE validator_id = %s", (vid,),
        ).fetchone()
        assert row is not None
        if row[0] != jobs:
            raise RuntimeError(f"{row[0]} verdicts for {jobs} jobs")
        conn.execute("UPDATE flywheel.validators SET enabled = false WHERE id = %s", (vid,))
        return jobs / max(float(row[1]), 1e-3)


def _baseline_writes(ctx: Context, clients: int, seconds: int) -> float:
    """One autocommit INSERT per transaction into a plain table: the floor of any design that
    writes one verdict per statement."""
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.bench_verdicts"
                     " (trace_id bigint, status text, at timestamptz DEFAULT now())")
    return ctx.pgbench("INSERT INTO public.bench_verdicts (trace_id, status) VALUES (1, 'pass');\n",
                       clients=clients, seconds=seconds)


def run(ctx: Context) -> str:
    seconds = 3 if ctx.quick else 10
    jobs = 500 if ctx.quick else 4000
    slow_jobs = 200 if ctx.quick else 960
    base_1 = _baseline_writes(ctx, 1, seconds)
    base_4 = _baseline_writes(ctx, 4, seconds)
    one = _drain(ctx, jobs, 1, 32, {})
    four = _drain(ctx, jobs, 4, 32, {})

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from fake_openai import FakeOpenAI  # the tests' OpenAI-protocol server: real HTTP, 200 ms per answer

    with FakeOpenAI(delay=0.2) as server:
        slow = _drain(ctx, slow_jobs, 1, 32, {"provider": "openai", "model": "fake", "base_url": server.url})
    ideal = 32 / 0.2

    # The insert path: what an async judge adds to one INSERT (the validators' trigger enqueues).
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        conn.execute("UPDATE flywheel.validators SET enabled = false")
        has_trigger = conn.execute(
            "SELECT count(*) > 0 FROM pg_trigger WHERE tgrelid = 'flywheel.traces'::regclass AND NOT tgisinternal"
        ).fetchone() == (True,)
    no_judge = ctx.pgbench(INSERT_ONE, clients=4, seconds=seconds)
    lines = [
        "| measurement | rate | ratio to its baseline |",
        "|---|---|---|",
        f"| baseline: one INSERT per transaction into a plain table, 1 client | {base_1:,.0f} rows/s | 1.00 |",
        f"| baseline: the same, 4 clients | {base_4:,.0f} rows/s | 1.00 |",
        f"| drain, instant offline judge, 1 worker (concurrency 32), {jobs} jobs | {one:,.0f} jobs/s | "
        f"{one / base_1:.2f} of 1-client writes |",
        f"| drain, instant offline judge, 4 workers, {jobs} jobs | {four:,.0f} jobs/s | "
        f"{four / base_4:.2f} of 4-client writes; {four / one:.2f}x one worker |",
        f"| drain, OpenAI-protocol HTTP judge answering in 200 ms, 1 worker, concurrency 32, {slow_jobs} jobs | "
        f"{slow:,.0f} jobs/s | {slow / ideal:.2f} of the ideal 32 / 0.2 s = {ideal:.0f} jobs/s |",
        f"| insert path: INSERT one trace per transaction, 4 clients, no judge | {no_judge:,.0f} rows/s | 1.00 |",
    ]
    if has_trigger:
        with psycopg.connect(ctx.dsn, autocommit=True) as conn:
            vid = _judge(conn, {}, {"app": "bench"})
        enqueue = ctx.pgbench(INSERT_ONE, clients=4, seconds=seconds)
        with psycopg.connect(ctx.dsn, autocommit=True) as conn:
            conn.execute("UPDATE flywheel.validators SET enabled = false WHERE id = %s", (vid,))
            queued = conn.execute("SELECT count(*) FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,)).fetchone()
        lines.append(f"| insert path: with one async judge enqueueing a job per trace ({queued[0] if queued else 0} "
                     f"jobs queued) | {enqueue:,.0f} rows/s | {enqueue / no_judge:.2f} of no judge |")
    else:
        lines.append("| insert path: enqueue cost of a judge | not measured | needs the validators branch's insert "
                     "trigger (it enqueues the jobs) |")
    notes = (
        "\n\nWorkers are real `dbflywheel worker --once` processes; a rate runs from the first verdict to the last "
        "(worker start-up excluded). A verdict costs one claim (batched, FOR UPDATE SKIP LOCKED) and one "
        "`_complete_judge_job` call (result, call log, job delete) per job. With a slow judge the worker keeps "
        "32 calls in flight on one connection; the fake judge is the tests' local HTTP server, in the benchmark's "
        "process, on the same 2 cores. The enqueue cost is that of the validators' insert trigger (job rows and a "
        "NOTIFY per INSERT statement); a NOTIFY makes committing transactions queue on one lock, which is likely most "
        "of it on single-row inserts."
    )
    return "\n".join(lines) + notes
