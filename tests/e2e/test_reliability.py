"""The reliability suite: load with and without faults (tests/reliability_load.py), generated
validator configs and generated SQL (hypothesis), and what an application role can reach.

Fast versions run in `make test`; the long ones (`@pytest.mark.slow`) in `make soak`. Each load
test writes its counts to tests/reliability_counts.json, which
scripts/reliability_report.py renders into BENCHMARKS.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from fake_openai import FakeOpenAI
from reliability_load import check_load, record, run_load

OPENAI_JUDGE = {"provider": "openai", "model": "fake-judge", "max_attempts": 3, "retry_base_seconds": 0.05,
                "timeout_seconds": 0.5}


def _clean_load(dsn: str, app: str, seconds: float, section: str) -> None:
    out = run_load(dsn, app, seconds=seconds, writers=4, workers=2)
    with psycopg.connect(dsn, autocommit=True) as db:
        counts = check_load(db, app, out)
    assert out["worker_exits"] == [0, 0], out["worker_stderr"]
    record(section, counts)


def _faulty_load(dsn: str, app: str, cluster: Any, seconds: float, fault_every: float, section: str) -> None:
    with FakeOpenAI(delay=0.02, slow_seconds=1.0) as server:
        out = run_load(dsn, app, seconds=seconds, writers=4, workers=2, faults=True, cluster=cluster,
                       judge={**OPENAI_JUDGE, "base_url": server.url}, fault_every=fault_every)
        failures = dict(server.failures)
    with psycopg.connect(dsn, autocommit=True) as db:
        counts = check_load(db, app, out, dead_marker="FAIL:500*99")
    exits = out["worker_exits"]
    assert exits.count(-9) == out["worker_kills"] >= 1 and exits.count(0) == len(exits) - out["worker_kills"], \
        out["worker_stderr"]
    assert counts["validator_errors"] > 0 and counts["dead_letters"] > 0
    assert {"500", "malformed", "notverdict", "timeout", "429"} <= set(failures), failures
    if cluster is not None:
        assert counts["postgres_restarts"] >= 1 and counts["writer_reconnects"] > 0
    record(section, counts | {"provider_failures": sum(failures.values())})


def test_load_adds_up(dsn: str, app_name: str) -> None:
    _clean_load(dsn, app_name, 12, "load")


def test_load_adds_up_through_faults(dsn: str, app_name: str, cluster: Any) -> None:
    _faulty_load(dsn, app_name, cluster, 21, 7, "load with faults")


@pytest.mark.slow
def test_soak_load(dsn: str, app_name: str) -> None:
    _clean_load(dsn, app_name, 180, "soak")


@pytest.mark.slow
def test_soak_load_through_faults(dsn: str, app_name: str, cluster: Any) -> None:
    _faulty_load(dsn, app_name, cluster, 240, 20, "soak with faults")


# --- security: what an application role can reach -------------------------------------------

@pytest.fixture
def app_login(db: psycopg.Connection, dsn: str) -> Iterator[Callable[[str], tuple[str, psycopg.Connection]]]:
    made: list[tuple[str, psycopg.Connection]] = []

    def make(app: str) -> tuple[str, psycopg.Connection]:
        name, password = f"r_{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
        db.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        db.execute("SELECT flywheel.grant_app(%s, %s)", (name, app))
        conn = psycopg.connect(make_conninfo(dsn, user=name, password=password), autocommit=True)
        made.append((name, conn))
        return name, conn

    yield make
    for name, conn in made:
        conn.close()
        db.execute("DELETE FROM flywheel.app_roles WHERE role_name = %s", (name,))
        db.execute(f"DROP OWNED BY {name}")
        db.execute(f"DROP ROLE {name}")


@pytest.fixture
def two_apps(db: psycopg.Connection, app_login: Any, app_name: str) -> dict[str, Any]:
    """alpha (a login of app A, the one probing) and everything app B and the 'default' app
    have: traces, feedback, a correction and a label (so examples), a cache-safe answer."""
    alpha_role, alpha = app_login(app_name + "-a")
    beta_role, beta = app_login(app_name + "-b")
    secret = f"secret question {uuid.uuid4().hex[:6]}: how do I reset my password?"
    others = {}
    for app in (app_name + "-b", "default"):
        ids = [r[0] for r in db.execute(
            "INSERT INTO flywheel.traces (app, input, output) VALUES (%s, %s, 'their answer'), (%s, %s, 'their other')"
            " RETURNING id", (app, secret, app, secret + " again")).fetchall()]
        db.execute("SELECT flywheel.record_feedback(%s, 'correction', corrected_output => 'their correction')", (ids[0],))
        db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, '', 'quality', 'pass')",
                   (ids[1],))
        others[app] = ids
    (own,) = [r[0] for r in alpha.execute(
        "INSERT INTO flywheel.traces (input, output) VALUES ('my own question', 'my answer') RETURNING id").fetchall()]
    alpha.execute("SELECT flywheel.record_feedback(%s, 'correction', corrected_output => 'mine')", (own,))
    other_ids = [i for ids in others.values() for i in ids]
    return {"alpha": alpha, "alpha_role": alpha_role, "beta": beta, "beta_role": beta_role, "secret": secret,
            "others": other_ids, "own": own, "uids": [str(r[0]) for r in db.execute(
                "SELECT uid FROM flywheel.traces WHERE id = ANY(%s)", (other_ids,))]}


def _as_roles(alpha: psycopg.Connection, roles: list[str]) -> Iterator[str]:
    """The probe again under every role alpha may SET ROLE to (its group roles included)."""
    for role in roles:
        try:
            alpha.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        except psycopg.errors.InsufficientPrivilege:
            continue
        try:
            yield role
        finally:
            alpha.execute("RESET ROLE")


def test_no_public_function_returns_another_apps_rows(db: psycopg.Connection, two_apps: dict[str, Any]) -> None:
    alpha, secret, others = two_apps["alpha"], two_apps["secret"], set(two_apps["others"])
    probes = 0
    for role in _as_roles(alpha, [two_apps["alpha_role"], "flywheel_app", "flywheel_reader", two_apps["beta_role"]]):
        for app in (None, two_apps["beta_role"], "default", secret):
            for k in (1, 10, 1000):
                rows = alpha.execute("SELECT trace_id, input, output FROM flywheel.few_shot(%s, %s, app => %s)",
                                     (secret, k, app)).fetchall()
                assert not {r[0] for r in rows} & others and all(secret not in (r[1] or "") for r in rows), (role, app)
                probes += 1
        for threshold in (0.9, 0.97, 1.0):
            rows = alpha.execute("SELECT trace_id, output FROM flywheel.cache_lookup(%s, %s::real)", (secret, threshold)).fetchall()
            assert not {r[0] for r in rows} & others, (role, threshold)
            probes += 1
        # The internals the wrappers call, with another caller's name: nothing of theirs either.
        for caller in ("postgres", "flywheel_admin", "flywheel_app", two_apps["beta_role"], None):
            rows = alpha.execute("SELECT trace_id FROM flywheel._few_shot(flywheel._embed_query(%s), 50, NULL, NULL,"
                                 " '30 days', %s)", (secret, caller)).fetchall()
            assert not {r[0] for r in rows} & others, (role, caller)
            rows = alpha.execute("SELECT trace_id FROM flywheel._cache_lookup(%s, 0.9, %s)", (secret, caller)).fetchall()
            assert not {r[0] for r in rows} & others, (role, caller)
            probes += 2
        for ref in [*others, *two_apps["uids"]]:  # feedback on their traces: refused, nothing written
            with pytest.raises(psycopg.Error):
                alpha.execute("SELECT flywheel.record_feedback(%s, 'thumbs', -1)", (str(ref),))
            probes += 1
        checked = alpha.execute("SELECT validator, details::text FROM flywheel.check_input(%s)", (secret,)).fetchall()
        assert all("their" not in d for _, d in checked)
        assert alpha.execute("SELECT count(*) FROM flywheel.traces WHERE id = ANY(%s)", (list(others),)).fetchone() == (0,)
        assert alpha.execute("SELECT count(*) FROM flywheel.feedback WHERE trace_id = ANY(%s)",
                             (list(others),)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM flywheel.feedback WHERE trace_id = ANY(%s) AND kind = 'thumbs'",
                      (list(others),)).fetchone() == (0,)
    assert probes > 50
    record("security probes", {"cross_app_probes": probes})


def test_the_app_role_cannot_reach_plpython(db: psycopg.Connection, app_login: Any, app_name: str) -> None:
    _, alpha = app_login(app_name)
    # The only PL/Python functions an application may execute are these (they run as their owner).
    reachable = {r[0] for r in db.execute(
        """SELECT p.proname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
           WHERE l.lanname = 'plpython3u' AND has_function_privilege('flywheel_app', p.oid, 'EXECUTE')""")}
    assert reachable <= {"_python_boot"}, reachable
    # Untrusted: only a superuser may write functions in it (USAGE means nothing for such a language).
    assert db.execute("SELECT lanpltrusted FROM pg_language WHERE lanname = 'plpython3u'").fetchone() == (False,)
    attempts = [
        "DO LANGUAGE plpython3u $$ plpy.execute('SELECT 1') $$",
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE plpython3u AS $$ return 1 $$",
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION flywheel.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE OR REPLACE FUNCTION flywheel.redact_pii(input text) RETURNS text LANGUAGE sql AS 'SELECT input'",
        "SELECT flywheel.redact_pii('x')",
        "SELECT flywheel.python_environment()",
        "SELECT flywheel.create_validator('evil', 'python', '{\"body\": \"return True\"}')",
        "SELECT flywheel.set_validator_enabled('pii', false)",
        "UPDATE flywheel.validators SET config = '{}'",
        "SELECT flywheel.revalidate('pii')",
        "SELECT * FROM flywheel.validation_results",
        "SELECT * FROM flywheel.embeddings",
        "ALTER FUNCTION flywheel._python_boot() SECURITY INVOKER",
        "CREATE TRIGGER t AFTER INSERT ON flywheel.traces FOR EACH STATEMENT EXECUTE FUNCTION flywheel._python_boot()",
        "LOAD 'plpython3'",
    ]
    refused = 0
    for statement in attempts:
        with pytest.raises(psycopg.Error) as caught:
            alpha.execute(statement)
        assert isinstance(caught.value, psycopg.errors.InsufficientPrivilege | psycopg.errors.WrongObjectType
                          | psycopg.errors.UndefinedFunction), (statement, caught.value)
        refused += 1
    functions = alpha.execute(
        """SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)""").fetchone()
    assert functions == (0,)
    record("security plpython", {"refused_statements": refused})


def test_every_security_definer_function_pins_its_search_path(db: psycopg.Connection) -> None:
    """In every schema of the database, not only flywheel: a SECURITY DEFINER function whose
    search_path is not pinned would resolve names in a schema its caller can write."""
    rows = db.execute(
        """SELECT n.nspname || '.' || p.proname, coalesce(array_to_string(p.proconfig, ' '), '')
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')""").fetchall()
    assert rows, "no SECURITY DEFINER function at all?"
    loose = [(name, config) for name, config in rows
             if not any(c.startswith("search_path=") for c in config.split(" "))
             or "search_path=pg_catalog, pg_temp" not in config]
    # pg_cron's own functions (schema cron) are the extension's business, not ours.
    assert [r for r in loose if not r[0].startswith("cron.")] == []
    record("security definer", {"security_definer_functions": len(rows)})
