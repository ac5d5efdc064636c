"""`dbflywheel refresh`: runs the schedules that are due (metric refreshes, drift and trend
checks, canaries, retention) where pg_cron is not installed; `--loop` keeps doing it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from dbflywheel.errors import FlywheelError
from dbflywheel.install import connect


@dataclass
class Ran:
    name: str
    error: str | None


def _pg_cron_runs_jobs(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT flywheel._pg_cron_installed()").fetchone()
    return bool(row and row[0])


def run_due(conn: psycopg.Connection, *, include_pg_cron_jobs: bool = False) -> list[Ran]:
    """Runs every due schedule once (CALL flywheel.refresh_due()) and says which ran."""
    before: dict[str, object] = dict(conn.execute("SELECT name, last_run_at FROM flywheel.schedules").fetchall())
    conn.execute("CALL flywheel.refresh_due(%s)", (include_pg_cron_jobs,))
    after = conn.execute("SELECT name, last_run_at, last_error FROM flywheel.schedules ORDER BY name").fetchall()
    return [Ran(name, error) for name, last_run_at, error in after if last_run_at is not None
            and last_run_at != before.get(name)]


def refresh_metric(conn: psycopg.Connection, metric: str, *, full: bool = False) -> str:
    conn.execute("CALL flywheel.refresh(%s, %s)", (metric, full))
    row = conn.execute(
        "SELECT mode, rows, days, duration, error FROM flywheel.refresh_log WHERE metric = %s"
        " ORDER BY started_at DESC LIMIT 1", (metric,)).fetchone()
    if row is None:
        return f"{metric}: computed on read, nothing to refresh"
    mode, rows, days, duration, error = row
    if error:
        raise FlywheelError(f"refresh of {metric} failed: {error}")
    what = f"{rows} rows" + (f" over {days} days" if days is not None else "")
    return f"{metric}: {mode} refresh, {what}, {duration.total_seconds():.3f} s"


def loop(dsn: str, *, interval: float, echo: Callable[[str], None], include_pg_cron_jobs: bool = False,
         iterations: int | None = None) -> None:
    """Runs the due schedules every `interval` seconds; a lost connection is reported and retried."""
    done = 0
    while iterations is None or done < iterations:
        try:
            with connect(dsn, autocommit=True) as conn:
                if done == 0 and _pg_cron_runs_jobs(conn) and not include_pg_cron_jobs:
                    echo("pg_cron is installed and runs the schedules; this loop only runs what pg_cron does not")
                for ran in run_due(conn, include_pg_cron_jobs=include_pg_cron_jobs):
                    echo(f"ran {ran.name}" + (f": FAILED: {ran.error}" if ran.error else ""))
        except (FlywheelError, psycopg.Error) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            echo(f"refresh loop: {first} (retrying in {interval:g} s)")
        done += 1
        if iterations is None or done < iterations:
            time.sleep(interval)
