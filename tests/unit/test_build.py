"""The build: one script from sql/, migrations/ and plpython/, and a check that it is fresh."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dbflywheel import build
from dbflywheel.errors import FlywheelError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_script_is_fresh() -> None:
    build.check()  # the same check as `dbflywheel build --check`


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    for folder in ("sql", "migrations", "plpython"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def test_a_changed_source_makes_the_shipped_script_stale(source_copy: Path) -> None:
    (source_copy / "sql" / "999-extra.sql").write_text("SELECT 1;\n")
    with pytest.raises(FlywheelError, match="stale"):
        build.check(source_copy)


def test_migrations_are_wrapped_once_with_their_checksum(source_copy: Path) -> None:
    body = "CREATE TABLE flywheel.example (id int);\n"
    (source_copy / "migrations" / "9000-example.sql").write_text(body)
    script = build.build_script(source_copy)
    assert "-- migration 9000-example.sql" in script
    assert build.script_checksum(body) in script
    assert script.index("0001-core-tables.sql") < script.index("9000-example.sql")


def test_two_migrations_with_one_number_are_refused(source_copy: Path) -> None:
    (source_copy / "migrations" / "0001-duplicate.sql").write_text("SELECT 1;\n")
    with pytest.raises(FlywheelError, match="share a number"):
        build.build_script(source_copy)


def test_plpython_marker_becomes_a_call_with_the_function_arguments(source_copy: Path) -> None:
    (source_copy / "plpython" / "greeting.py").write_text("def hello(plpy, name, times):\n    return name\n")
    (source_copy / "sql" / "998-greeting.sql").write_text(
        "CREATE FUNCTION flywheel.hello(name text, times int) RETURNS text LANGUAGE plpython3u\n"
        "AS $python$ # plpython: greeting.hello $python$;\n"
    )
    script = build.build_script(source_copy)
    assert "return _import('greeting').hello(plpy, name, times)" in script
    assert "# plpython:" not in script


@pytest.mark.parametrize(
    ("module_source", "message"),
    [("def other(plpy):\n    pass\n", "has no function hello"), ("def hello(name):\n    pass\n", "plpy first")],
)
def test_plpython_marker_errors_name_the_file(source_copy: Path, module_source: str, message: str) -> None:
    (source_copy / "plpython" / "greeting.py").write_text(module_source)
    (source_copy / "sql" / "998-greeting.sql").write_text(
        "CREATE FUNCTION flywheel.hello() RETURNS text LANGUAGE plpython3u\n"
        "AS $python$ # plpython: greeting.hello $python$;\n"
    )
    with pytest.raises(FlywheelError, match=message):
        build.build_script(source_copy)
