"""Metrics as views: create_metric, switching modes, refresh and its log, status, schedules with
and without pg_cron, and the incremental daily rollups."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from metrics_helpers import add_result, add_trace, make_validator
from psycopg.conninfo import conninfo_to_dict, make_conninfo

pytestmark = pytest.mark.usefixtures("only_the_test_validators")

CLI = str(Path(sys.executable).parent / "dbflywheel")


def _name() -> str:
    return f"custom_{uuid.uuid4().hex[:8]}"  # custom_* metrics stay out of the golden API files


def _relkind(db: psycopg.Connection, metric: str) -> str | None:
    row = db.execute("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", (f"flywheel.metric_{metric}",)).fetchone()
    return row[0] if row else None


def _cron_job(db: psycopg.Connection, metric: str) -> list[tuple[str, str]]:
    return db.execute("SELECT schedule, command FROM cron.job WHERE jobname = %s", (f"flywheel_metric_{metric}",)).fetchall()


def test_a_metric_switches_between_view_and_materialized_and_keeps_its_name(db: psycopg.Connection, app_name: str) -> None:
    name = _name()
    query = f"SELECT model, count(*) AS traces FROM flywheel.traces WHERE app = '{app_name}' GROUP BY model"
    add_trace(db, app_name, model="m1")
    assert db.execute("SELECT flywheel.create_metric(%s, %s)", (name, query)).fetchone() == (f"flywheel.metric_{name}",)
    assert _relkind(db, name) == "v"
    add_trace(db, app_name, model="m1")
    assert db.execute(f"SELECT * FROM flywheel.metric_{name}").fetchall() == [("m1", 2)]  # computed on read

    db.execute("SELECT flywheel.create_metric(%s, %s, true, '*/10 * * * *')", (name, query))
    assert _relkind(db, name) == "m"
    assert db.execute(f"SELECT * FROM flywheel.metric_{name}").fetchall() == [("m1", 2)]  # populated at once
    unique = db.execute(
        "SELECT count(*) FROM pg_index WHERE indrelid = to_regclass(%s) AND indisunique", (f"flywheel.metric_{name}",)
    ).fetchone()
    assert unique == (1,)
    assert _cron_job(db, name) == [("*/10 * * * *", f"CALL flywheel.refresh('{name}')")]

    add_trace(db, app_name, model="m2")
    assert db.execute(f"SELECT count(*) FROM flywheel.metric_{name}").fetchone() == (1,)  # stored until refreshed
    db.execute("CALL flywheel.refresh(%s)", (name,))
    assert db.execute(f"SELECT * FROM flywheel.metric_{name} ORDER BY model").fetchall() == [("m1", 2), ("m2", 1)]
    log = db.execute("SELECT mode, rows, error, duration >= interval '0' FROM flywheel.refresh_log WHERE metric = %s", (name,)).fetchall()
    assert log == [("concurrent", 2, None, True)]

    # Scheduling again replaces the job (pg_cron's upsert on the name); no schedule removes it.
    db.execute("SELECT flywheel.create_metric(%s, %s, true, '@hourly')", (name, query))
    assert _cron_job(db, name) == [("@hourly", f"CALL flywheel.refresh('{name}')")]
    db.execute("SELECT flywheel.create_metric(%s, %s, false)", (name, query))
    assert _relkind(db, name) == "v"
    assert _cron_job(db, name) == []
    db.execute("SELECT flywheel.drop_metric(%s)", (name,))
    assert _relkind(db, name) is None


def test_a_query_that_does_not_compile_is_refused_with_postgres_message(db: psycopg.Connection) -> None:
    name = _name()
    with pytest.raises(psycopg.errors.UndefinedColumn, match='column "nope" does not exist'):
        db.execute("SELECT flywheel.create_metric(%s, 'SELECT nope FROM flywheel.traces', true)", (name,))
    with pytest.raises(psycopg.errors.SyntaxError):
        db.execute("SELECT flywheel.create_metric(%s, 'SELEC 1')", (name,))
    assert db.execute("SELECT count(*) FROM flywheel.metrics WHERE name = %s", (name,)).fetchone() == (0,)
    with pytest.raises(psycopg.errors.RaiseException, match="not a metric name"):
        db.execute("SELECT flywheel.create_metric('Bad-Name', 'SELECT 1')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid schedule: .every tuesday. is not a cron schedule"):
        db.execute("SELECT flywheel.create_metric(%s, 'SELECT 1 AS x', true, 'every tuesday')", (name,))
    with pytest.raises(psycopg.errors.RaiseException, match="built-in"):
        db.execute("SELECT flywheel.create_metric('pass_rate', 'SELECT 1 AS x')")


def test_a_failed_refresh_is_logged_with_its_error(db: psycopg.Connection) -> None:
    name = _name()
    table = f"public.t_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE TABLE {table} (v int)")
    try:
        db.execute(f"GRANT SELECT ON {table} TO flywheel_owner")  # a metric reads with the extension's rights
        db.execute(f"INSERT INTO {table} VALUES (1)")
        db.execute("SELECT flywheel.create_metric(%s, %s, true)", (name, f"SELECT 10 / v AS r FROM {table}"))
        db.execute(f"INSERT INTO {table} VALUES (0)")
        warnings: list[str] = []
        db.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
        db.execute("CALL flywheel.refresh(%s)", (name,))
        assert any("division by zero" in w for w in warnings)
        assert db.execute("SELECT error FROM flywheel.refresh_log WHERE metric = %s", (name,)).fetchall() == [("division by zero",)]
        status = db.execute("SELECT kind, last_error, last_success_at FROM flywheel.refresh_status WHERE metric = %s", (name,)).fetchone()
        assert status == ("materialized", "division by zero", None)
        assert db.execute(f"SELECT r FROM flywheel.metric_{name}").fetchall() == [(10,)]  # the old rows stay
    finally:
        db.execute("SELECT flywheel.drop_metric(%s)", (name,))
        db.execute(f"DROP TABLE {table}")


def test_refresh_status_says_how_stale_a_metric_is(db: psycopg.Connection) -> None:
    name = _name()
    db.execute("SELECT flywheel.create_metric(%s, 'SELECT 1 AS one', true, '*/5 * * * *')", (name,))
    try:
        # As if it had been created an hour ago and never refreshed since.
        db.execute("UPDATE flywheel.metrics SET updated_at = now() - interval '1 hour' WHERE name = %s", (name,))
        db.execute("DELETE FROM flywheel.refresh_log WHERE metric = %s", (name,))
        row = db.execute(
            "SELECT kind, schedule, scheduled_by, is_stale, stale_by > interval '0', stale_by <= interval '5 minutes'"
            " FROM flywheel.refresh_status WHERE metric = %s", (name,)).fetchone()
        assert row == ("materialized", "*/5 * * * *", "pg_cron", True, True, True)
        db.execute("CALL flywheel.refresh(%s)", (name,))
        row = db.execute("SELECT is_stale, stale_by, last_rows FROM flywheel.refresh_status WHERE metric = %s", (name,)).fetchone()
        assert row is not None and row[0] is False and row[1].total_seconds() == 0 and row[2] == 1
        views = db.execute("SELECT scheduled_by FROM flywheel.refresh_status WHERE metric = 'latency'").fetchone()
        assert views == ("computed on read",)
    finally:
        db.execute("SELECT flywheel.drop_metric(%s)", (name,))


def _on_demand(db: psycopg.Connection, metric: str, app: str) -> list[tuple]:  # type: ignore[type-arg]
    query = db.execute("SELECT query FROM flywheel.metrics WHERE name = %s", (metric,)).fetchone()[0]  # type: ignore[index]
    return db.execute(f"SELECT * FROM ({query}) q WHERE app = %s ORDER BY 1, 2, 3, 4, 5, 6", (app,)).fetchall()


def _pass_rate(db: psycopg.Connection, app: str) -> list[tuple]:  # type: ignore[type-arg]
    return db.execute("SELECT * FROM flywheel.metric_pass_rate WHERE app = %s ORDER BY 1, 2, 3, 4, 5, 6", (app,)).fetchall()


def test_the_pass_rate_rollup_recomputes_only_changed_days(db: psycopg.Connection, app_name: str) -> None:
    vid, vname = make_validator(db)
    traces = {}
    for day in (1, 2, 3):
        for i in range(4):
            tid = add_trace(db, app_name, created_at=f"2021-01-0{day} 12:00+00", model="m", prompt_version="v1")
            add_result(db, tid, vid, "pass" if i < day else "fail")
            traces[(day, i)] = tid
    db.execute("CALL flywheel.refresh('pass_rate')")
    rows = _pass_rate(db, app_name)
    assert [(str(r[0]), r[6], r[7], r[8], r[10]) for r in rows] == [
        ("2021-01-01", 4, 1, 3, 0.25), ("2021-01-02", 4, 2, 2, 0.5), ("2021-01-03", 4, 3, 1, 0.75)]
    assert rows == _on_demand(db, "pass_rate", app_name)

    # New results on one day: only that day is recomputed.
    before = db.execute("SELECT max(id) FROM flywheel.refresh_log").fetchone()[0]  # type: ignore[index]
    tid = add_trace(db, app_name, created_at="2021-01-02 13:00+00", model="m", prompt_version="v1")
    add_result(db, tid, vid, "error")
    db.execute("CALL flywheel.refresh('pass_rate')")
    # (pg_cron may have run the scheduled refresh in between: count every refresh since)
    last = db.execute("SELECT max(days), sum(days) FROM flywheel.refresh_log WHERE metric = 'pass_rate' AND id > %s",
                      (before,)).fetchone()
    assert last == (1, 1)
    assert _pass_rate(db, app_name) == _on_demand(db, "pass_rate", app_name)
    assert [r[9] for r in _pass_rate(db, app_name)] == [0, 1, 0]  # the error counted, the rate unchanged

    # Updates and deletes mark their days too (a judge re-run, forget_user, retention).
    db.execute("UPDATE flywheel.validation_results SET status = 'pass' WHERE trace_id = %s", (traces[(1, 3)],))
    db.execute("DELETE FROM flywheel.validation_results WHERE trace_id = %s", (traces[(3, 0)],))
    db.execute("CALL flywheel.refresh('pass_rate')")
    assert _pass_rate(db, app_name) == _on_demand(db, "pass_rate", app_name)
    assert [(r[7], r[8]) for r in _pass_rate(db, app_name)] == [(2, 2), (2, 2), (2, 1)]

    db.execute("CALL flywheel.refresh('pass_rate', full_refresh => true)")
    assert _pass_rate(db, app_name) == _on_demand(db, "pass_rate", app_name)
    assert db.execute("SELECT name FROM flywheel.validators WHERE id = %s", (vid,)).fetchone() == (vname,)


def test_a_writer_still_in_flight_is_not_lost_by_a_concurrent_refresh(dsn: str, db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_validator(db)
    tid = add_trace(db, app_name, created_at="2021-02-01 12:00+00")
    db.execute("CALL flywheel.refresh('pass_rate')")
    with psycopg.connect(dsn) as writer:  # a transaction that commits after the refresh
        writer.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status)"
                       " VALUES (%s, %s, 1, 'pass')", (tid, vid))
        db.execute("CALL flywheel.refresh('pass_rate')")
        writer.commit()
    assert _pass_rate(db, app_name) == []
    db.execute("CALL flywheel.refresh('pass_rate')")
    assert [(r[6], r[7]) for r in _pass_rate(db, app_name)] == [(1, 1)]


def test_set_metric_mode_switches_a_builtin_and_keeps_its_rows(db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_validator(db)
    for status in ("pass", "pass", "fail"):
        add_result(db, add_trace(db, app_name, created_at="2021-03-01 10:00+00", model="m"), vid, status)
    db.execute("CALL flywheel.refresh('pass_rate')")
    expected = _pass_rate(db, app_name)
    assert len(expected) == 1
    try:
        for mode, kind in (("view", "v"), ("materialized", "m"), ("rollup", "v")):
            db.execute("SELECT flywheel.set_metric_mode('pass_rate', %s, '*/5 * * * *')", (mode,))
            assert _relkind(db, "pass_rate") == kind
            assert _pass_rate(db, app_name) == expected, mode
            if mode == "view":  # no marks pile up for a rollup that is not there
                add_result(db, add_trace(db, app_name, created_at="2021-03-02 10:00+00"), vid, "pass")
                assert db.execute("SELECT count(*) FROM flywheel._rollup_dirty_days WHERE metric = 'pass_rate'").fetchone() == (0,)
                expected = _pass_rate(db, app_name)
    finally:
        db.execute("SELECT flywheel.set_metric_mode('pass_rate', 'rollup', '*/5 * * * *')")
    with pytest.raises(psycopg.errors.RaiseException, match="has no incremental rollup"):
        db.execute("SELECT flywheel.set_metric_mode('latency', 'rollup')")


def test_readers_read_metrics_but_not_traces(db: psycopg.Connection, dsn: str) -> None:
    role = f"r_{uuid.uuid4().hex[:10]}"
    db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw' IN ROLE flywheel_reader")
    try:
        with psycopg.connect(make_conninfo(dsn, user=role, password="pw"), autocommit=True) as reader:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute("SELECT flywheel.create_metric('custom_nope', 'SELECT 1')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute("SELECT * FROM flywheel.traces")
    finally:
        db.execute(f"DROP ROLE {role}")


def test_readers_read_the_builtin_metric_views(db: psycopg.Connection, dsn: str) -> None:
    role = f"r_{uuid.uuid4().hex[:10]}"
    db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw' IN ROLE flywheel_reader")
    try:
        with psycopg.connect(make_conninfo(dsn, user=role, password="pw"), autocommit=True) as reader:
            reader.execute("SELECT * FROM flywheel.metric_pass_rate LIMIT 1").fetchall()
            reader.execute("SELECT * FROM flywheel.refresh_status").fetchall()
    finally:
        db.execute(f"DROP ROLE {role}")


@pytest.fixture
def database_without_pg_cron(db: psycopg.Connection, dsn: str) -> Iterator[str]:
    """Another database of the same server: pg_cron lives only in cron.database_name."""
    from dbflywheel.install import install

    name = f"nocron_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE DATABASE {name}")
    other = make_conninfo(dsn, dbname=name)
    try:
        install(other)
        yield other
    finally:
        db.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_without_pg_cron_the_refresh_loop_runs_the_schedules(database_without_pg_cron: str) -> None:
    from dbflywheel.refresh import run_due

    with psycopg.connect(database_without_pg_cron, autocommit=True) as conn:
        assert conn.execute("SELECT flywheel._pg_cron_installed()").fetchone() == (False,)
        conn.execute("SELECT flywheel.create_metric('custom_n', 'SELECT count(*) AS n FROM flywheel.traces', true, '* * * * *')")
        assert conn.execute("SELECT scheduled_by FROM flywheel.refresh_status WHERE metric = 'custom_n'").fetchone() == (
            "dbflywheel refresh --loop",)
        conn.execute("INSERT INTO flywheel.traces (input) VALUES ('x')")
        ran = {r.name for r in run_due(conn)}
        assert {"flywheel_metric_custom_n", "flywheel_metric_pass_rate"} <= ran
        assert conn.execute("SELECT n FROM flywheel.metric_custom_n").fetchone() == (1,)
        minute = "SELECT date_trunc('minute', clock_timestamp())"
        before = conn.execute(minute).fetchone()
        again = {r.name for r in run_due(conn)}
        if conn.execute(minute).fetchone() == before:  # nothing is due twice within a minute
            assert again == set()
        conn.execute("SELECT flywheel.create_metric('custom_m', 'SELECT 1 AS one', true, '* * * * *')")
    from dbflywheel.refresh import loop

    lines: list[str] = []
    loop(database_without_pg_cron, interval=0, echo=lines.append, iterations=2)
    assert "ran flywheel_metric_custom_m" in lines and all(line.startswith("ran flywheel_") for line in lines)
    loop("postgresql:///nowhere?host=/nonexistent", interval=0, echo=lines.append, iterations=1)
    assert lines[-1].startswith("refresh loop: cannot connect") and lines[-1].endswith("(retrying in 0 s)")
    env = {**os.environ, "DBFLYWHEEL_DSN": ""}
    proc = subprocess.run([CLI, "refresh", "--dsn", database_without_pg_cron, "--metric", "custom_n"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("custom_n: concurrent refresh, 1 rows")
    proc = subprocess.run([CLI, "refresh", "--dsn", database_without_pg_cron, "--metric", "nope"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip() == "dbflywheel: database error: refresh: no metric named nope"
    dbname = conninfo_to_dict(database_without_pg_cron)["dbname"]
    assert str(dbname).startswith("nocron_")
