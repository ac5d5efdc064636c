"""sql_codegen's checks before planning: what it refuses, without a database."""

from __future__ import annotations

import pytest
from validators_sql_codegen import DEFAULT_MAX_CHARS, SqlCodegen


@pytest.fixture
def codegen() -> SqlCodegen:
    v = SqlCodegen({"schema": "shop", "explain": False})
    v.catalog = {"orders": {"id": "integer", "total": "numeric"}}
    v.types = {"pg_catalog": frozenset({"int4", "text", "numeric", "name"}), "shop": frozenset({"mood"})}
    return v


# Functions that read files, sleep, lock, write, run another query or look at the server.
DANGEROUS = ["pg_sleep", "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import", "lo_export",
             "lo_get", "dblink", "dblink_exec", "set_config", "current_setting", "txid_current", "pg_advisory_lock",
             "pg_advisory_xact_lock", "pg_try_advisory_lock", "query_to_xml", "table_to_xml", "database_to_xml",
             "cursor_to_xml", "xpath", "nextval", "setval", "currval", "pg_notify", "pg_terminate_backend",
             "pg_cancel_backend", "pg_reload_conf", "pg_switch_wal", "pg_logical_emit_message", "pg_backend_pid",
             "has_table_privilege", "pg_sleep_for", "inet_server_addr", "to_regclass"]


@pytest.mark.parametrize("name", DANGEROUS)
def test_functions_outside_the_allowlist_are_refused_however_spelt(codegen: SqlCodegen, name: str) -> None:
    for sql in [f"SELECT {name}(1)", f'SELECT "{name}"(1)', f"SELECT pg_catalog.{name}(1)",
                f"SELECT id FROM orders WHERE id = {name.upper()}(1)", f"SELECT * FROM {name}(1)"]:
        verdict = codegen.check_sql(None, sql)
        assert (verdict.status, verdict.label) == ("fail", "not_allowed"), sql
        assert name in verdict.details["reason"], sql  # type: ignore[index]


@pytest.mark.parametrize("sql", [
    "SELECT id FROM orders WHERE id = pg_temp.p()", 'SELECT id FROM orders WHERE id = "pg_temp"."p"()',
    "SELECT * FROM pg_temp.p()", "SELECT id FROM pg_temp.orders", "SELECT pg_temp_3.p()", "SELECT (pg_temp.p()).x",
    "SELECT public.lower('a')", "SELECT shop.lower('a')", "SELECT * FROM shop.generate_series(1, 2)",
    "SELECT id FROM other.orders", "SELECT x.shop.orders.id FROM orders",
    "SELECT id FROM orders WHERE 1 OPERATOR(pg_temp.===) 1", "SELECT id FROM orders WHERE 1 OPERATOR(pg_catalog.=) 1",
    "SELECT ('x'::boxed).v", "SELECT 'x'::pg_temp.boxed", "SELECT CAST('x' AS public.mood)", "SELECT ARRAY['x']::boxed[]",
])
def test_names_outside_the_schema_are_refused(codegen: SqlCodegen, sql: str) -> None:
    verdict = codegen.check_sql(None, sql)
    assert (verdict.status, verdict.label) == ("fail", "not_allowed"), verdict


@pytest.mark.parametrize("sql", [
    "SELECT count(*), sum(total), round(avg(total), 2), max(id) FROM orders",
    "SELECT lower('A'), upper('a'), coalesce(NULL, 1), pg_catalog.abs(-1), date_trunc('month', now())",
    "SELECT id, row_number() OVER (ORDER BY total DESC) FROM orders WHERE total::int > 1",
    "SELECT 'x'::mood, 'x'::shop.mood, 'x'::name, 'x'::pg_catalog.name",
    "SELECT id FROM shop.orders, LATERAL unnest(ARRAY[1]) u",
    "SELECT * FROM generate_series(1, 2)",
    "WITH t AS (SELECT id FROM orders) SELECT jsonb_build_object('id', id) FROM t",
])
def test_ordinary_queries_pass(codegen: SqlCodegen, sql: str) -> None:
    assert codegen.check_sql(None, sql).status == "pass"


def test_the_size_cap_comes_before_parsing(codegen: SqlCodegen) -> None:
    huge = "SELECT id FROM orders WHERE " + " OR ".join(f"id = {i}" for i in range(200_000))
    verdict = codegen.check_sql(None, huge)
    assert (verdict.status, verdict.label) == ("fail", "too_long")
    assert str(DEFAULT_MAX_CHARS) in verdict.details["reason"]  # type: ignore[index]
    deep = "SELECT " + "(" * 3000 + "1" + ")" * 3000
    assert codegen.check_sql(None, deep).label == "too_complex"


@pytest.mark.parametrize("config", [{"max_chars": 0}, {"max_chars": 10**7}, {"max_chars": "big"},
                                    {"lock_timeout_ms": 0}, {"lock_timeout_ms": True}])
def test_bad_limits_are_refused(config: dict[str, object]) -> None:
    from validators_builtin import ConfigError

    with pytest.raises(ConfigError):
        SqlCodegen({"schema": "shop", **config})
