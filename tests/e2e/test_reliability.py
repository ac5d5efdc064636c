"""The reliability suite: load with and without faults (tests/reliability_load.py), generated
validator configs and generated SQL (hypothesis), and what an application role can reach.

Fast versions run in `make test`; the long ones (`@pytest.mark.slow`) in `make soak`. Each load
test writes its counts to tests/reliability_counts.json, which
scripts/reliability_report.py renders into BENCHMARKS.md.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fake_openai import FakeOpenAI
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb
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
def two_apps(db: psycopg.Connection, login_role: Any, app_name: str) -> dict[str, Any]:
    """alpha (a login of app A, the one probing) and everything app B and the 'default' app
    have: traces, feedback, a correction and a label (so examples), a cache-safe answer."""
    alpha, beta = login_role("flywheel_app", app_name + "-a"), login_role("flywheel_app", app_name + "-b")
    alpha_role, beta_role = alpha.info.user, beta.info.user
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
            "beta_app": app_name + "-b",
            "others": other_ids, "own": own, "uids": [str(r[0]) for r in db.execute(
                "UPDATE flywheel.traces SET uid = gen_random_uuid() WHERE id = ANY(%s) RETURNING uid", (other_ids,))]}


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
    for role in _as_roles(alpha, ["flywheel_app", two_apps["alpha_role"], "flywheel_reader", two_apps["beta_role"]]):
        for table in ("traces", "feedback", "preferences"):  # row-level security
            column = "id" if table == "traces" else "trace_id" if table == "feedback" else "trace_a"
            rows = alpha.execute(sql.SQL("SELECT count(*) FROM flywheel.{} WHERE {} = ANY(%s)").format(
                sql.Identifier(table), sql.Identifier(column)), (list(others),)).fetchone()
            assert rows == (0,), (role, table)
            probes += 1
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
        try:  # a role with no app of its own (the bare group role) is refused: nothing shown
            checked = alpha.execute("SELECT validator, details::text FROM flywheel.check_input(%s)", (secret,)).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            checked = []
        assert all("their" not in d for _, d in checked)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # another app's guards: refused
            alpha.execute("SELECT * FROM flywheel.check_input(%s, %s)", (secret, two_apps["beta_app"]))
        probes += 2
    assert db.execute("SELECT count(*) FROM flywheel.feedback WHERE trace_id = ANY(%s) AND kind = 'thumbs'",
                      (list(others),)).fetchone() == (0,)
    assert probes > 50
    record("security probes", {"cross_app_probes": probes})


def test_the_app_role_cannot_reach_plpython(db: psycopg.Connection, login_role: Any, app_name: str) -> None:
    alpha = login_role("flywheel_app", app_name)
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
    # ... and none of ours runs as a superuser: they belong to NOLOGIN, non-superuser roles.
    owners = db.execute(
        """SELECT r.rolname, r.rolsuper, r.rolcanlogin, count(*) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
           WHERE p.prosecdef AND p.pronamespace = 'flywheel'::regnamespace GROUP BY 1, 2, 3""").fetchall()
    assert not any(sup for _, sup, _, _ in owners), owners
    assert all(not login or name == "flywheel_scheduler" for name, _, login, _ in owners), owners
    record("security definer", {"security_definer_functions": len(rows),
                                "definers_superuser_owned": sum(n for _, sup, _, n in owners if sup)})


# --- generated bad input: validator configs and generated SQL (hypothesis) --------------------

KINDS = ["sql", "regex", "length", "json", "sql_codegen", "pii", "injection", "refusal", "language", "classifier",
         "anomaly", "python", "llm_judge", "llm_pairwise"]
CONFIG_KEYS = ["expression", "pattern", "field", "must_match", "case_insensitive", "label", "min_chars", "max_chars",
               "min_words", "max_words", "schema", "strip_code_fence", "fields", "categories", "threshold", "allowed",
               "labels", "case_sensitive", "metrics", "min_samples", "body", "time_limit_ms", "criterion", "provider",
               "model", "base_url", "api_key_env", "scale", "pass_threshold", "redact_pii", "input_guard",
               "allowed_statements", "explain", "max_statements", "description", "unknown_key"]
_texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                     st.floats(allow_nan=False, allow_infinity=False, width=32), _texts,
                     st.sampled_from(["output", "input", "^[a-z]+$", "(a+)+$", "[", "length(output) > 2", "1/0 = 1",
                                      "pg_sleep(5) IS NULL", "offline", "openai", "public", "flywheel", "return True",
                                      "while True: pass", "en", "email", "def"]))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(_texts, inner, max_size=3)), max_leaves=6)
_configs = st.one_of(st.dictionaries(st.sampled_from(CONFIG_KEYS), _json, max_size=4), _json)
_applies = st.one_of(st.just({}), st.dictionaries(
    st.sampled_from(["app", "node_type", "model", "prompt_version", "node", "variant", "nonsense"]),
    st.one_of(_scalars, st.lists(_texts, max_size=2)), max_size=3), _json)
_names = st.one_of(st.from_regex(r"\Agen_[a-z0-9_]{1,20}\Z"), _texts)
_rates = st.one_of(st.floats(0, 1, width=32), st.floats(width=32), st.none())
HYPOTHESIS = settings(max_examples=examples(120), deadline=None, suppress_health_check=list(HealthCheck))


def _validator_rows(db: psycopg.Connection, name: str) -> tuple[int, int]:
    return db.execute(  # type: ignore[return-value]
        "SELECT (SELECT count(*) FROM flywheel.validators WHERE name = %s),"
        " (SELECT count(*) FROM flywheel.validator_versions vv JOIN flywheel.validators v ON v.id = vv.validator_id"
        "  WHERE v.name = %s)", (name, name)).fetchone()


# Valid starting points, which the plausible half of the examples perturbs by one generated key.
VALID_CONFIGS: dict[str, dict[str, Any]] = {
    "sql": {"expression": "length(output) > 0"}, "regex": {"pattern": "^[A-Z]"}, "length": {"max_chars": 100},
    "json": {}, "pii": {}, "injection": {}, "refusal": {}, "language": {"allowed": ["en"]},
    "classifier": {"labels": ["a", "b"]}, "python": {"body": "return True"},
    "llm_judge": {"criterion": "Correct.", "redact_pii": False}, "sql_codegen": {"schema": "flywheel", "explain": False},
}


@HYPOTHESIS
@given(name=_names, kind=st.one_of(st.sampled_from(KINDS), _texts), config=_configs,
       mode=st.sampled_from(["sync", "async", "", "SYNC"]), applies_to=_applies, rate=_rates,
       plausible=st.booleans(), tweak=st.dictionaries(st.sampled_from(CONFIG_KEYS), _json, max_size=1))
def test_a_generated_validator_is_refused_clearly_or_created_whole(
        db: psycopg.Connection, app_name: str, name: str, kind: str, config: Any, mode: str, applies_to: Any,
        rate: float | None, plausible: bool, tweak: dict[str, Any]) -> None:
    if plausible:
        kind = kind if kind in VALID_CONFIGS else "length"
        name, mode = f"gen_{kind}", "async" if kind == "llm_judge" else "sync"
        config = {**VALID_CONFIGS[kind], **tweak}
        rate = rate if rate is not None and 0 <= rate <= 1 else 0.5
        if not isinstance(applies_to, dict) or not set(applies_to) <= {"app", "node", "node_type", "model"}:
            applies_to = {"app": app_name}
    if name.startswith("gen_"):
        name = f"{name[:40]}_{uuid.uuid4().hex[:8]}"  # fresh each time: a refusal must leave nothing
    before = _validator_rows(db, name)
    try:
        vid = db.execute("SELECT flywheel.create_validator(%s, %s, %s, %s, %s, %s::real)",
                         (name, kind, Jsonb(config), mode, Jsonb(applies_to), rate)).fetchone()[0]  # type: ignore[index]
    except psycopg.Error as e:
        _GENERATED["refused"] += 1
        message = str(e).splitlines()[0]
        assert not isinstance(e, psycopg.errors.InternalError_ | psycopg.OperationalError
                              | psycopg.errors.UndefinedFunction), message
        assert e.sqlstate and not e.sqlstate.startswith("XX"), message  # an internal error is a crash
        assert "Traceback" not in message and len(message) < 600, message
        assert any(w in message for w in ("create_validator", "config", kind, "applies_to")), message
        assert _validator_rows(db, name) == before, "a refused validator left rows behind"
        return
    _GENERATED["created"] += 1
    try:
        # Generated names are mostly junk, but one that follows the naming rule (say 'a') is valid.
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name), f"created a validator named {name!r}"
        row = db.execute("SELECT kind, mode, sample_rate, enabled, version FROM flywheel.validators WHERE id = %s",
                         (vid,)).fetchone()
        assert row is not None and row[:2] == (kind, mode) and row[3] and row[4] == 1
        assert rate is not None and 0 <= rate <= 1 and abs(row[2] - rate) < 1e-6
        assert _validator_rows(db, name) == (1, 1)
        # It is usable: an INSERT with it enabled succeeds, whatever it makes of the row.
        db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'q', 'a')", (app_name,))
    finally:
        db.execute("DELETE FROM flywheel.validators WHERE id = %s", (vid,))


_GENERATED: dict[str, int] = {"refused": 0, "created": 0, "sql": 0}

SQL_WORDS = ["SELECT", "INSERT INTO", "UPDATE", "DELETE FROM", "DROP TABLE", "TRUNCATE", "CREATE TABLE", "ALTER TABLE",
             "COPY", "SET", "BEGIN;", "COMMIT;", "ROLLBACK;", "FROM", "WHERE", "JOIN", "ON", "GROUP BY", "ORDER BY",
             "LIMIT", "UNION", "WITH", "AS", "VALUES", "RETURNING", "*", ",", "(", ")", ";", "=", "'", '"', "--", "/*",
             "*/", "$$", "1", "0", "NULL", "pg_sleep(5)", "pg_terminate_backend(1)", "lo_import('/etc/passwd')",
             "dblink", "generate_series(1, 1e9)", "rel_gen.orders", "orders", "customers", "id", "total",
             "customer_id", "name", "public.flywheel_canary", "flywheel.traces", "pg_catalog.pg_authid"]
# Queries shaped like what a model writes: mostly well-formed, with names that may not exist.
_columns = st.sampled_from(["id", "name", "total", "customer_id", "missing_col", "*", "count(*)", "sum(total)",
                            "pg_sleep(1)", "1/0"])
_grammar = st.builds(
    lambda cols, table, where, tail: f"SELECT {', '.join(cols)} FROM {table}{where}{tail}",
    st.lists(_columns, min_size=1, max_size=3),
    st.sampled_from(["orders", "customers", "rel_gen.orders", "orders o JOIN customers c ON c.id = o.customer_id",
                     "missing_table", "flywheel.traces", "(SELECT * FROM orders) s"]),
    st.sampled_from(["", " WHERE total > 10", " WHERE name = 'x''; DROP TABLE orders; --'", " WHERE id IN (1, 2)",
                     " WHERE"]),
    st.sampled_from(["", " ORDER BY 1", " LIMIT 5", " GROUP BY 1", "; DELETE FROM orders", " FOR UPDATE", ";"]),
)
_sql = st.one_of(_grammar, st.lists(st.sampled_from(SQL_WORDS), min_size=1, max_size=15).map(" ".join), _texts,
                 st.sampled_from(["SELECT id, total FROM orders WHERE total > 10",
                                  "SELECT c.name, sum(o.total) FROM customers c JOIN orders o ON o.customer_id = c.id"
                                  " GROUP BY c.name", "DELETE FROM orders", "DROP TABLE customers",
                                  "SELECT 1; DROP TABLE orders", "UPDATE orders SET total = 0 RETURNING *"]))


@pytest.fixture(scope="module")
def codegen(dsn: str) -> Iterator[dict[str, str]]:
    """A small schema and a sql_codegen validator over it, for one app."""
    app = f"rel-sqlgen-{uuid.uuid4().hex[:6]}"
    name = f"rel_codegen_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("DROP SCHEMA IF EXISTS rel_gen CASCADE")
        db.execute("CREATE SCHEMA rel_gen")
        db.execute("CREATE TABLE rel_gen.customers (id int PRIMARY KEY, name text)")
        db.execute("CREATE TABLE rel_gen.orders (id int PRIMARY KEY, customer_id int REFERENCES rel_gen.customers,"
                   " total numeric)")
        db.execute("INSERT INTO rel_gen.customers SELECT g, 'c' || g FROM generate_series(1, 5) g")
        db.execute("INSERT INTO rel_gen.orders SELECT g, 1 + g % 5, g * 2.5 FROM generate_series(1, 20) g")
        # What a DBA grants the role that plans generated SQL (see README, sql_codegen).
        db.execute("GRANT USAGE ON SCHEMA rel_gen TO flywheel_sql_planner")
        db.execute("GRANT SELECT ON ALL TABLES IN SCHEMA rel_gen TO flywheel_sql_planner")
        db.execute("SELECT flywheel.create_validator(%s, 'sql_codegen', %s, applies_to => %s)",
                   (name, Jsonb({"schema": "rel_gen"}), Jsonb({"app": app})))
        yield {"app": app, "validator": name}
        db.execute("DELETE FROM flywheel.validators WHERE name = %s", (name,))
        db.execute("DROP SCHEMA rel_gen CASCADE")


def _fingerprint(db: psycopg.Connection) -> tuple[Any, ...]:
    return db.execute(
        "SELECT (SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM rel_gen.customers c),"
        " (SELECT md5(string_agg(o::text, '|' ORDER BY id)) FROM rel_gen.orders o),"
        " (SELECT array_agg(relname::text ORDER BY relname) FROM pg_class WHERE relnamespace = 'rel_gen'::regnamespace)"
    ).fetchone()  # type: ignore[return-value]


@HYPOTHESIS
@given(text=_sql)
def test_generated_sql_gets_one_verdict_and_changes_nothing(db: psycopg.Connection, codegen: dict[str, str],
                                                            text: str) -> None:
    before = _fingerprint(db)
    trace = db.execute("INSERT INTO flywheel.traces (app, node_type, input, output) VALUES (%s, 'codegen', 'q', %s)"
                       " RETURNING id", (codegen["app"], text)).fetchone()[0]  # type: ignore[index]
    verdicts = db.execute(
        "SELECT r.status FROM flywheel.validation_results r JOIN flywheel.validators v ON v.id = r.validator_id"
        " WHERE r.trace_id = %s AND v.name = %s", (trace, codegen["validator"])).fetchall()
    assert len(verdicts) == 1 and verdicts[0][0] in ("pass", "fail", "error"), (text, verdicts)
    assert _fingerprint(db) == before, f"generated SQL changed the checked schema: {text!r}"
    _GENERATED["sql"] += 1
    _GENERATED[f"sql_{verdicts[0][0]}"] = _GENERATED.get(f"sql_{verdicts[0][0]}", 0) + 1


def test_the_generated_inputs_were_tried() -> None:
    """Runs after the two hypothesis tests above: both outcomes happened, and records the counts."""
    if not _GENERATED["sql"]:
        pytest.skip("the hypothesis tests did not run in this session")
    assert _GENERATED["refused"] > 0 and _GENERATED["created"] > 0, _GENERATED
    record("generated input", {"validator_configs_refused": _GENERATED["refused"],
                               "validator_configs_created": _GENERATED["created"],
                               "generated_sql": _GENERATED["sql"],
                               **{k: v for k, v in _GENERATED.items() if k.startswith("sql_")}})
