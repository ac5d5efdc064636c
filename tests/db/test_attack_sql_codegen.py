"""Attacks on the sql_codegen validator from an application login (issue 12, least privilege).

The generated SQL is untrusted text that the insert trigger plans with EXPLAIN. Planning evaluates
IMMUTABLE functions (and STABLE ones for estimates), so whatever the text reaches must run with
no more rights than the planner role's: it may read the configured schema and nothing else. The
payloads write a marker file with COPY ... TO PROGRAM, which only a superuser (or
pg_execute_server_program) may run: the file must never appear.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

Login = Callable[..., psycopg.Connection]


@pytest.fixture
def shop(db: psycopg.Connection, app_name: str) -> Iterator[dict[str, str]]:
    """A schema with one table, granted to the planner role as a DBA would, and a sql_codegen
    validator on the app's codegen traces."""
    schema = f"shop_{uuid.uuid4().hex[:8]}"
    validator = f"codegen_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(schema)
    db.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    db.execute(sql.SQL("CREATE TABLE {}.orders (id integer PRIMARY KEY, total numeric)").format(ident))
    db.execute(sql.SQL("INSERT INTO {}.orders VALUES (1, 10), (2, 20)").format(ident))
    db.execute(sql.SQL("""DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'flywheel_sql_planner') THEN
                            GRANT USAGE ON SCHEMA {s} TO flywheel_sql_planner;
                            GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO flywheel_sql_planner; END IF; END $$""")
               .format(s=ident))
    db.execute("SELECT flywheel.create_validator(%s, 'sql_codegen', %s, applies_to => %s)",
               (validator, Jsonb({"schema": schema}), Jsonb({"app": app_name, "node_type": "codegen"})))
    try:
        yield {"schema": schema, "validator": validator, "app": app_name}
    finally:
        db.execute("DELETE FROM flywheel.validators WHERE name = %s", (validator,))
        db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))


@pytest.fixture
def marker() -> Iterator[Path]:
    """A path in a directory the postgres OS user may write to; the file must never appear."""
    folder = Path(tempfile.mkdtemp(prefix="dbflywheel-attack-"))
    folder.chmod(0o777)
    path = folder / "pwned.txt"
    try:
        yield path
    finally:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


def _prepare(app: psycopg.Connection, marker: Path) -> None:
    """The audit's payload: a VOLATILE temp function that runs a program, behind an IMMUTABLE one
    that the planner folds."""
    command = f"id > {marker}"
    inner = f"COPY (SELECT current_user) TO PROGRAM {_literal(command)}"
    app.execute(f"""CREATE FUNCTION pg_temp.i() RETURNS int LANGUAGE plpgsql VOLATILE AS
                    $$BEGIN EXECUTE {_literal(inner)}; RETURN 1; END$$""")
    app.execute("CREATE FUNCTION pg_temp.p() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RETURN pg_temp.i(); END$$")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _verdict(db: psycopg.Connection, shop: dict[str, str], trace_id: int) -> tuple[str, str | None, dict[str, Any]]:
    row = db.execute("SELECT r.status, r.label, r.details FROM flywheel.validation_results r"
                     " JOIN flywheel.validators v ON v.id = r.validator_id WHERE v.name = %s AND r.trace_id = %s",
                     (shop["validator"], trace_id)).fetchone()
    assert row is not None, "the validator gave no verdict"
    return row[0], row[1], row[2]


def _insert(app: psycopg.Connection, generated: str) -> int:
    row = app.execute("INSERT INTO flywheel.traces (node_type, input, output) VALUES ('codegen', 'q', %s) RETURNING id",
                      (generated,)).fetchone()
    assert row is not None
    return int(row[0])


def test_the_audit_payload_runs_no_program(db: psycopg.Connection, login_role: Login, shop: dict[str, str],
                                           marker: Path) -> None:
    app = login_role("flywheel_app", shop["app"])
    _prepare(app, marker)
    trace_id = _insert(app, "SELECT id FROM orders WHERE id = pg_temp.p()")
    assert not marker.exists()
    status, label, details = _verdict(db, shop, trace_id)
    assert status == "fail" and "pg_temp" in details["reason"]


@pytest.mark.parametrize("generated", [
    'SELECT id FROM orders WHERE id = "pg_temp"."p"()',
    'SELECT id FROM orders WHERE id = "PG_TEMP".p()',
    "SELECT * FROM pg_temp.p()",
    "SELECT id FROM orders WHERE id = (SELECT pg_temp.p())",
    "WITH x AS (SELECT pg_temp.p() AS v) SELECT id FROM orders, x WHERE id = x.v",
    "SELECT id FROM orders WHERE id = pg_catalog.abs(pg_temp.p())",
    "SELECT id FROM orders ORDER BY (pg_temp.p())",
    "SELECT id FROM orders WHERE id = ANY (ARRAY[pg_temp.p()])",
    "VALUES (pg_temp.p())",
])
def test_variants_of_the_payload_run_no_program(db: psycopg.Connection, login_role: Login, shop: dict[str, str],
                                                marker: Path, generated: str) -> None:
    app = login_role("flywheel_app", shop["app"])
    _prepare(app, marker)
    trace_id = _insert(app, generated)
    assert not marker.exists()
    assert _verdict(db, shop, trace_id)[0] != "pass"


def test_a_temp_view_named_like_a_table_is_not_what_is_planned(db: psycopg.Connection, login_role: Login,
                                                               shop: dict[str, str], marker: Path) -> None:
    # A temporary relation comes first in the search path unless pg_temp is placed: the view
    # would shadow the schema's table, and planning it folds the function.
    app = login_role("flywheel_app", shop["app"])
    _prepare(app, marker)
    app.execute("CREATE TEMP VIEW orders AS SELECT pg_temp.p() AS id, 1::numeric AS total")
    app.execute("CREATE TEMP TABLE o2 AS SELECT 1 AS id")
    trace_id = _insert(app, "SELECT id FROM orders WHERE id = 1")
    assert not marker.exists()
    assert _verdict(db, shop, trace_id)[0] == "pass"  # the schema's orders, which is fine SQL
    trace_id = _insert(app, "SELECT id FROM o2")  # a temp table the schema does not have
    assert not marker.exists()
    assert _verdict(db, shop, trace_id)[:2] == ("fail", "unknown_table")


def test_an_operator_or_a_cast_reaching_a_temp_function_runs_no_program(
        db: psycopg.Connection, login_role: Login, shop: dict[str, str], marker: Path) -> None:
    app = login_role("flywheel_app", shop["app"])
    _prepare(app, marker)
    app.execute("CREATE FUNCTION pg_temp.op(int, int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS"
                " $$BEGIN RETURN pg_temp.i() = $1; END$$")
    app.execute("CREATE OPERATOR pg_temp.=== (FUNCTION = pg_temp.op, LEFTARG = int, RIGHTARG = int)")
    app.execute("CREATE TEMP TABLE boxed (v int)")
    app.execute("CREATE FUNCTION pg_temp.to_boxed(text) RETURNS pg_temp.boxed LANGUAGE plpgsql IMMUTABLE AS"
                " $$BEGIN RETURN ROW(pg_temp.i()); END$$")
    casts = True
    try:
        app.execute("CREATE CAST (text AS pg_temp.boxed) WITH FUNCTION pg_temp.to_boxed(text)")
    except psycopg.errors.Error:
        casts = False
    attempts = ["SELECT id FROM orders WHERE 1 OPERATOR(pg_temp.===) 1",
                "SELECT id FROM orders WHERE id = ('x'::pg_temp.boxed).v",
                "SELECT id FROM orders WHERE id = (CAST('x' AS boxed)).v",
                "SELECT id FROM orders WHERE id = ('x'::boxed).v"]
    for generated in attempts:
        trace_id = _insert(app, generated)
        assert not marker.exists(), generated
        assert _verdict(db, shop, trace_id)[0] != "pass", generated
    if casts:
        app.execute("DROP CAST (text AS pg_temp.boxed)")


def test_functions_outside_the_allowlist_or_the_schema_are_refused_before_planning(
        db: psycopg.Connection, login_role: Login, shop: dict[str, str]) -> None:
    app = login_role("flywheel_app", shop["app"])
    for generated, refused in [
        ("SELECT pg_sleep(5)", "pg_sleep"),
        ('SELECT "pg_sleep"(5)', "pg_sleep"),
        ("SELECT id FROM orders WHERE id = length(pg_read_file('/etc/passwd'))", "pg_read_file"),
        ("SELECT current_setting('data_directory')", "current_setting"),
        ("SELECT set_config('search_path', 'public', true)", "set_config"),
        ("SELECT query_to_xml('select 1', true, true, '')", "query_to_xml"),
        ("SELECT lo_import('/etc/passwd')", "lo_import"),
        ("SELECT pg_advisory_lock(1)", "pg_advisory_lock"),
        ("SELECT public.anything(1)", "public"),
        ("SELECT id FROM flywheel.traces", "flywheel"),
        ("SELECT id FROM orders JOIN pg_catalog.pg_authid ON true", "pg_catalog"),
    ]:
        started = time.monotonic()
        trace_id = _insert(app, generated)
        assert time.monotonic() - started < 4, generated
        status, _, details = _verdict(db, shop, trace_id)
        assert status == "fail" and refused in details["reason"], (generated, details)
    # Ordinary read-only built-ins still pass, qualified by pg_catalog or not.
    for generated in ["SELECT count(*), sum(total), round(avg(total), 2), max(id) FROM orders",
                      "SELECT lower('A'), upper('a'), coalesce(NULL, 1), pg_catalog.abs(-1), date_trunc('month', now())",
                      "SELECT id, row_number() OVER (ORDER BY total DESC) FROM orders WHERE total::int > 1"]:
        trace_id = _insert(app, generated)
        assert _verdict(db, shop, trace_id)[0] == "pass", generated


def test_a_function_in_a_writable_schema_is_refused(db: psycopg.Connection, login_role: Login, shop: dict[str, str],
                                                   marker: Path) -> None:
    app = login_role("flywheel_app", shop["app"])
    _prepare(app, marker)
    writable = f"w_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(writable)))
    try:
        db.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO PUBLIC").format(sql.Identifier(writable)))
        app.execute(sql.SQL("CREATE FUNCTION {}.p() RETURNS int LANGUAGE plpgsql IMMUTABLE AS"
                            " $$BEGIN RETURN pg_temp.i(); END$$").format(sql.Identifier(writable)))
        app.execute(sql.SQL("CREATE FUNCTION {}.lower(integer) RETURNS int LANGUAGE plpgsql IMMUTABLE AS"
                            " $$BEGIN RETURN pg_temp.i(); END$$").format(sql.Identifier(writable)))
        app.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(writable)))
        for generated in [f"SELECT id FROM orders WHERE id = {writable}.p()", "SELECT id FROM orders WHERE id = p()",
                          "SELECT id FROM orders WHERE id = lower(1)"]:
            trace_id = _insert(app, generated)
            assert not marker.exists(), generated
            assert _verdict(db, shop, trace_id)[0] != "pass", generated
    finally:
        db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(writable)))


def test_two_megabytes_of_sql_are_refused_by_the_size_cap(db: psycopg.Connection, login_role: Login,
                                                          shop: dict[str, str]) -> None:
    app = login_role("flywheel_app", shop["app"])
    huge = "SELECT id FROM orders WHERE " + " OR ".join(f"id = {i}" for i in range(200_000))
    assert len(huge) > 2_000_000
    trace_id = _insert(app, huge)
    status, label, details = _verdict(db, shop, trace_id)
    assert (status, label) == ("fail", "too_long") and "characters" in details["reason"]


def _wait_long_for_locks(db: psycopg.Connection, shop: dict[str, str]) -> None:
    db.execute("SELECT flywheel.create_validator(%s, 'sql_codegen', %s, applies_to => %s)",
               (shop["validator"], Jsonb({"schema": shop["schema"], "lock_timeout_ms": 5000}),
                Jsonb({"app": shop["app"], "node_type": "codegen"})))


def test_statement_timeout_is_honoured_while_planning(db: psycopg.Connection, dsn: str, login_role: Login,
                                                      shop: dict[str, str]) -> None:
    # The generated SQL waits for a lock the planner needs; the application's statement_timeout
    # must cancel its INSERT, not become a verdict.
    app = login_role("flywheel_app", shop["app"])
    held, released = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(dsn) as holder:
            holder.execute(sql.SQL("LOCK TABLE {}.orders IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(shop["schema"])))
            held.set()
            released.wait(20)

    _wait_long_for_locks(db, shop)
    locker = threading.Thread(target=hold)
    locker.start()
    try:
        assert held.wait(20)
        app.execute("SET statement_timeout = '300ms'")
        before = app.execute("SELECT count(*) FROM flywheel.traces").fetchone()
        with pytest.raises(psycopg.errors.QueryCanceled):
            _insert(app, "SELECT id FROM orders")
        app.execute("RESET statement_timeout")
        assert app.execute("SELECT count(*) FROM flywheel.traces").fetchone() == before
    finally:
        released.set()
        locker.join()


def test_a_cancel_during_planning_cancels_the_insert(db: psycopg.Connection, dsn: str, login_role: Login,
                                                     shop: dict[str, str]) -> None:
    app = login_role("flywheel_app", shop["app"])
    pid = app.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    held, released = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(dsn) as holder:
            holder.execute(sql.SQL("LOCK TABLE {}.orders IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(shop["schema"])))
            held.set()
            released.wait(20)

    def cancel() -> None:
        time.sleep(1.0)
        db.execute("SELECT pg_cancel_backend(%s)", (pid,))

    _wait_long_for_locks(db, shop)
    threads = [threading.Thread(target=hold), threading.Thread(target=cancel)]
    threads[0].start()
    try:
        assert held.wait(20)
        threads[1].start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            _insert(app, "SELECT id FROM orders")
    finally:
        released.set()
        for t in threads:
            if t.is_alive() or t.ident:
                t.join()


def test_the_planner_function_is_not_for_applications(login_role: Login, shop: dict[str, str]) -> None:
    app = login_role("flywheel_app", shop["app"])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT * FROM flywheel._plan_generated_sql(%s, 'SELECT 1', 200)", (shop["schema"],))



def test_a_schema_the_planner_cannot_read_is_refused_with_the_grant_to_make(db: psycopg.Connection, app_name: str,
                                                                           login_role: Login) -> None:
    schema = f"ungranted_{uuid.uuid4().hex[:8]}"
    name = f"codegen_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(schema)
    db.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    db.execute(sql.SQL("CREATE TABLE {}.orders (id integer)").format(ident))
    try:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=f"GRANT USAGE ON SCHEMA \"{schema}\""):
            db.execute("SELECT flywheel.create_validator(%s, 'sql_codegen', %s)", (name, Jsonb({"schema": schema})))
        db.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO flywheel_sql_planner").format(ident))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="cannot read table"):
            db.execute("SELECT flywheel.create_validator(%s, 'sql_codegen', %s)", (name, Jsonb({"schema": schema})))
        db.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO flywheel_sql_planner").format(ident))
        db.execute("SELECT flywheel.create_validator(%s, 'sql_codegen', %s, applies_to => %s)",
                   (name, Jsonb({"schema": schema}), Jsonb({"app": app_name})))
        # A table added later without the grant: an error naming the grant, not a verdict on the SQL.
        db.execute(sql.SQL("CREATE TABLE {}.later (id integer)").format(ident))
        app = login_role("flywheel_app", app_name)
        trace_id = _insert(app, "SELECT id FROM later")
        status, label, details = _verdict(db, {"validator": name}, trace_id)
        assert (status, label) == ("error", "planner_not_granted")
        assert "GRANT SELECT ON ALL TABLES" in details["hint"]
    finally:
        db.execute("DELETE FROM flywheel.validators WHERE name = %s", (name,))
        db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))


def test_what_slips_past_the_checks_runs_as_the_planner_role_even_for_a_superuser(
        db: psycopg.Connection, shop: dict[str, str], marker: Path) -> None:
    # The checks before planning are one layer; the planner role is the other. Called straight
    # from a superuser session (the insert trigger's owner before flywheel_owner), the function
    # folded at plan time still runs as flywheel_sql_planner, which may not run programs.
    db.execute("BEGIN")
    try:
        _prepare(db, marker)
        db.execute("CREATE FUNCTION pg_temp.who() RETURNS int LANGUAGE plpgsql IMMUTABLE AS"
                   " $$BEGIN RAISE EXCEPTION 'ran as %', current_user; END$$")
        row = db.execute("SELECT * FROM flywheel._plan_generated_sql(%s, 'SELECT id FROM orders WHERE id = pg_temp.p()',"
                         " 200)", (shop["schema"],)).fetchone()
        assert not marker.exists()
        assert row is not None and row[0] == "42501" and "pg_execute_server_program" in row[1]
        row = db.execute("SELECT * FROM flywheel._plan_generated_sql(%s, 'SELECT 1 WHERE pg_temp.who() = 1', 200)",
                         (shop["schema"],)).fetchone()
        assert row == ("P0001", "ran as flywheel_sql_planner")
        # Nothing it set outlives it.
        assert db.execute("SELECT current_user = session_user, current_setting('transaction_read_only'),"
                          " current_setting('search_path')").fetchone() == (True, "off", '"$user", public')
    finally:
        db.execute("ROLLBACK")
