"""The `dbflywheel` command as a user types it: the embedded cluster, install, and bad input."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CLI = [str(Path(sys.executable).parent / "dbflywheel")]


def run(*args: str, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=180
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed: {proc.stderr}")
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="dbflywheel-cli-"))
    try:
        yield folder
    finally:
        run("down", "--home", str(folder))
        shutil.rmtree(folder, ignore_errors=True)


def test_up_dsn_install_insert_status_down(home: Path) -> None:
    up = run("up", "--home", str(home), check=True)
    dsn = run("dsn", "--home", str(home), check=True).stdout.strip()
    assert up.stdout.strip() == dsn
    assert "installed dbflywheel" in up.stderr
    assert run("install", "--dsn", dsn, check=True).stdout.strip().endswith("nothing changed")
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    out = subprocess.run(
        [psql, dsn, "-Atc", "INSERT INTO flywheel.traces (input, output, model, prompt_version)"
         " VALUES ('hi', 'hello', 'm', 'v1'); SELECT flywheel.version(), count(*) FROM flywheel.traces"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "0.1.0|1"
    status = run("status", "--home", str(home), check=True).stdout
    assert "running" in status and str(home / "data") in status and "dbflywheel 0.1.0" in status
    again = run("up", "--home", str(home), check=True)  # up on a running cluster: no harm
    assert again.stdout.strip() == dsn
    assert run("down", "--home", str(home), check=True).stdout.strip() == "stopped"
    stopped = run("status", "--home", str(home))
    assert stopped.returncode == 3 and "stopped" in stopped.stdout


def test_install_on_a_server_that_is_down_is_one_line(home: Path) -> None:
    run("down", "--home", str(home))
    dsn = run("dsn", "--home", str(home), check=True).stdout.strip()
    assert_one_line_error(run("install", "--dsn", dsn), "cannot connect", "dbflywheel up")


def test_a_wrong_dsn_is_one_line() -> None:
    assert_one_line_error(run("install", "--dsn", "this is not a dsn"), "invalid DSN")
    assert_one_line_error(run("install", "--dsn", "postgresql://nobody@127.0.0.1:1/x"), "cannot connect")


def test_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert_one_line_error(run("up", "--home", str(tmp_path / "c"), "--port", str(port)), f"port {port}", "--port")


def test_missing_postgresql_binaries_are_one_line(tmp_path: Path) -> None:
    proc = run("up", "--home", str(tmp_path / "c"), env={"DBFLYWHEEL_PG_BIN": str(tmp_path)})
    assert_one_line_error(proc, "binaries", "make setup")


def test_no_cluster_yet_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run("dsn", "--home", str(tmp_path / "none")), "dbflywheel up")


def test_a_server_without_a_required_extension_is_one_line(dsn: str) -> None:
    # A real server, asked for an extension it really lacks: the same check as for pgvector.
    code = (
        "import sys; from dbflywheel import install; from dbflywheel.cli import main;"
        "install.REQUIRED_EXTENSIONS['vector_not_here'] = 'install it';"
        "sys.argv = ['dbflywheel', 'install', '--force', '--dsn', sys.argv[1]]; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code, dsn], capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, "no vector_not_here extension available")


def test_build_check_passes_on_the_shipped_script() -> None:
    proc = run("build", "--check", check=True)
    assert "up to date" in proc.stdout
