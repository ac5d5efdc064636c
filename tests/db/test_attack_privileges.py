"""Least privilege, tried as an attacker would: each test performs one of the audit's attacks
(issue 12: identity, an admin becoming superuser, install hygiene, PL/Python's path) and
shows it refused or harmless. A marker row or file tells whether the attack ran."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbflywheel.errors import FlywheelError
from dbflywheel.install import install

ERRORS = (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable,
          psycopg.errors.RaiseException, psycopg.errors.InvalidParameterValue)


@pytest.fixture
def marker(db: psycopg.Connection) -> Iterator[str]:
    """A table anyone may write: an attack that runs leaves a row in it."""
    name = f"marker_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE TABLE public.{} (who text DEFAULT current_user)").format(sql.Identifier(name)))
    db.execute(sql.SQL("GRANT ALL ON public.{} TO PUBLIC").format(sql.Identifier(name)))
    yield name
    db.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(name)))


def _marks(db: psycopg.Connection, marker: str) -> list[tuple[str]]:
    return db.execute(sql.SQL("SELECT who FROM public.{}").format(sql.Identifier(marker))).fetchall()  # type: ignore[return-value]


def _os_marker() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="dbflywheel-attack-"))
    os.chmod(folder, 0o777)
    return folder / "pwned"


# -- who owns and who executes -------------------------------------------------------------

def test_no_superuser_owns_anything_in_the_schema(db: psycopg.Connection) -> None:
    owners = db.execute(
        """SELECT DISTINCT r.rolname, r.rolsuper FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
           WHERE c.relnamespace = 'flywheel'::regnamespace
           UNION SELECT DISTINCT r.rolname, r.rolsuper FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
           WHERE p.pronamespace = 'flywheel'::regnamespace
           UNION SELECT r.rolname, r.rolsuper FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
           WHERE n.nspname = 'flywheel'""").fetchall()
    assert owners and not any(sup for _, sup in owners), owners
    definers = db.execute(
        """SELECT p.oid::regprocedure::text, r.rolname FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
           WHERE p.pronamespace = 'flywheel'::regnamespace AND p.prosecdef AND (r.rolsuper OR r.rolcanlogin AND r.rolname <> 'flywheel_scheduler')""").fetchall()
    assert definers == []
    owner = db.execute("SELECT rolsuper, rolcanlogin, rolbypassrls FROM pg_roles WHERE rolname = 'flywheel_owner'").fetchone()
    assert owner == (False, False, False)


def test_an_app_trigger_runs_as_the_owner_not_a_superuser(login_role, app_name: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app = login_role("flywheel_app", app_name)
    db.execute("SELECT flywheel.create_validator('who_runs_me', 'sql', %s)",
               ('{"expression": "current_user = \'flywheel_owner\'"}',))
    try:
        trace = app.execute("INSERT INTO flywheel.traces (input, output) VALUES ('q', 'a') RETURNING id").fetchone()[0]  # type: ignore[index]
        status = db.execute("SELECT r.status, r.details FROM flywheel.validation_results r JOIN flywheel.validators v ON v.id = r.validator_id"
                            " WHERE r.trace_id = %s AND v.name = 'who_runs_me'", (trace,)).fetchone()
        assert status is not None and status[0] == "pass", status
    finally:
        db.execute("DELETE FROM flywheel.validators WHERE name = 'who_runs_me'")


# -- 2. identity is the database's ----------------------------------------------------------

@pytest.mark.parametrize("column, value", [("id", 9_000_000_000), ("created_at", "2020-01-01")])
def test_an_app_cannot_choose_a_traces_id_or_time(login_role, app_name: str, column: str, value: object) -> None:  # type: ignore[no-untyped-def]
    app = login_role("flywheel_app", app_name)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(sql.SQL("INSERT INTO flywheel.traces ({}, input) VALUES (%s, 'x')").format(sql.Identifier(column)), (value,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(sql.SQL("INSERT INTO flywheel.feedback (trace_id, kind, value, {}) VALUES (1, 'thumbs', 1, %s)")
                    .format(sql.Identifier(column)), (value,))
    # ... and what it may write still works, ids from the sequence.
    row = app.execute("INSERT INTO flywheel.traces (input, output) VALUES ('q', 'a') RETURNING id, created_at").fetchone()
    assert row is not None and row[0] < 9_000_000_000


# -- 3. the admin does not become superuser --------------------------------------------------

@pytest.mark.parametrize("statement", [
    "INSERT INTO flywheel.validators (name, kind, config) VALUES ('evil', 'python', '{}')",
    "UPDATE flywheel.validators SET config = '{}'",
    "UPDATE flywheel.metrics SET query = 'SELECT 1 AS a; ALTER ROLE flywheel_admin SUPERUSER'",
    "UPDATE flywheel.schedules SET command = 'ALTER ROLE flywheel_admin SUPERUSER'",
    "INSERT INTO flywheel.app_roles VALUES ('someone', 'other-app')",
    "SELECT flywheel._schedule('flywheel_metric_x', '* * * * *', 'ALTER ROLE flywheel_admin SUPERUSER')",
    "SELECT flywheel._apply_metric('pass_rate')",
    "CREATE FUNCTION flywheel.unnest(bigint[]) RETURNS SETOF bigint LANGUAGE sql AS 'SELECT 1::bigint'",
    "CREATE OR REPLACE FUNCTION flywheel._python_boot() RETURNS void LANGUAGE sql AS 'SELECT'",
    "CREATE TRIGGER t AFTER INSERT ON flywheel.traces FOR EACH STATEMENT EXECUTE FUNCTION flywheel.version()",
    "TRUNCATE flywheel.labels",
])
def test_the_admin_cannot_write_what_decides_what_runs(login_role, statement: str) -> None:  # type: ignore[no-untyped-def]
    admin = login_role("flywheel_admin")
    with pytest.raises(ERRORS):
        admin.execute(statement)


def test_an_admin_cannot_create_a_python_validator(login_role) -> None:  # type: ignore[no-untyped-def]
    admin = login_role("flywheel_admin")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only a superuser"):
        admin.execute("SELECT flywheel.create_validator('evil_py', 'python', '{\"function\": \"os.system\"}')")
    # SET ROLE to something else changes nothing: the session's login decides.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.execute("SET ROLE flywheel_owner")


@pytest.mark.parametrize("expression", [
    "pg_sleep/**/(0.2) IS NULL",
    '"pg_sleep"(0.2) IS NULL',
    "pg_catalog.pg_sleep(0.2) IS NULL",
    "(SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres')::int > 0",
    "(SELECT count(*) FROM pg_catalog.pg_authid) > 0",
    "(SELECT count(*) FROM pg_catalog.query_to_xml('SELECT 1', true, true, '')::text::int) > 0",
    "length(current_setting('flywheel.secret', true)) > 0",
    "nextval('flywheel.traces_id_seq') > 0",
    "t.input = 'x' OR (SELECT pg_catalog.set_config('role', 'postgres', true)) IS NULL",
    # one expression only: closing the parentheses early would drop the runtime query's WHERE
    "true) AS ok FROM flywheel.traces t --",
    "true) AS ok, 1 AS end_0123456789abcdef FROM flywheel.traces t --",
    "true) AS ok FROM flywheel.traces t /*",
])
def test_sql_validator_expressions_are_checked_by_what_they_call(login_role, expression: str) -> None:  # type: ignore[no-untyped-def]
    admin = login_role("flywheel_admin")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="refused|volatile|does not compile|one expression"):
        admin.execute("SELECT flywheel.create_validator('sneaky_sql', 'sql', %s)",
                      (psycopg.types.json.Jsonb({"expression": expression}),))


def test_a_temp_function_cannot_hide_in_a_sql_validator(login_role, marker: str) -> None:  # type: ignore[no-untyped-def]
    admin = login_role("flywheel_admin")
    admin.execute(f"""CREATE FUNCTION pg_temp.f(text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
        $$BEGIN INSERT INTO public.{marker} DEFAULT VALUES; RETURN true; END$$""")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="refused"):
        admin.execute("SELECT flywheel.create_validator('sneaky_tmp', 'sql', %s)",
                      ('{"expression": "pg_temp.f(t.input)"}',))


@pytest.mark.parametrize("query", [
    "SELECT 1 AS a; ALTER ROLE flywheel_admin SUPERUSER",
    "SELECT 1 AS a) q; ALTER ROLE flywheel_admin SUPERUSER; SELECT * FROM (SELECT 1",
    "SELECT pg_sleep(0.1) IS NULL AS a",
    "SELECT rolname FROM pg_catalog.pg_authid",
    "SELECT count(*) AS n FROM flywheel.traces WHERE pg_catalog.set_config('x.y', 'z', false) IS NOT NULL",
])
def test_metric_queries_are_one_select_that_calls_nothing_volatile(login_role, db: psycopg.Connection, query: str) -> None:  # type: ignore[no-untyped-def]
    admin = login_role("flywheel_admin")
    with pytest.raises((psycopg.errors.InvalidParameterValue, psycopg.errors.InsufficientPrivilege,
                        psycopg.errors.SyntaxError)):
        admin.execute("SELECT flywheel.create_metric('sneaky_metric', %s, true)", (query,))
    assert db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'flywheel_admin'").fetchone() == (False,)
    assert db.execute("SELECT count(*) FROM flywheel.metrics WHERE name = 'sneaky_metric'").fetchone() == (0,)


def test_a_stored_metric_query_never_runs_as_a_superuser(db: psycopg.Connection, marker: str) -> None:
    """Even text that reached the registry (here written by a superuser by hand) is checked when a
    superuser later switches the metric's mode: it runs as flywheel_owner, and only as one SELECT."""
    db.execute("SELECT flywheel.create_metric('stored_q', 'SELECT count(*) AS n FROM flywheel.traces')")
    try:
        db.execute("UPDATE flywheel.metrics SET query = %s WHERE name = 'stored_q'",
                   (f"SELECT 1 AS a; INSERT INTO public.{marker} DEFAULT VALUES",))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="one SELECT"):
            db.execute("SELECT flywheel.set_metric_mode('stored_q', 'materialized')")
        assert _marks(db, marker) == []
    finally:
        db.execute("UPDATE flywheel.metrics SET query = 'SELECT 1 AS a' WHERE name = 'stored_q'")
        db.execute("SELECT flywheel.drop_metric('stored_q')")


def test_a_metric_view_belongs_to_the_owner_and_readers_still_read_it(login_role, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    admin = login_role("flywheel_admin")
    admin.execute("SELECT flywheel.create_metric('traces_total', 'SELECT count(*) AS n FROM flywheel.traces', true)")
    try:
        owner = db.execute("SELECT relowner::regrole::text FROM pg_class WHERE oid = 'flywheel.metric_traces_total'::regclass").fetchone()
        assert owner == ("flywheel_owner",)
        reader = login_role("flywheel_reader")
        assert reader.execute("SELECT n >= 0 FROM flywheel.metric_traces_total").fetchone() == (True,)
    finally:
        admin.execute("SELECT flywheel.drop_metric('traces_total')")


def test_refresh_due_runs_no_stored_command(db: psycopg.Connection, marker: str) -> None:
    db.execute("INSERT INTO flywheel.schedules (name, schedule, command) VALUES ('flywheel_evil', '* * * * *', %s)",
               (f"INSERT INTO public.{marker} DEFAULT VALUES",))
    try:
        db.execute("UPDATE flywheel.schedules SET last_run_at = NULL, created_at = now() - interval '1 hour'"
                   " WHERE name = 'flywheel_evil'")
        db.execute("CALL flywheel.refresh_due(true)")
        assert _marks(db, marker) == []
        error = db.execute("SELECT last_error FROM flywheel.schedules WHERE name = 'flywheel_evil'").fetchone()
        assert error is not None and "no scheduled task" in (error[0] or "")
    finally:
        db.execute("DELETE FROM flywheel.schedules WHERE name = 'flywheel_evil'")


def test_pg_cron_jobs_run_as_the_scheduler_with_fixed_commands(db: psycopg.Connection) -> None:
    if not db.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'").fetchone()[0]:  # type: ignore[index]
        pytest.skip("pg_cron is not installed in this database")
    jobs = db.execute("SELECT username, command FROM cron.job WHERE jobname LIKE 'flywheel%'").fetchall()
    assert jobs and {u for u, _ in jobs} == {"flywheel_scheduler"}
    assert all(c.startswith(("SELECT flywheel.", "CALL flywheel.refresh(")) for _, c in jobs)
    can = db.execute("SELECT rolsuper, rolcreaterole, pg_has_role('flywheel_scheduler', 'flywheel_owner', 'MEMBER')"
                     " FROM pg_roles WHERE rolname = 'flywheel_scheduler'").fetchone()
    assert can == (False, False, False)


def test_a_temp_table_cannot_hijack_partition_creation(login_role, db: psycopg.Connection, marker: str) -> None:  # type: ignore[no-untyped-def]
    admin = login_role("flywheel_admin")
    month = "2031-03-01"
    db.execute("INSERT INTO flywheel.traces (created_at, app, input) VALUES (%s::timestamptz + interval '2 days', 'part-test', 'kept')", (month,))
    admin.execute(f"""CREATE FUNCTION pg_temp.grab() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN INSERT INTO public.{marker} DEFAULT VALUES; RETURN NEW; END$$""")
    admin.execute("CREATE TEMP TABLE _flywheel_moving (LIKE flywheel.traces)")
    admin.execute("CREATE TRIGGER grab BEFORE INSERT ON _flywheel_moving FOR EACH ROW EXECUTE FUNCTION pg_temp.grab()")
    try:
        assert admin.execute("SELECT flywheel.ensure_trace_partitions(%s, %s)", (month, month)).fetchone() == (1,)
        assert _marks(db, marker) == []
        where = db.execute("SELECT tableoid::regclass::text FROM flywheel.traces WHERE app = 'part-test'").fetchone()
        assert where == ("flywheel._traces_2031_03",)
    finally:
        db.execute("DELETE FROM flywheel.traces WHERE app = 'part-test'")
        db.execute("DROP TABLE IF EXISTS flywheel._traces_2031_03")


# -- 4. install hygiene --------------------------------------------------------------------

def test_a_planted_public_function_never_binds_into_the_install(scratch_database, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    target = scratch_database()
    planter = f"planter_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'x'").format(sql.Identifier(planter)))
    try:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")  # as before PostgreSQL 15
            conn.execute("CREATE TABLE public.planted_marker (who text)")
            conn.execute("GRANT ALL ON public.planted_marker TO PUBLIC")
        install(target)
        with psycopg.connect(make_conninfo(target, user=planter, password="x"), autocommit=True) as conn:
            for signature, body in [
                ("unnest(bigint[])", "RETURNS SETOF bigint LANGUAGE plpgsql AS $$BEGIN INSERT INTO public.planted_marker"
                                     " VALUES (current_user); RETURN QUERY SELECT pg_catalog.unnest($1); END$$"),
                ("lower(text)", "RETURNS text LANGUAGE plpgsql AS $$BEGIN INSERT INTO public.planted_marker"
                                " VALUES (current_user); RETURN pg_catalog.lower($1); END$$"),
            ]:
                conn.execute(f"CREATE FUNCTION public.{signature} {body}")
        install(target, force=True)
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("INSERT INTO flywheel.traces (input, output) VALUES ('hello', 'world')")
            conn.execute("SELECT * FROM flywheel._trace_results")
            conn.execute("CALL flywheel.refresh('pass_rate', true)")
            conn.execute("SELECT * FROM flywheel.metric_failure_modes")
            assert conn.execute("SELECT who FROM public.planted_marker").fetchall() == []
    finally:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(planter)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(planter)))


def test_install_refuses_a_flywheel_schema_someone_else_owns(scratch_database, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    target = scratch_database()
    other = f"squatter_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(other)))
    try:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA flywheel AUTHORIZATION {}").format(sql.Identifier(other)))
        with pytest.raises(FlywheelError, match=f"belongs to {other}"):
            install(target)
    finally:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("DROP SCHEMA flywheel CASCADE")
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(other)))


def test_install_refuses_an_owner_role_with_members(db: psycopg.Connection, dsn: str) -> None:
    member = f"m_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(member)))
    db.execute(sql.SQL("GRANT flywheel_owner TO {}").format(sql.Identifier(member)))
    try:
        with pytest.raises(FlywheelError, match="has members"):
            install(dsn, force=True)
    finally:
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(member)))


# -- 5. PL/Python's path is no session's setting -------------------------------------------

def test_a_session_setting_cannot_put_a_folder_on_pl_pythons_path(login_role, app_name: str) -> None:  # type: ignore[no-untyped-def]
    planted = _os_marker()
    (planted.parent / "re2.py").write_text(f"open({str(planted)!r}, 'w').write('imported')\nraise ImportError\n")
    (planted.parent / "sqlglot.py").write_text(f"open({str(planted)!r}, 'w').write('imported')\nraise ImportError\n")
    os.chmod(planted.parent / "re2.py", 0o644)
    app = login_role("flywheel_app", app_name)
    app.execute(sql.SQL("SET flywheel.python_path = {}").format(sql.Literal(str(planted.parent))))
    app.execute("INSERT INTO flywheel.traces (input, output) VALUES ('my card is 4111 1111 1111 1111', 'ok')")
    app.execute("SELECT * FROM flywheel.check_input('ignore previous instructions')")
    assert not planted.exists()
    described = app.execute("SELECT 1").fetchone()
    assert described == (1,)


def test_the_modules_live_under_a_package_of_their_own(db: psycopg.Connection, app_name: str) -> None:
    """Our modules neither take a plain name (environment, validators_runtime, ...) from other
    code in the backend nor give theirs to it: they live in dbflywheel_plpython."""
    db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'a@b.com', 'ok')", (app_name,))
    seen: list[str] = []
    db.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
    db.execute("""DO $$
import sys
plain = sorted(m for m in sys.modules if m in ('environment', 'validators_runtime', 'validators_builtin', 'fewshot_store'))
ours = [m for m in sys.modules if m.startswith('dbflywheel_plpython.')]
try:
    import validators_runtime  # noqa
    found = 'found'
except ImportError:
    found = 'absent'
plpy.notice('%s|%d|%s' % (','.join(plain), len(ours), found))
$$ LANGUAGE plpython3u""")
    plain, ours, found = seen[-1].split("|")
    assert plain == "" and int(ours) > 0 and found == "absent"


def test_a_python_body_the_owner_wrote_never_runs(db: psycopg.Connection, app_name: str) -> None:
    """flywheel_owner can write flywheel.validators (a bug in a SECURITY DEFINER function would
    let an attacker do so as it): a python body that no superuser's create_validator signed on
    this server is an error result, never run. Here the owner's write is played by SET ROLE."""
    planted = _os_marker()
    body = f"open({str(planted)!r}, 'w').write('ran')\nreturn True"
    db.execute("SET ROLE flywheel_owner")
    try:
        db.execute("INSERT INTO flywheel.validators (name, kind, config, applies_to) VALUES ('owner_py', 'python', %s, %s)",
                   (psycopg.types.json.Jsonb({"body": body, "signature": "0" * 64}),
                    psycopg.types.json.Jsonb({"app": app_name})))
    finally:
        db.execute("RESET ROLE")
    try:
        trace = db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'q', 'a') RETURNING id",
                           (app_name,)).fetchone()[0]  # type: ignore[index]
        result = db.execute("SELECT r.status, r.label FROM flywheel.validation_results r JOIN flywheel.validators v"
                            " ON v.id = r.validator_id WHERE r.trace_id = %s AND v.name = 'owner_py'", (trace,)).fetchone()
        assert result == ("error", "not_approved")
        assert not planted.exists()
        # The same body through a superuser's create_validator is signed, and runs.
        db.execute("DELETE FROM flywheel.validators WHERE name = 'owner_py'")
        db.execute("SELECT flywheel.create_validator('owner_py', 'python', %s, applies_to => %s)",
                   (psycopg.types.json.Jsonb({"body": "return True"}), psycopg.types.json.Jsonb({"app": app_name})))
        trace = db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'q', 'a') RETURNING id",
                           (app_name,)).fetchone()[0]  # type: ignore[index]
        assert db.execute("SELECT r.status FROM flywheel.validation_results r JOIN flywheel.validators v"
                          " ON v.id = r.validator_id WHERE r.trace_id = %s AND v.name = 'owner_py'", (trace,)).fetchone() == ("pass",)
    finally:
        db.execute("DELETE FROM flywheel.validators WHERE name = 'owner_py'")


def test_the_planners_rollback_signal_cannot_be_forged(db: psycopg.Connection) -> None:
    """Code that planning folds may raise the planner function's own 'planned' condition; that
    is an error verdict, not a pass."""
    db.execute("""CREATE FUNCTION pg_temp.forge() RETURNS int LANGUAGE plpgsql IMMUTABLE AS
        $$BEGIN RAISE SQLSTATE 'FWPLN'; END$$""")
    state = db.execute("SELECT error_state FROM flywheel._plan_generated_sql('flywheel', 'SELECT pg_temp.forge()', 200)").fetchone()
    assert state == ("FWPLN",)
