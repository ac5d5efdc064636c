"""Loads llmfao (real LLM responses with crowd and GPT-4 pairwise verdicts) into the flywheel:
responses as traces, crowd votes as human preferences, GPT-4 and GPT-3.5 as judge verdicts."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dbflywheel.errors import FlywheelError

DATA = Path(str(resources.files("dbflywheel") / "data" / "datasets" / "llmfao"))
# The judges of the data set: the validator names their verdicts carry are <prefix>_<judge>.
JUDGE_FILES = {"gpt4": "gpt4-comparisons.csv", "gpt35": "gpt3-crowd-comparisons.csv"}
WINNER = {"left": "a", "right": "b", "tie": "tie"}


@dataclass
class LoadResult:
    app: str
    traces: int
    human_votes: int
    judge_verdicts: dict[str, int]

    def describe(self) -> str:
        judges = ", ".join(f"{n} {name}" for name, n in self.judge_verdicts.items())
        return (f"loaded llmfao into app {self.app!r}: {self.traces} traces, {self.human_votes} human votes, "
                f"judge verdicts: {judges}")


def _jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def _csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="") as f:
        return list(csv.DictReader(f))


def load(conn: psycopg.Connection, *, app: str = "llmfao", judge_prefix: str = "llmfao") -> LoadResult:
    """Loads the data set once per app, in one transaction; a second load of the same app is
    refused. The judges' verdicts are named <judge_prefix>_gpt4 and <judge_prefix>_gpt35."""
    prompts, results = responses()
    with conn.transaction():
        if conn.execute("SELECT 1 FROM flywheel.traces WHERE app = %s LIMIT 1", (app,)).fetchone():
            raise FlywheelError(f"app {app!r} already has traces: llmfao is loaded (use --app to load it again)")
        rows = [
            {
                "input": prompts[r["prompt"]]["text"], "output": r["result"], "model": r["name"],
                "latency_ms": r["duration"],
                "metadata": {"dataset": "llmfao", "llmfao_id": r["id"], "prompt_id": r["prompt"],
                             "model_id": r["model"], "slug": r["slug"], "prompt_type": prompts[r["prompt"]]["type"],
                             "api_id": r["api_id"], "org": r["org"]},
            }
            for r in results
        ]
        inserted = conn.execute(
            """INSERT INTO flywheel.traces (app, node_type, input, output, model, latency_ms, metadata)
               SELECT %s, 'writer', r.input, r.output, r.model, r.latency_ms, r.metadata
               FROM jsonb_to_recordset(%s) AS r(input text, output text, model text, latency_ms double precision,
                                                 metadata jsonb)
               RETURNING id, (metadata ->> 'prompt_id')::int, (metadata ->> 'model_id')::int""",
            (app, Jsonb(rows)),
        ).fetchall()
        trace_of = {(prompt, model): trace_id for trace_id, prompt, model in inserted}
        crowd, judged = load_preferences(conn, trace_of, judge_prefix=judge_prefix)
    # Fresh statistics, so that the alignment and ranking views plan with the real row counts.
    conn.execute("ANALYZE flywheel.traces, flywheel.preferences")
    return LoadResult(app, len(inserted), crowd, judged)


def load_preferences(
    conn: psycopg.Connection, trace_of: dict[tuple[int, int], int], *, judge_prefix: str = "llmfao"
) -> tuple[int, dict[str, int]]:
    """Crowd votes as human preferences and the judges' verdicts as llm preferences, on traces
    already loaded: trace_of maps (prompt id, model id) to a trace id. Returns the number of
    human votes and of verdicts per judge."""

    def pair(row: dict[str, str]) -> tuple[int, int]:
        prompt = int(row["prompt"])
        return trace_of[(prompt, int(row["model_x"]))], trace_of[(prompt, int(row["model_y"]))]

    with conn.cursor() as cur, cur.copy(
        "COPY flywheel.preferences (trace_a, trace_b, winner, judged_by, validator, annotator) FROM STDIN"
    ) as copy:
        crowd = crowd_votes()
        for row in crowd:
            copy.write_row((*pair(row), WINNER[row["winner"]], "human", None, f"crowd:{row['worker']}"))
        judged: dict[str, int] = {}
        for judge, name in JUDGE_FILES.items():
            verdicts = _csv(name)
            for row in verdicts:
                copy.write_row((*pair(row), WINNER[row["winner"]], "llm", f"{judge_prefix}_{judge}", None))
            judged[f"{judge_prefix}_{judge}"] = len(verdicts)
    return len(crowd), judged


def crowd_votes() -> list[dict[str, str]]:
    """The crowd's pairwise votes: prompt, model_x, model_y, worker, winner (left|right|tie)."""
    return _csv("crowd-comparisons.csv")


def responses() -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """The prompts by id and the responses (prompt, model, result, duration, ...)."""
    return {int(p["id"]): p for p in _jsonl("prompts.jsonl")}, _jsonl("results.jsonl")
