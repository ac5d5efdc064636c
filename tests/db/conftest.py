"""Fixtures for the database tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
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
def login_role(db: psycopg.Connection, dsn: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """Makes login roles in a group (or mapped to an app with grant_app); drops them afterwards."""
    made: list[str] = []

    def make(group: str, app: str | None = None) -> psycopg.Connection:
        name = f"r_{uuid.uuid4().hex[:12]}"
        password = uuid.uuid4().hex
        db.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        made.append(name)
        if app is not None:
            db.execute("SELECT flywheel.grant_app(%s, %s)", (name, app))
        else:
            db.execute(f"GRANT {group} TO {name}")
        return psycopg.connect(make_conninfo(dsn, user=name, password=password), autocommit=True)

    yield make
    for name in made:
        db.execute("DELETE FROM flywheel.app_roles WHERE role_name = %s", (name,))
        db.execute(f"DROP OWNED BY {name}")
        db.execute(f"DROP ROLE {name}")
