"""`dbflywheel validators` and `dbflywheel revalidate` as a user types them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

CLI = [str(Path(sys.executable).parent / "dbflywheel")]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=os.environ, timeout=120)


def test_list_and_revalidate(dsn: str, db: psycopg.Connection, app_name: str) -> None:
    db.execute("INSERT INTO flywheel.traces (app, output) VALUES (%s, 'fine')", (app_name,))
    listed = run("validators", "--dsn", dsn)
    assert listed.returncode == 0, listed.stderr
    assert "stock_phrases" in listed.stdout and "regex" in listed.stdout
    done = run("revalidate", "length", "--since", "2000-01-01", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    assert "revalidated length over" in done.stdout
    assert "traces seen" in done.stderr  # the progress NOTICEs


def test_revalidating_an_unknown_validator_is_one_line(dsn: str) -> None:
    proc = run("revalidate", "no_such_validator", "--dsn", dsn)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "dbflywheel: revalidate: no validator named 'no_such_validator'"
