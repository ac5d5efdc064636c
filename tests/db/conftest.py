"""Fixtures for the database tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo


@pytest.fixture
def only_the_test_validators(db: psycopg.Connection) -> Iterator[None]:
    """These tests count results they insert themselves: the default validators, which run on
    every insert, are paused during each test and enabled again afterwards."""
    paused = [r[0] for r in db.execute("SELECT name FROM flywheel.validators WHERE enabled")]
    for name in paused:
        db.execute("SELECT flywheel.set_validator_enabled(%s, false)", (name,))
    try:
        yield
    finally:
        for name in paused:
            db.execute("SELECT flywheel.set_validator_enabled(%s, true)", (name,))


@pytest.fixture
def scratch_database(db: psycopg.Connection, dsn: str) -> Iterator[callable]:  # type: ignore[valid-type]
    """Makes empty databases on the test server (dropped afterwards); returns their DSNs."""
    made: list[str] = []

    def make() -> str:
        name = f"scratch_{uuid.uuid4().hex[:8]}"
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return make_conninfo(dsn, dbname=name)

    yield make
    for name in made:
        db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
