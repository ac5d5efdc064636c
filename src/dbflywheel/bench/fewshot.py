"""The semantic index at 100,000 examples: few_shot latency and recall against an exact scan,
with and without an app filter; insert throughput with the built-in embedder on and off; the
cost of one more example (label to searchable)."""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from importlib.resources import files
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from dbflywheel.bench import Context

NAME = "fewshot"
TITLE = "Few-shot retrieval: the semantic index"

# App shares of the examples: a big app (HNSW with iterative scan) and a small one (2%: exact scan).
APPS = [("support", 0.40), ("sales", 0.25), ("search", 0.15), ("billing", 0.10), ("legal", 0.08), ("tiny", 0.02)]


def _corpus() -> tuple[list[str], list[str]]:
    """Questions and answer sentences from the shipped datasets (sql-eval, llmfao)."""
    data = files("dbflywheel") / "data" / "datasets"
    questions: list[str] = []
    for name in ("questions_gen_postgres.csv", "instruct_basic_postgres.csv"):
        with (data / "sql-eval" / name).open() as f:
            questions += [r["question"] for r in csv.DictReader(f) if r.get("question")]
    questions += [json.loads(line)["text"] for line in (data / "llmfao" / "prompts.jsonl").read_text().splitlines()]
    answers = [json.loads(line)["result"] for line in (data / "llmfao" / "results.jsonl").read_text().splitlines()]
    words = [w for a in answers for w in a.split()]
    return questions, words


def _texts(n: int, seed: int) -> list[str]:
    """n distinct, real-looking inputs: a dataset question with a window of a model's answer."""
    questions, words = _corpus()
    rng = np.random.default_rng(seed)
    qs = rng.integers(0, len(questions), n)
    starts = rng.integers(0, len(words) - 20, n)
    lengths = rng.integers(4, 16, n)
    return [f"{questions[q]} {' '.join(words[s:s + ln])}" for q, s, ln in zip(qs, starts, lengths, strict=True)]


def _apps(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    names, shares = zip(*APPS, strict=True)
    return list(rng.choice(names, n, p=np.array(shares) / sum(shares)))


def _load(conn: psycopg.Connection, n: int) -> float:
    """COPY n traces (the embedder runs once per COPY chunk), label them all, build the HNSW index.
    Returns the seconds the index build took."""
    texts, apps = _texts(n, seed=1), _apps(n, seed=2)
    chunk = 10_000
    for start in range(0, n, chunk):
        with conn.cursor().copy("COPY flywheel.traces (app, input, output, model, prompt_version) FROM STDIN") as cp:
            for i in range(start, min(n, start + chunk)):
                cp.write_row((apps[i], texts[i], "answer", "bench-model", "v1"))
        conn.commit()
    # Bulk set-up only: label all at once without the index, then build it (the steady state
    # adds examples one by one into the live index; measured below).
    row = conn.execute("SELECT pg_get_indexdef('flywheel.examples_embedding'::regclass)").fetchone()
    definition = row[0]  # type: ignore[index]
    conn.execute("DROP INDEX flywheel.examples_embedding")
    conn.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict)"
                 " SELECT id, '', 'helpful', 'pass' FROM flywheel.traces WHERE model = 'bench-model'")
    conn.commit()
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    started = time.perf_counter()
    conn.execute(definition)  # the migration's own definition
    conn.commit()
    took = time.perf_counter() - started
    conn.autocommit = True  # VACUUM: the steady state has a visibility map, as autovacuum keeps it
    conn.execute("VACUUM ANALYZE flywheel.examples")
    conn.autocommit = False
    return took


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


# The ground truth: an exact scan ("+ 0" keeps the index out), same filter.
EXACT_ALL = ("SELECT trace_id FROM flywheel.examples WHERE embedder = %s"
             " ORDER BY (embedding <=> %s::vector) + 0 LIMIT 10")
EXACT_APP = ("SELECT trace_id FROM flywheel.examples WHERE embedder = %s AND app = %s"
             " ORDER BY (embedding <=> %s::vector) + 0 LIMIT 10")


def _search(conn: psycopg.Connection, queries: list[str], app: str | None) -> dict[str, Any]:
    """few_shot(k=10) per query vs the exact top 10 by similarity (an exact scan, same filter)."""
    exact, recall = [], []
    embedder = conn.execute("SELECT flywheel._active_embedder()").fetchone()[0]  # type: ignore[index]
    vectors = [conn.execute("SELECT flywheel._embed_query(%s)::text", (q,)).fetchone()[0]  # type: ignore[index]
               for q in queries]
    rounds = []  # the machine is shared: three rounds, the quietest one counts
    for _ in range(3):
        few = []
        for vec in vectors:
            started = time.perf_counter()
            conn.execute("SELECT trace_id FROM flywheel.few_shot(%s::vector, 10, NULL, %s, '1000 years')", (vec, app))
            few.append((time.perf_counter() - started) * 1000)
        rounds.append(few)
    few = min(rounds, key=lambda r: _pct(r, 95))
    for vec in vectors:
        got = conn.execute("SELECT trace_id FROM flywheel.few_shot(%s::vector, 10, NULL, %s, '1000 years')",
                           (vec, app)).fetchall()
        started = time.perf_counter()
        args = (embedder, app, vec) if app else (embedder, vec)
        truth = conn.execute(EXACT_APP if app else EXACT_ALL, args).fetchall()
        exact.append((time.perf_counter() - started) * 1000)
        recall.append(len({r[0] for r in got} & {r[0] for r in truth}) / max(1, len(truth)))
        assert len(got) == 10, f"few_shot returned {len(got)} rows for app {app}"
    return {"p50": _pct(few, 50), "p95": _pct(few, 95), "exact_p50": _pct(exact, 50), "exact_p95": _pct(exact, 95),
            "recall": statistics.mean(recall)}


def _insert_throughput(ctx: Context, seconds: int) -> dict[str, Any]:
    """rows/s with the embedder off and on, first with the other triggers on traces as installed
    (validators), then with them off too (the embedder against a plain INSERT)."""
    single = ("INSERT INTO flywheel.traces (app, input, output) VALUES ('ingest', 'How many flights leave Boston on '"
              " || (random() * 1000)::int || ' with a layover?', 'x');\n")
    batch = ("INSERT INTO flywheel.traces (app, input, output) SELECT 'ingest', 'How many flights leave Boston on '"
             " || g || ' with a layover in ' || (random() * 1000)::int || '?', 'x' FROM generate_series(1, 100) g;\n")
    out: dict[str, Any] = {}
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        others = [r[0] for r in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'flywheel.traces'::regclass AND NOT tgisinternal"
            " AND tgname <> 'traces_embed' AND tgenabled <> 'D' ORDER BY tgname").fetchall()]
        out["others"] = ", ".join(others) or "none"
        try:
            for setting in ("installed", "plain"):
                if setting == "plain":
                    for name in others:
                        disable = sql.SQL("ALTER TABLE flywheel.traces DISABLE TRIGGER {}")
                        conn.execute(disable.format(sql.Identifier(name)))
                for state in ("off", "on"):
                    toggle = "DISABLE" if state == "off" else "ENABLE"
                    conn.execute(f"ALTER TABLE flywheel.traces {toggle} TRIGGER traces_embed")
                    out[f"{setting}_single_{state}"] = ctx.pgbench(single, clients=4, seconds=seconds)
                    out[f"{setting}_batch_{state}"] = ctx.pgbench(batch, clients=4, seconds=seconds) * 100
                if not others:
                    break
        finally:
            conn.execute("ALTER TABLE flywheel.traces ENABLE TRIGGER traces_embed")
            for name in others:
                conn.execute(sql.SQL("ALTER TABLE flywheel.traces ENABLE TRIGGER {}").format(sql.Identifier(name)))
    return out


def _label_to_searchable(conn: psycopg.Connection, n: int) -> dict[str, float]:
    """ms to commit one human label that makes a trace an example (HNSW insert included), against
    committing the same label with the example triggers off; then the example must be found."""
    texts = _texts(2 * n, seed=99)
    ids = [r[0] for r in conn.execute(
        "INSERT INTO flywheel.traces (app, input, output) SELECT 'support', t, 'fresh' FROM unnest(%s::text[]) t"
        " RETURNING id", (texts,)).fetchall()]
    conn.commit()
    timings: dict[str, list[float]] = {"plain": [], "example": []}
    found = 0
    for i, trace_id in enumerate(ids):
        kind = "plain" if i % 2 else "example"
        if kind == "plain":
            conn.execute("ALTER TABLE flywheel.labels DISABLE TRIGGER labels_examples_insert")
            conn.commit()
        started = time.perf_counter()
        conn.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict)"
                     " VALUES (%s, '', 'helpful', 'pass')", (trace_id,))
        conn.commit()
        timings[kind].append((time.perf_counter() - started) * 1000)
        if kind == "plain":
            conn.execute("ALTER TABLE flywheel.labels ENABLE TRIGGER labels_examples_insert")
            conn.commit()
            continue
        rows = conn.execute("SELECT trace_id FROM flywheel.few_shot(%s, 1, NULL, 'support')", (texts[i],)).fetchall()
        found += rows == [(trace_id,)]
        conn.commit()
    return {"plain": statistics.median(timings["plain"]), "example": statistics.median(timings["example"]),
            "example_p95": _pct(timings["example"], 95), "found": found / len(timings["example"])}


def run(ctx: Context) -> str:
    n = 10_000 if ctx.quick else 100_000
    with psycopg.connect(ctx.dsn) as conn:
        started = time.perf_counter()
        build = _load(conn, n)
        load = time.perf_counter() - started
        print(f"bench: fewshot: {n} examples loaded in {load:.0f} s (index {build:.0f} s)", flush=True)
        conn.autocommit = True
        rows = conn.execute("SELECT app, count(*) FROM flywheel.examples GROUP BY app").fetchall()
        counts: dict[str, int] = dict(rows)
        queries = _texts(100 if ctx.quick else 200, seed=7)
        for q in queries[:20]:  # warm the caches and the PL/Python module
            conn.execute("SELECT count(*) FROM flywheel.few_shot(%s, 10)", (q,))
        searches = {
            "no filter": _search(conn, queries, None),
            f"app = support ({counts.get('support', 0) / n:.0%} of examples)": _search(conn, queries, "support"),
            f"app = tiny ({counts.get('tiny', 0) / n:.0%} of examples)": _search(conn, queries, "tiny"),
        }
        print("bench: fewshot: searches done", flush=True)
        conn.autocommit = False
        label = _label_to_searchable(conn, 20 if ctx.quick else 100)
    ingest = _insert_throughput(ctx, 3 if ctx.quick else 8)

    lines = [
        f"{n:,} examples (384 dimensions, built-in embedder; COPY of real-looking inputs from the shipped "
        f"datasets, all labelled) loaded in {load:.0f} s, of which the HNSW build (m=16, ef_construction=128, "
        f"one parallel worker) took {build:.0f} s. few_shot runs with `hnsw.ef_search = 100` and "
        "`hnsw.iterative_scan = relaxed_order`, re-ranks the 40 nearest, and switches to an exact scan when "
        f"a filter leaves fewer than sqrt(40 x {n:,}) = {math.isqrt(40 * n):,} examples. "
        "Recall@10 is against an exact scan with the same filter; "
        f"{len(queries)} queries; latency is measured at the client (a round trip included), the quietest of "
        "three rounds (the machine is shared).",
        "",
        "| query | few_shot p50 | few_shot p95 | recall@10 | exact scan p50 | p95 vs exact scan |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in searches.items():
        lines.append(f"| {name} | {s['p50']:.2f} ms | {s['p95']:.2f} ms | {s['recall']:.3f} | "
                     f"{s['exact_p50']:.2f} ms | {s['p95'] / s['exact_p95']:.2f}x |")
    lines += [
        "",
        "Insert throughput (pgbench, 4 clients, 8 s each), built-in embedder on (statement-level trigger, one "
        "PL/Python call per statement) against off (trigger disabled), with the other triggers on traces as "
        f"installed ({ingest['others']}) and with them off (the embedder against a plain INSERT):",
        "",
        "| insert | other triggers | embedder off | embedder on | on / off |",
        "|---|---|---|---|---|",
    ]
    for setting in ("installed", "plain"):
        if f"{setting}_single_on" not in ingest:
            continue
        for size, what in (("single", "one row per INSERT"), ("batch", "100 rows per INSERT")):
            off, on = ingest[f"{setting}_{size}_off"], ingest[f"{setting}_{size}_on"]
            others = "as installed" if setting == "installed" else "off"
            lines.append(f"| {what} | {others} | {off:,.0f} rows/s | {on:,.0f} rows/s | {on / off:.2f}x |")
    lines += [
        "",
        f"Label to searchable, with {n:,} examples in the index: committing one human label that makes a trace an "
        f"example (example row + HNSW insert) takes {label['example']:.2f} ms median ({label['example_p95']:.2f} ms "
        f"p95) against {label['plain']:.2f} ms for the same label with the example triggers off "
        f"({label['example'] / label['plain']:.1f}x); right after the commit few_shot found the new example first "
        f"for {label['found']:.0%} of them. No rebuild, ever.",
    ]
    return "\n".join(lines)
