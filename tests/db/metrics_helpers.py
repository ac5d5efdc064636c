"""Shared set-up for the metrics tests: validators and results inserted directly (the validator
branch produces them in production)."""

from __future__ import annotations

import uuid

import psycopg


def make_validator(db: psycopg.Connection, name: str | None = None) -> tuple[int, str]:
    name = name or f"v_{uuid.uuid4().hex[:10]}"
    row = db.execute("INSERT INTO flywheel.validators (name, kind, enabled) VALUES (%s, 'sql', false) RETURNING id", (name,)).fetchone()
    assert row is not None
    db.execute(
        "INSERT INTO flywheel.validator_versions (validator_id, version, kind, config, mode, applies_to, sample_rate)"
        " SELECT id, version, kind, config, mode, applies_to, sample_rate FROM flywheel.validators WHERE id = %s",
        (row[0],),
    )
    return row[0], name


def add_result(db: psycopg.Connection, trace_id: int, validator_id: int, status: str, *, label: str | None = None,
               score: float | None = None) -> None:
    db.execute(
        "INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status, label, score)"
        " VALUES (%s, %s, 1, %s, %s, %s)",
        (trace_id, validator_id, status, label, score),
    )


def add_trace(db: psycopg.Connection, app: str, **columns: object) -> int:
    columns = {"app": app, **columns}
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    row = db.execute(f"INSERT INTO flywheel.traces ({names}) VALUES ({marks}) RETURNING id", list(columns.values())).fetchone()
    assert row is not None
    return int(row[0])

