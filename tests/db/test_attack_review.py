"""Least privilege, second look (issue 12): variants the first round of attack tests did not
write down. Each test performs an attack as an application login, an admin or a reader and
shows it refused or harmless; a marker row (public.marker_*) or the catalog tells whether it ran.

The common root of what this file found: code an admin (or anyone) plants runs while PostgreSQL
*parses* or *plans* the admin's SQL (input functions of types with domain CHECKs, immutable
functions folded by the planner, a materialized view created WITH DATA), so every parse or plan
of admin text must happen first as a role with no rights, read-only and rolled back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb


@pytest.fixture
def marker(db: psycopg.Connection) -> Iterator[str]:
    """A table anyone may write: an attack that runs leaves a row in it (with who ran it)."""
    name = f"marker_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE TABLE public.{} (who text DEFAULT current_user)").format(sql.Identifier(name)))
    db.execute(sql.SQL("GRANT ALL ON public.{} TO PUBLIC").format(sql.Identifier(name)))
    db.execute(sql.SQL("CREATE SEQUENCE public.{}").format(sql.Identifier(name + "_owner")))
    db.execute(sql.SQL("GRANT ALL ON public.{} TO PUBLIC").format(sql.Identifier(name + "_owner")))
    yield name
    db.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(name)))
    db.execute(sql.SQL("DROP SEQUENCE public.{}").format(sql.Identifier(name + "_owner")))


def _marks(db: psycopg.Connection, marker: str) -> list[str]:
    """Who ran the planted code; 'flywheel_owner' also when its run was rolled back afterwards
    (a sequence is not transactional)."""
    who = [r[0] for r in db.execute(sql.SQL("SELECT who FROM public.{}").format(sql.Identifier(marker)))]
    called = db.execute(sql.SQL("SELECT is_called FROM public.{}").format(sql.Identifier(marker + "_owner"))).fetchone()
    return who + (["flywheel_owner"] if called and called[0] else [])


def _definers(db: psycopg.Connection) -> list[tuple[str, str, bool]]:
    return db.execute(  # type: ignore[return-value]
        """SELECT p.oid::regprocedure::text, p.proowner::regrole::text, p.prosecdef FROM pg_proc p
           WHERE p.pronamespace = 'flywheel'::regnamespace ORDER BY 1""").fetchall()


def _plant_runner(conn: psycopg.Connection, marker: str, extra: str = "") -> None:
    """pg_temp.run(): records who runs it (and does `extra`); pg_temp.fold(): IMMUTABLE, so the
    planner calls it while it folds constants; pg_temp.d: a domain whose CHECK calls run(), and
    pg_temp.c, a composite of it (its input function checks the domain while the text is parsed)."""
    conn.execute(f"""CREATE FUNCTION pg_temp.run() RETURNS boolean LANGUAGE plpgsql VOLATILE AS
        $$BEGIN
            IF current_user = 'flywheel_owner' THEN PERFORM pg_catalog.nextval('public.{marker}_owner'); END IF;
            INSERT INTO public.{marker} DEFAULT VALUES; {extra} RETURN true;
          END$$""")
    conn.execute("CREATE FUNCTION pg_temp.fold() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS"
                 " $$BEGIN RETURN pg_temp.run(); END$$")
    conn.execute("CREATE FUNCTION pg_temp.chk(integer) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS"
                 " $$BEGIN RETURN pg_temp.run(); END$$")
    conn.execute("CREATE DOMAIN pg_temp.d AS integer CHECK (pg_temp.chk(VALUE))")
    conn.execute("CREATE TYPE pg_temp.c AS (x pg_temp.d)")


# -- the checker's own function ------------------------------------------------------------

def test_code_planned_by_the_checker_cannot_change_the_checker(login_role, db: psycopg.Connection,  # type: ignore[no-untyped-def]
                                                               marker: str) -> None:
    """The planner folds immutable functions while _one_select_problem opens its cursor, as
    flywheel_sql_checker, which owns that function: it could make it SECURITY INVOKER (then the
    owner's create_metric plans the admin's functions as flywheel_owner) or grant it to PUBLIC."""
    admin = login_role("flywheel_admin")
    before = _definers(db)
    _plant_runner(admin, marker, extra="EXECUTE 'ALTER FUNCTION flywheel._one_select_problem(text, boolean)"
                                        " SECURITY INVOKER'; EXECUTE 'GRANT EXECUTE ON FUNCTION"
                                        " flywheel._one_select_problem(text, boolean) TO PUBLIC';")
    try:
        admin.execute("SELECT flywheel._one_select_problem('SELECT pg_temp.fold()')")
    except psycopg.Error:
        pass
    assert _definers(db) == before
    assert db.execute("SELECT has_function_privilege('public', 'flywheel._one_select_problem(text, boolean)',"
                      " 'EXECUTE')").fetchone() == (False,)
    assert "flywheel_owner" not in _marks(db, marker)


def test_an_admin_does_not_become_the_owner_through_the_checker(login_role, db: psycopg.Connection,  # type: ignore[no-untyped-def]
                                                                marker: str) -> None:
    """The whole chain: flip the checker to SECURITY INVOKER, then let create_metric plan an
    immutable function as flywheel_owner (which writes the validator registry: Python as postgres)."""
    admin = login_role("flywheel_admin")
    _plant_runner(admin, marker, extra="BEGIN EXECUTE 'ALTER FUNCTION flywheel._one_select_problem(text, boolean)"
                                        " SECURITY INVOKER'; EXCEPTION WHEN OTHERS THEN NULL; END;")
    for query in ("SELECT flywheel._one_select_problem('SELECT pg_temp.fold()')",
                  "SELECT flywheel.create_metric('review_owner', 'SELECT pg_temp.fold() AS a')"):
        try:
            admin.execute(query)
        except psycopg.Error:
            pass
    try:
        assert "flywheel_owner" not in _marks(db, marker)
        assert db.execute("SELECT prosecdef FROM pg_proc WHERE proname = '_one_select_problem'").fetchone() == (True,)
    finally:
        db.execute("DELETE FROM flywheel.metrics WHERE name = 'review_owner'")
        db.execute("DROP VIEW IF EXISTS flywheel.metric_review_owner")


# -- what runs while the admin's text is parsed or created ---------------------------------

@pytest.mark.parametrize("query", [
    # a line comment eats the WITH NO DATA that follows: the view would be filled at once
    "SELECT pg_temp.run() AS a --",
    "SELECT pg_temp.run() AS a; --",
    "SELECT pg_temp.run() AS a /* */ --",
    # input functions run at parse time: a composite literal checks its domain field
    "SELECT 1 AS a FROM (VALUES ('(1)'::pg_temp.c)) v(c)",
    "SELECT ('(1)'::pg_temp.c).x AS a",
    "SELECT cardinality('{1}'::pg_temp.d[]) AS a",
    "SELECT t.x AS a FROM pg_catalog.json_to_record('{\"x\": 1}') AS t(x pg_temp.d)",
    # planning folds an immutable function
    "SELECT pg_temp.fold() AS a",
])
@pytest.mark.parametrize("materialized", [True, False])
def test_a_metric_query_runs_nothing_as_the_owner(login_role, db: psycopg.Connection, marker: str,  # type: ignore[no-untyped-def]
                                                  query: str, materialized: bool) -> None:
    admin = login_role("flywheel_admin")
    _plant_runner(admin, marker)
    name = f"review_{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(psycopg.Error):
            admin.execute("SELECT flywheel.create_metric(%s, %s, %s)", (name, query, materialized))
        assert "flywheel_owner" not in _marks(db, marker)
        assert db.execute("SELECT count(*) FROM flywheel.metrics WHERE name = %s", (name,)).fetchone() == (0,)
    finally:
        db.execute("DELETE FROM flywheel.metrics WHERE name = %s", (name,))
        for kind in ("VIEW", "MATERIALIZED VIEW"):
            db.execute(sql.SQL("DROP {} IF EXISTS flywheel.{}").format(sql.SQL(kind), sql.Identifier("metric_" + name)))


def test_a_materialized_metric_is_not_filled_before_it_is_checked(login_role, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    """setval is not transactional: had the query run as the owner (a comment eating WITH NO DATA),
    the trace sequence would stay reset after the check refused the metric."""
    admin = login_role("flywheel_admin")
    db.execute("INSERT INTO flywheel.traces (input, output) VALUES ('review seq', 'x'), ('review seq', 'y')")
    before = db.execute("SELECT last_value FROM flywheel.traces_id_seq").fetchone()
    with pytest.raises(psycopg.Error):
        admin.execute("SELECT flywheel.create_metric('review_seq', %s, true)",
                      ("SELECT pg_catalog.setval('flywheel.traces_id_seq'::regclass, 1) AS a --",))
    assert db.execute("SELECT last_value FROM flywheel.traces_id_seq").fetchone() == before


@pytest.mark.parametrize("expression", [
    "('(1)'::pg_temp.c).x = 1",
    "cardinality('{1}'::pg_temp.d[]) = 1",
    "pg_temp.fold()",
    "(SELECT t2.x FROM pg_catalog.json_to_record('{\"x\": 1}') AS t2(x pg_temp.d)) = 1",
])
def test_a_sql_validator_expression_runs_nothing_as_the_owner(login_role, db: psycopg.Connection, marker: str,  # type: ignore[no-untyped-def]
                                                              expression: str) -> None:
    admin = login_role("flywheel_admin")
    _plant_runner(admin, marker)
    with pytest.raises(psycopg.Error):
        admin.execute("SELECT flywheel.create_validator('review_sql', 'sql', %s)", (Jsonb({"expression": expression}),))
    assert "flywheel_owner" not in _marks(db, marker)
    assert db.execute("SELECT count(*) FROM flywheel.validators WHERE name = 'review_sql'").fetchone() == (0,)


def test_the_checks_own_rollback_signal_cannot_be_forged(login_role, db: psycopg.Connection, marker: str) -> None:  # type: ignore[no-untyped-def]
    """The checks leave their rolled-back blocks with a private SQLSTATE; code the query runs must
    not raise that same state to make the check answer 'nothing found'."""
    admin = login_role("flywheel_admin")
    admin.execute("""CREATE FUNCTION pg_temp.forge(integer) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
        $$BEGIN RAISE SQLSTATE 'FWCHK'; END$$""")
    admin.execute("CREATE DOMAIN pg_temp.fd AS integer CHECK (pg_temp.forge(VALUE))")
    admin.execute("CREATE TYPE pg_temp.fc AS (x pg_temp.fd)")
    problem = admin.execute("SELECT flywheel._unsafe_calls(%s, ARRAY['flywheel'])",
                            ("SELECT ('(1)'::pg_temp.fc).x AS a",)).fetchone()
    assert problem is not None and problem[0] is not None


# -- functions that take a caller's name -----------------------------------------------------

@pytest.mark.parametrize("caller", ["postgres", "flywheel_admin", "flywheel_owner", "flywheel_app", "pg_database_owner"])
def test_an_app_cannot_name_another_caller(login_role, db: psycopg.Connection, app_name: str, caller: str) -> None:  # type: ignore[no-untyped-def]
    other = login_role("flywheel_app", app=app_name + "-other")
    other.execute("INSERT INTO flywheel.traces (input, output) VALUES ('review secret question', 'review secret answer')")
    app = login_role("flywheel_app", app=app_name)
    rows = app.execute("SELECT output FROM flywheel._cache_lookup('review secret question', 0.97, %s)", (caller,)).fetchall()
    assert ("review secret answer",) not in rows
    rows = app.execute("SELECT output FROM flywheel._few_shot(flywheel._embed_query('review secret question'),"
                       " 5, NULL, NULL, '30 days', %s)", (caller,)).fetchall()
    assert ("review secret answer",) not in rows


def test_set_role_to_the_group_opens_no_app(login_role, app_name: str) -> None:  # type: ignore[no-untyped-def]
    other = login_role("flywheel_app", app=app_name + "-other")
    other.execute("INSERT INTO flywheel.traces (input, output) VALUES ('review q2', 'review a2')")
    app = login_role("flywheel_app", app=app_name)
    app.execute("SET ROLE flywheel_app")
    assert app.execute("SELECT count(*) FROM flywheel.traces WHERE input = 'review q2'").fetchone() == (0,)
    assert app.execute("SELECT count(*) FROM flywheel.cache_lookup('review q2')").fetchone() == (0,)


# -- the app, reader and admin against things the extension owns --------------------------

@pytest.mark.parametrize("group", ["flywheel_app", "flywheel_reader", "flywheel_admin"])
@pytest.mark.parametrize("statement", [
    "ALTER FUNCTION flywheel._one_select_problem(text, boolean) SECURITY INVOKER",
    "ALTER FUNCTION flywheel._plan_generated_sql(text, text, integer) SECURITY INVOKER",
    "ALTER FUNCTION flywheel._cron_schedule(text, text) SECURITY INVOKER",
    "SET ROLE flywheel_sql_checker",
    "SET ROLE flywheel_scheduler",
    "SET SESSION AUTHORIZATION flywheel_owner",
    "CREATE TRIGGER t BEFORE INSERT ON flywheel.labels FOR EACH ROW EXECUTE FUNCTION flywheel._examples_follow()",
    "ALTER TABLE flywheel.labels ADD CONSTRAINT x CHECK (true)",
    "CREATE INDEX ON flywheel.labels ((1))",
    "CREATE RULE r AS ON INSERT TO flywheel.labels DO ALSO NOTIFY x",
    "COMMENT ON TABLE flywheel.labels IS 'x'",
    "SELECT pg_catalog.lo_import('/etc/passwd')",
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "CREATE FUNCTION pg_temp.p() RETURNS int LANGUAGE plpython3u AS 'return 1'",
    "SELECT pg_catalog.setval('flywheel.traces_id_seq', 1)",
])
def test_no_role_alters_what_the_extension_owns(login_role, app_name: str, group: str, statement: str) -> None:  # type: ignore[no-untyped-def]
    conn = login_role(group, app=app_name if group == "flywheel_app" else None)
    with pytest.raises(psycopg.Error):
        conn.execute(statement)


def test_the_planner_role_stays_read_only(login_role, db: psycopg.Connection, marker: str) -> None:  # type: ignore[no-untyped-def]
    """Called directly by an admin, _plan_generated_sql plans as flywheel_sql_planner: what it
    folds can neither alter that function nor write."""
    admin = login_role("flywheel_admin")
    before = _definers(db)
    _plant_runner(admin, marker, extra="EXECUTE 'ALTER FUNCTION flywheel._plan_generated_sql(text, text, integer)"
                                        " SECURITY INVOKER';")
    admin.execute("SELECT * FROM flywheel._plan_generated_sql('flywheel', 'SELECT pg_temp.fold()', 100)")
    assert _definers(db) == before
    assert _marks(db, marker) == []
