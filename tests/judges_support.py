"""Helpers of the judges' tests: judge validators, traces and jobs made directly in SQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

DBFLYWHEEL = str(Path(sys.executable).with_name("dbflywheel"))


def make_judge(db: psycopg.Connection, kind: str = "llm_judge", app: str | None = None, **config: Any) -> tuple[int, str]:
    """An enabled async judge validator (id, name) for traces of `app`: the insert trigger
    enqueues its jobs."""
    name = f"judge_{uuid.uuid4().hex[:10]}"
    if kind == "llm_judge":
        config.setdefault("criterion", "The answer is correct.")
    config.setdefault("redact_pii", False)
    row = db.execute(
        "SELECT flywheel.create_validator(%s, %s, %s, 'async', %s)",
        (name, kind, Jsonb(config), Jsonb({"app": app} if app else {})),
    ).fetchone()
    assert row is not None
    return row[0], name


def add_traces(db: psycopg.Connection, app: str, rows: list[dict[str, Any]]) -> list[int]:
    ids = []
    for r in rows:
        row = db.execute(
            "INSERT INTO flywheel.traces (app, input, output, expected, model, prompt_version, variant)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (app, r.get("input", "q"), r.get("output", "a"), r.get("expected"), r.get("model"),
             r.get("prompt_version"), r.get("variant")),
        ).fetchone()
        assert row is not None
        ids.append(row[0])
    return ids


def enqueue(db: psycopg.Connection, validator_id: int, trace_ids: list[int]) -> None:
    """What the insert trigger does (idempotent: the trigger may already have enqueued them)."""
    db.execute(
        "INSERT INTO flywheel.judge_jobs (trace_id, validator_id, validator_version)"
        " SELECT unnest(%s::bigint[]), %s, 1 ON CONFLICT DO NOTHING",
        (trace_ids, validator_id),
    )


def only_these_validators(db: psycopg.Connection, validator_ids: list[int]) -> None:
    """Workers drain the whole queue: leave in it only the jobs of this test's validators."""
    db.execute("DELETE FROM flywheel.judge_jobs WHERE validator_id <> ALL (%s)", (validator_ids,))


def results(db: psycopg.Connection, validator_id: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for trace_id, status in db.execute(
        "SELECT trace_id, status FROM flywheel.validation_results WHERE validator_id = %s", (validator_id,)
    ):
        out.setdefault(trace_id, []).append(status)
    return out


def start_worker(dsn: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [DBFLYWHEEL, "worker", "--dsn", dsn, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )
