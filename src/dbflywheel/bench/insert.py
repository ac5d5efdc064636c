"""INSERT throughput into flywheel.traces with the default validators, against a plain table.

pgbench, 4 clients, one row and 100 rows per INSERT. Three tables are measured in turns
(several rounds, median), so that load from elsewhere on the machine hits all of them alike:
a plain table of the same columns (no index, no trigger), flywheel.traces with its validator
trigger disabled (the cost of the table itself: partitioning, six indexes, row-level security),
and flywheel.traces with the default validators.
"""

from __future__ import annotations

import statistics

import psycopg

from dbflywheel.bench import Context

NAME = "insert"
TITLE = "Trace INSERT throughput with the default validators"
CLIENTS = 4
TARGETS = {1: 0.70, 100: 0.50}

# A realistic mix: 3 in 4 traces are prose answers, 1 in 4 a tool call whose output is JSON (so
# the json validator runs); 1 in 20 inputs carries an e-mail address.
_VALUES = """'bench', 'answer', CASE WHEN ({r}) % 4 = 0 THEN 'tool' ELSE 'writer' END,
 'Question ' || ({r}) || ': how do I reset my password for the billing portal'
   || CASE WHEN ({r}) % 20 = 0 THEN ' (I am jane.doe' || ({r}) || '@example.com)' ELSE '' END,
 CASE WHEN ({r}) % 4 = 0
      THEN '{{"tool": "search", "arguments": {{"query": "reset password", "page": ' || ({r}) % 9 || '}}}}'
      ELSE 'To reset your password, open the billing portal, choose Settings, then Security, and press '
        || '"Reset password". You will receive a link by e-mail that stays valid for 30 minutes. If it does '
        || 'not arrive, check the spam folder or ask your administrator to resend it. Ticket ' || ({r}) END,
 'gpt-4o-mini', 'v1', 200 + ({r}) % 97, 40 + ({r}) % 13, 90 + ({r}) % 31, 0.0004"""
_COLUMNS = "app, node, node_type, input, output, model, prompt_version, latency_ms, tokens_in, tokens_out, cost_usd"


def script(table: str, rows: int) -> str:
    if rows == 1:
        # The benchmark's own constant SQL, not input.
        return f"\\set r random(1, 1000000000)\nINSERT INTO {table} ({_COLUMNS}) VALUES ({_VALUES.format(r=':r')});\n"  # noqa: S608
    values = _VALUES.format(r=":r + g")
    insert = f"INSERT INTO {table} ({_COLUMNS}) SELECT {values} FROM generate_series(1, {rows}) g;\n"  # noqa: S608
    return "\\set r random(1, 1000000000)\n" + insert


def _setup(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS public.bench_plain")
        db.execute("CREATE TABLE public.bench_plain (LIKE flywheel.traces INCLUDING DEFAULTS)")
        # A baseline for the anomaly validator, so that it scores rather than skips.
        db.execute(f"INSERT INTO flywheel.traces ({_COLUMNS}) SELECT {_VALUES.format(r='g')}"  # noqa: S608
                   " FROM generate_series(1, 500) g")
        db.execute("SELECT flywheel.refresh_anomaly_baselines()")
        return [r[0] for r in db.execute(
            "SELECT name || ' (' || kind || ')' FROM flywheel.validators WHERE enabled AND mode = 'sync' ORDER BY id")]


def _trigger(dsn: str, enabled: bool) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"ALTER TABLE flywheel.traces {'ENABLE' if enabled else 'DISABLE'} TRIGGER validate_inserted_traces")


def run(ctx: Context) -> str:
    validators = _setup(ctx.dsn)
    seconds, rounds = (2, 1) if ctx.quick else (8, 3)
    configs = [("plain table", "public.bench_plain", None), ("traces, validators off", "flywheel.traces", False),
               ("traces, default validators", "flywheel.traces", True)]
    rates: dict[tuple[int, str], list[float]] = {}
    try:
        for rows in (1, 100):
            for _ in range(rounds):
                for label, table, trigger in configs:
                    if trigger is not None:
                        _trigger(ctx.dsn, trigger)
                    tps = ctx.pgbench(script(table, rows), clients=CLIENTS, seconds=seconds)
                    rates.setdefault((rows, label), []).append(tps * rows)
    finally:
        _trigger(ctx.dsn, True)
    lines = [
        f"pgbench, {CLIENTS} clients, {seconds} s per measurement, {rounds} round(s) in turns, median rows/s.",
        f"Default validators enabled: {', '.join(validators)}.",
        "",
        "| rows per INSERT | plain table rows/s | traces, validators off | traces, default validators "
        "| with validators vs plain (target) | validators' own cost (vs validators off) |",
        "|---|---|---|---|---|---|",
    ]
    for rows in (1, 100):
        plain, off, on = (statistics.median(rates[(rows, label)]) for label, _, _ in configs)
        ratio = on / plain
        verdict = "met" if ratio >= TARGETS[rows] else "missed"
        lines.append(f"| {rows} | {plain:,.0f} | {off:,.0f} ({off / plain:.2f}x) | {on:,.0f} "
                     f"| **{ratio:.2f}x** ({TARGETS[rows]:.2f}x: {verdict}) | {on / off:.2f}x |")
    return "\n".join(lines)
