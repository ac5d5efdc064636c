"""Installing: idempotent, versioned, and strict about edited migrations."""

from __future__ import annotations

import psycopg
import pytest
from schema_dump import schema_dump

from dbflywheel import __version__
from dbflywheel.errors import FlywheelError
from dbflywheel.install import install


def test_version(db: psycopg.Connection) -> None:
    assert db.execute("SELECT flywheel.version()").fetchone() == (__version__,)


def test_second_install_changes_nothing_and_says_so(dsn: str) -> None:
    result = install(dsn)
    assert not result.changed
    assert "nothing changed" in result.describe()


def test_forced_reinstall_leaves_no_difference(dsn: str) -> None:
    before = schema_dump(dsn)
    result = install(dsn, force=True)
    assert result.changed and result.migrations_applied == []
    assert schema_dump(dsn) == before


def test_edited_migration_is_refused_with_its_file_name(db: psycopg.Connection, dsn: str) -> None:
    name = "0001-core-tables.sql"
    (original,) = db.execute("SELECT checksum FROM flywheel._migrations WHERE name = %s", (name,)).fetchone()  # type: ignore[misc]
    db.execute("UPDATE flywheel._migrations SET checksum = 'edited' WHERE name = %s", (name,))
    try:
        with pytest.raises(FlywheelError, match=f"migration {name} was changed after it was applied"):
            install(dsn, force=True)
    finally:
        db.execute("UPDATE flywheel._migrations SET checksum = %s WHERE name = %s", (original, name))


def test_every_migration_is_in_the_ledger(db: psycopg.Connection) -> None:
    from dbflywheel.build import read_sources

    names = {name for name, _ in read_sources().migrations}
    assert {r[0] for r in db.execute("SELECT name FROM flywheel._migrations")} == names


def test_plpython_runs_with_what_it_imports(db: psycopg.Connection) -> None:
    (info,) = db.execute("SELECT flywheel.python_environment()").fetchone()  # type: ignore[misc]
    assert info["missing"] == []
    assert info["executable"].startswith("/usr/bin/python3")
