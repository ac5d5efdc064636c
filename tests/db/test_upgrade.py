"""Upgrading: an older install plus the current script equals a fresh install of the current script.

tests/data/upgrade/ holds install scripts of earlier builds. An edit to a migration that such
a build already applied, or a change that only a fresh install gets, fails here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from schema_dump import schema_dump

from dbflywheel.install import install

OLD_SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "data" / "upgrade").glob("*.sql"))


@pytest.fixture
def scratch_database(db: psycopg.Connection, dsn: str) -> Iterator[callable]:  # type: ignore[valid-type]
    made: list[str] = []

    def make() -> str:
        name = f"scratch_{uuid.uuid4().hex[:8]}"
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return make_conninfo(dsn, dbname=name)

    yield make
    for name in made:
        db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("old_script", OLD_SCRIPTS, ids=lambda p: p.stem)
def test_upgrade_equals_fresh_install(scratch_database, old_script: Path) -> None:  # type: ignore[no-untyped-def]
    upgraded, fresh = scratch_database(), scratch_database()
    with psycopg.connect(upgraded, autocommit=True) as conn:
        conn.execute(old_script.read_bytes())
        conn.execute("INSERT INTO flywheel.traces (input, output) VALUES ('kept?', 'yes')")
    assert install(upgraded).changed
    install(fresh)
    assert schema_dump(upgraded) == schema_dump(fresh)
    with psycopg.connect(upgraded) as conn:
        assert conn.execute("SELECT output FROM flywheel.traces WHERE input = 'kept?'").fetchone() == ("yes",)
