"""`make demo`: the whole flywheel on real data, in the database, in under two minutes.

Real: llmfao's 1,133 LLM responses with 8,931 crowd votes and GPT-4/GPT-3.5 verdicts, and
sql-eval's 190 gold queries on its seven databases. Simulated: the timeline (the responses
arrive as a stream over six weeks ending yesterday), a prompt release half-way (v1.0 -> v1.1),
and the broken queries (each derived from a gold one, as a faulty code generator would).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dbflywheel.datasets import llmfao, sqleval
from dbflywheel.install import connect

APP_ANSWERS = "demo-llmfao"
APP_SQL = "demo-sqleval"
GOLDEN_SET = "demo-llmfao-eval"
DEMO_USER = "flywheel-demo"  # every demo trace carries it, so forget_user() clears a previous run
JUDGE = "helpfulness"
JUDGE_PREFIX = "demo"  # imported verdicts: demo_gpt4, demo_gpt35
WEEKS = 6
BATCH = 25  # rows per INSERT: the application's stream
SAMPLE_QUERY = "Explain in a short paragraph what quantum entanglement is."
LABELLED_SHARE = 0.25  # of answers: the simulated labelling campaign


@dataclass
class Trace:
    created_at: datetime
    app: str
    node: str
    node_type: str
    input: str
    output: str
    model: str
    prompt_version: str
    latency_ms: float | None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    traces: int = 0
    feedback: int = 0
    labels: int = 0
    judged: int = 0
    seconds: float = 0.0
    pass_rates: list[tuple[Any, ...]] = field(default_factory=list)
    alignment: list[tuple[Any, ...]] = field(default_factory=list)
    failure_modes: list[tuple[Any, ...]] = field(default_factory=list)
    few_shot: list[tuple[Any, ...]] = field(default_factory=list)
    training: list[tuple[Any, ...]] = field(default_factory=list)
    report: Path | None = None


def _timeline(n: int, rng: random.Random, end: datetime) -> list[datetime]:
    """n arrival times over WEEKS weeks ending at `end`, in order."""
    span = timedelta(weeks=WEEKS).total_seconds()
    return sorted(end - timedelta(seconds=rng.random() * span) for _ in range(n))


def _version(at: datetime, end: datetime) -> str:
    return "v1.0" if at < end - timedelta(weeks=WEEKS / 2) else "v1.1"


def answer_traces(rng: random.Random, end: datetime) -> list[Trace]:
    prompts, responses = llmfao.responses()
    order = list(responses)
    rng.shuffle(order)
    return [
        Trace(
            at, APP_ANSWERS, "answer", "writer", prompts[int(r["prompt"])]["text"], r["result"], r["name"],
            _version(at, end), r["duration"],
            {"dataset": "llmfao", "prompt_id": int(r["prompt"]), "model_id": int(r["model"]),
             "prompt_type": prompts[int(r["prompt"])]["type"]},
        )
        for at, r in zip(_timeline(len(order), rng, end), order, strict=True)
    ]


def sql_traces(conn: psycopg.Connection, rng: random.Random, end: datetime) -> list[Trace]:
    """Every gold query, and one broken variant of each (the kinds taken in turn)."""
    rows: list[tuple[sqleval.GoldQuery, str, str]] = []
    catalogs = {db: sqleval.catalog(conn, sqleval.schema_name(db)) for db in sqleval.DATABASES}
    for n, gold in enumerate(sqleval.gold_queries()):
        rows.append((gold, "gold", gold.query))
        variants = sqleval.broken_variants(gold.query, catalogs[gold.db_name])
        kind = sorted(variants)[n % len(variants)]
        rows.append((gold, kind, variants[kind]))
    rng.shuffle(rows)
    return [
        Trace(at, APP_SQL, gold.db_name, "codegen", gold.question, query, f"codegen-{kind}", "sql-v1", None,
              {"dataset": "sql-eval", "variant": kind, "category": gold.category})
        for at, (gold, kind, query) in zip(_timeline(len(rows), rng, end), rows, strict=True)
    ]


def _reset(conn: psycopg.Connection) -> None:
    """A previous demo run is forgotten the way a user is: every row keyed by its traces goes."""
    conn.execute("SELECT flywheel.forget_user(%s)", (DEMO_USER,))
    conn.execute("DELETE FROM flywheel.judge_jobs j WHERE NOT EXISTS"
                 " (SELECT 1 FROM flywheel.traces t WHERE t.id = j.trace_id)")


def _create_validators(conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT flywheel.create_validator(%s, 'llm_judge', %s, mode => 'async', applies_to => %s)",
        (JUDGE, Jsonb({"provider": "offline", "few_shot": 3,
                       "criterion": "The answer is a real, non-empty attempt at the task, not a refusal."}),
         Jsonb({"app": APP_ANSWERS})),
    )
    for db in sqleval.DATABASES:
        conn.execute(
            "SELECT flywheel.create_validator(%s, 'sql_codegen', %s, applies_to => %s)",
            (f"sql_{db}", Jsonb({"schema": sqleval.schema_name(db), "explain": True}),
             Jsonb({"app": APP_SQL, "node": db, "node_type": "codegen"})),
        )


def _stream(conn: psycopg.Connection, traces: list[Trace], progress: Progress) -> dict[tuple[int, int], int]:
    """INSERT the traces in time order, BATCH rows per statement, as an application would.
    Returns the ids of llmfao answers by (prompt id, model id)."""
    task = progress.add_task("traces arrive (validators run on insert)", total=len(traces))
    ids: dict[tuple[int, int], int] = {}
    for start in range(0, len(traces), BATCH):
        chunk = traces[start:start + BATCH]
        rows = conn.execute(
            """INSERT INTO flywheel.traces (created_at, app, node, node_type, user_id, input, output, model,
                                            prompt_version, latency_ms, metadata)
               SELECT r.created_at, r.app, r.node, r.node_type, %s, r.input, r.output, r.model,
                      r.prompt_version, r.latency_ms, r.metadata
               FROM jsonb_to_recordset(%s) AS r(created_at timestamptz, app text, node text, node_type text,
                    input text, output text, model text, prompt_version text, latency_ms double precision,
                    metadata jsonb)
               RETURNING id, (metadata ->> 'prompt_id')::int, (metadata ->> 'model_id')::int""",
            (DEMO_USER, Jsonb([{**t.__dict__, "created_at": t.created_at.isoformat()} for t in chunk])),
        ).fetchall()
        conn.commit()
        ids.update({(prompt, model): trace_id for trace_id, prompt, model in rows if prompt is not None})
        progress.advance(task, len(chunk))
    return ids


def _crowd_feedback(conn: psycopg.Connection, answers: list[Trace], ids: dict[tuple[int, int], int],
                    progress: Progress) -> tuple[int, dict[int, tuple[int, int]]]:
    """Each crowd vote becomes a thumbs up for the answer it preferred and a thumbs down for the
    other (a tie says neither), an hour after the later answer arrived. Returns the feedback
    count and, per trace, (wins, losses)."""
    trace_of = {key: (ids[key], t.created_at)
                for t in answers if (key := (t.metadata["prompt_id"], t.metadata["model_id"]))}
    record: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    rows = []
    for vote in llmfao.crowd_votes():
        if vote["winner"] == "tie":
            continue
        left = trace_of[(int(vote["prompt"]), int(vote["model_x"]))]
        right = trace_of[(int(vote["prompt"]), int(vote["model_y"]))]
        winner, loser = (left, right) if vote["winner"] == "left" else (right, left)
        when = max(left[1], right[1]) + timedelta(hours=1)
        rows += [(winner[0], 1, when, vote["worker"]), (loser[0], -1, when, vote["worker"])]
        record[winner[0]][0] += 1
        record[loser[0]][1] += 1
    task = progress.add_task("crowd votes become feedback", total=len(rows))
    with conn.cursor() as cur:
        for start in range(0, len(rows), 1000):
            chunk = rows[start:start + 1000]
            cur.executemany(
                "INSERT INTO flywheel.feedback (trace_id, kind, value, created_at, source, user_id)"
                " VALUES (%s, 'thumbs', %s, %s, 'crowd', %s)", chunk)
            progress.advance(task, len(chunk))
    conn.commit()
    return len(rows), {k: (w, lo) for k, (w, lo) in record.items()}


def _label_campaign(conn: psycopg.Connection, ids: dict[tuple[int, int], int],
                    record: dict[int, tuple[int, int]], rng: random.Random) -> int:
    """People label a quarter of the answers for the judge's criterion: the crowd's verdict
    (more wins than losses passes). Labelled traces become few-shot examples."""
    voted = sorted(tid for tid in ids.values() if sum(record.get(tid, (0, 0))) > 0)
    chosen = rng.sample(voted, int(len(voted) * LABELLED_SHARE))
    rows = [(tid, JUDGE, "pass" if record[tid][0] >= record[tid][1] else "fail") for tid in chosen]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO flywheel.labels (trace_id, validator, verdict, annotator, comment)"
            " VALUES (%s, %s, %s, 'crowd-majority', 'from the crowd''s pairwise votes')",
            rows)
    conn.commit()
    return len(rows)


def _drain_judges(conn: psycopg.Connection, dsn: str) -> int:
    """Runs a worker until the queue is empty; returns the judge's verdicts on the demo's traces."""
    from dbflywheel.worker import Worker

    # The demo's judge is offline: it calls no endpoint, so the default allowlist is all it needs.
    asyncio.run(Worker(dsn, once=True, concurrency=16).run())
    row = conn.execute(
        """SELECT count(*) FROM flywheel.validation_results r
           JOIN flywheel.validators v ON v.id = r.validator_id AND v.name = %s
           JOIN flywheel.traces t ON t.id = r.trace_id AND t.user_id = %s""",
        (JUDGE, DEMO_USER),
    ).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def _refresh_metrics(conn: psycopg.Connection) -> None:
    conn.autocommit = True
    try:
        conn.execute("CALL flywheel.refresh_due(true)")
        conn.execute("CALL flywheel.refresh('pass_rate')")  # the summary reads it now, due or not
    finally:
        conn.autocommit = False


def _summarise(conn: psycopg.Connection, summary: Summary) -> None:
    # The built-in metric, summed over its days (its results count skipped ones too).
    summary.pass_rates = conn.execute(
        """SELECT validator, prompt_version, sum(passed + failed + errors) AS n,
                  round(sum(passed)::numeric / nullif(sum(passed + failed), 0), 3)
           FROM flywheel.metric_pass_rate
           WHERE app IN (%s, %s)
           GROUP BY 1, 2 HAVING sum(passed + failed + errors) > 0 ORDER BY 4 NULLS LAST, 1, 2 LIMIT 14""",
        (APP_ANSWERS, APP_SQL),
    ).fetchall()
    summary.alignment = conn.execute(
        """SELECT validator, n, round(agreement::numeric, 3), round(kappa::numeric, 3),
                  round(coverage::numeric, 3), round(false_failure_rate::numeric, 3)
           FROM flywheel.validator_alignment WHERE validator IN (%s, %s, %s) ORDER BY validator""",
        (JUDGE, f"{JUDGE_PREFIX}_gpt4", f"{JUDGE_PREFIX}_gpt35"),
    ).fetchall()
    summary.failure_modes = conn.execute(
        """SELECT coalesce(nullif(r.label, ''), v.name), count(*) AS n
           FROM flywheel.validation_results r
           JOIN flywheel.validators v ON v.id = r.validator_id
           JOIN flywheel.traces t ON t.id = r.trace_id
           WHERE t.app IN (%s, %s) AND r.status IN ('fail', 'error')
           GROUP BY 1 ORDER BY 2 DESC LIMIT 6""",
        (APP_ANSWERS, APP_SQL),
    ).fetchall()
    summary.few_shot = conn.execute(
        """SELECT trace_id, label, round(similarity::numeric, 3), round(score::numeric, 3),
                  left(btrim(regexp_replace(output, '\\s+', ' ', 'g')), 60)
           FROM flywheel.few_shot(%s, k => 3, validator => %s, app => %s)""",
        (SAMPLE_QUERY, JUDGE, APP_ANSWERS),
    ).fetchall()


def _training_sets(conn: psycopg.Connection, ids: dict[tuple[int, int], int]) -> list[tuple[Any, ...]]:
    """The loop into the model: five answers to one llmfao prompt become a golden set, then an SFT set
    (corrected and approved answers) and a DPO set (the crowd's preferences) are built from the rest;
    the leak guard holds back the golden traces and every other answer to the golden prompt."""
    row = conn.execute(
        """SELECT t.input FROM flywheel.preferences p JOIN flywheel.traces t ON t.id = p.trace_a
           WHERE p.judged_by = 'human' AND t.id = ANY (%s) GROUP BY t.input ORDER BY count(*), t.input LIMIT 1""",
        (list(ids.values()),)).fetchone()
    if row is not None:
        conn.execute("SELECT flywheel.promote_to_golden(t.id, %s, NULL, t.output) FROM"
                     " (SELECT t.id, t.output FROM flywheel.traces t WHERE t.id = ANY (%s) AND t.input = %s"
                     "  ORDER BY t.id LIMIT 5) t", (GOLDEN_SET, list(ids.values()), row[0]))
    rows = []
    for name, kind in (("demo-sft", "sft"), ("demo-dpo", "preference")):
        version, count, held = conn.execute("SELECT * FROM flywheel.create_training_set(%s, %s, %s)",
                                            (name, kind, Jsonb({"apps": [APP_ANSWERS]}))).fetchone()  # type: ignore[misc]
        rows.append((name, kind, version, count, ", ".join(f"{n} {why}" for why, n in sorted(held.items())) or "-"))
    conn.commit()
    return rows


def _show(console: Console, summary: Summary) -> None:
    def table(title: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        t = Table(title=title, title_justify="left")
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*("" if v is None else str(v) for v in r))
        console.print(t)

    table("Pass rate by validator and prompt version (lowest first)",
          ["validator", "prompt", "results", "pass rate"], summary.pass_rates)
    table("Judges against people", ["judge", "n", "agreement", "kappa", "coverage", "false failures"],
          summary.alignment)
    table("Worst failure modes", ["failure", "count"], summary.failure_modes)
    table(f"few_shot({SAMPLE_QUERY!r}, k => 3)", ["trace", "label", "similarity", "score", "output"],
          summary.few_shot)
    table("Training sets for the model (export: dbflywheel export-training NAME --format openai|trl -o FILE)",
          ["set", "kind", "version", "rows", "held back by the leak guard"], summary.training)
    console.print(
        f"[bold]{summary.traces}[/bold] traces, {summary.feedback} feedback rows, {summary.labels} labels, "
        f"{summary.judged} judge verdicts in {summary.seconds:.0f} s. Report: {summary.report}"
    )


def run_demo(dsn: str, *, report_dir: Path = Path("report"), seed: int = 7, console: Console | None = None) -> Summary:
    from dbflywheel.report import write_report

    console = console or Console()
    started = time.monotonic()
    rng = random.Random(seed)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    summary = Summary()
    with connect(dsn) as conn:
        version = conn.execute("SELECT flywheel.version()").fetchone()[0]  # type: ignore[index]
        console.print(f"[bold]dbflywheel {version}[/bold]: the flywheel on real data "
                      "(llmfao answers and verdicts, sql-eval queries; timeline simulated)")
        _reset(conn)
        conn.execute("SELECT flywheel.ensure_trace_partitions(%s, now() + interval '1 month')",
                     (end - timedelta(weeks=WEEKS + 1),))
        for db in sqleval.DATABASES:
            sqleval.load_schema(conn, db)
        _create_validators(conn)
        conn.commit()
        answers = answer_traces(rng, end)
        queries = sql_traces(conn, rng, end)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            ids = _stream(conn, answers, progress)
            _stream(conn, queries, progress)
            summary.traces = len(answers) + len(queries)
            summary.feedback, record = _crowd_feedback(conn, answers, ids, progress)
            llmfao.load_preferences(conn, ids, judge_prefix=JUDGE_PREFIX)
            conn.commit()
            summary.labels = _label_campaign(conn, ids, record, rng)
            task = progress.add_task("the worker drains the judge queue", total=None)
            summary.judged = _drain_judges(conn, dsn)
            progress.update(task, total=summary.judged, completed=summary.judged)
            task = progress.add_task("metrics refresh", total=1)
            _refresh_metrics(conn)
            progress.advance(task)
            summary.training = _training_sets(conn, ids)
        _summarise(conn, summary)
        summary.report = write_report(conn, report_dir, apps=(APP_ANSWERS, APP_SQL), judges=(
            JUDGE, f"{JUDGE_PREFIX}_gpt4", f"{JUDGE_PREFIX}_gpt35"))
    summary.seconds = time.monotonic() - started
    _show(console, summary)
    return summary
