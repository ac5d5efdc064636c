"""The sql_codegen validator on real data: defog-ai/sql-eval's seven databases and 190 gold
queries. Every gold query passes; every broken variant fails; the tables are unchanged after."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from dbflywheel.datasets import sqleval


@pytest.fixture(scope="module")
def loaded(dsn: str) -> Iterator[dict[str, str]]:
    """The seven schemas and one sql_codegen validator per database (applied by app)."""
    run = uuid.uuid4().hex[:8]
    with psycopg.connect(dsn, autocommit=True) as db:
        validators = {}
        for name in sqleval.DATABASES:
            schema = sqleval.load_schema(db, name)
            validators[name] = f"codegen_{name}_{run}"
            db.execute("SELECT flywheel.create_validator(%s, 'sql_codegen', %s, applies_to => %s)",
                       (validators[name], Jsonb({"schema": schema}),
                        Jsonb({"node_type": "codegen", "app": f"sqleval-{name}-{run}"})))
        yield {name: validators[name] for name in sqleval.DATABASES} | {"_run": run}
        db.execute("DELETE FROM flywheel.validators WHERE name = ANY(%s)", (list(validators.values()),))
        for name in sqleval.DATABASES:
            db.execute(f"DROP SCHEMA {sqleval.schema_name(name)} CASCADE")


def _fingerprint(db: psycopg.Connection) -> dict[str, str]:
    """A hash of every table's rows in every sql-eval schema."""
    out = {}
    for name in sqleval.DATABASES:
        schema = sqleval.schema_name(name)
        for table in sqleval.catalog(db, schema):
            row = db.execute(f'SELECT count(*), md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM "{schema}"."{table}" t').fetchone()
            out[f"{schema}.{table}"] = f"{row[0]}:{row[1]}"
    return out


def _verdicts(db: psycopg.Connection, loaded: dict[str, str], items: list[tuple[str, str, str]]) -> list[tuple[str, str, str | None, dict]]:
    """Insert (db_name, question, sql) as codegen traces, one batch per database; return each
    trace's (kind tag, status, label, details) from its database's validator."""
    run = loaded["_run"]
    out = []
    by_db = collections.defaultdict(list)
    for db_name, tag, sql in items:
        by_db[db_name].append((tag, sql))
    for db_name, entries in by_db.items():
        rows = db.execute(
            "INSERT INTO flywheel.traces (app, node_type, input, output) SELECT %s, 'codegen', u.tag, u.sql"
            " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(tag, sql, n) ORDER BY u.n RETURNING id, input",
            (f"sqleval-{db_name}-{run}", [t for t, _ in entries], [s for _, s in entries])).fetchall()
        results = dict(db.execute(
            """SELECT r.trace_id, (r.status, r.label, r.details) FROM flywheel.validation_results r
               JOIN flywheel.validators v ON v.id = r.validator_id WHERE v.name = %s AND r.trace_id = ANY(%s)""",
            (loaded[db_name], [r[0] for r in rows])).fetchall())
        for trace_id, tag in rows:
            status, label, details = results[trace_id]
            out.append((tag, status, label, details))
    return out


def test_every_gold_query_passes(db: psycopg.Connection, loaded: dict[str, str]) -> None:
    gold = sqleval.gold_queries()
    assert len(gold) == 190
    verdicts = _verdicts(db, loaded, [(q.db_name, "gold", q.query) for q in gold])
    failures = [(g.query, v) for g, v in zip(gold, verdicts, strict=True) if v[1] != "pass"]
    assert failures == []


def test_every_broken_query_fails_and_nothing_is_written(db: psycopg.Connection, loaded: dict[str, str]) -> None:
    before = _fingerprint(db)
    items = []
    for q in sqleval.gold_queries():
        tables = sqleval.catalog(db, sqleval.schema_name(q.db_name))
        items += [(q.db_name, kind, sql) for kind, sql in sqleval.broken_variants(q.query, tables).items()]
    verdicts = _verdicts(db, loaded, items)
    kinds = collections.Counter(tag for tag, *_ in verdicts)
    assert set(kinds) == {"unknown_table", "unknown_column", "syntax_error", "chained_delete", "chained_drop", "chained_update"}
    passed = [(tag, details) for tag, status, _, details in verdicts if status != "fail"]
    assert passed == []
    labels = {(tag, label) for tag, _, label, _ in verdicts}
    assert {label for tag, label in labels if tag.startswith("chained_")} == {"statement_not_allowed"}
    assert {label for tag, label in labels if tag == "unknown_table"} <= {"unknown_table", "unknown_column"}
    assert _fingerprint(db) == before


def test_a_chained_write_is_never_executed_even_without_the_statement_check(db: psycopg.Connection, loaded: dict[str, str]) -> None:
    # Allowing every statement type leaves only EXPLAIN between the text and the data: it must
    # plan the DELETE and never run it.
    run = loaded["_run"]
    name = f"codegen_writes_{run}"
    db.execute("SELECT flywheel.create_validator(%s, 'sql_codegen', %s, applies_to => %s)",
               (name, Jsonb({"schema": "sqleval_restaurants", "allowed_statements": ["select", "delete"]}),
                Jsonb({"node_type": "codegen", "app": f"writes-{run}"})))
    # EXPLAIN checks the privileges of what it plans: the planner role needs DELETE to plan one.
    db.execute("GRANT DELETE ON sqleval_restaurants.restaurant TO flywheel_sql_planner")
    try:
        before = _fingerprint(db)
        tid = db.execute("INSERT INTO flywheel.traces (app, node_type, output) VALUES (%s, 'codegen', 'DELETE FROM restaurant')"
                         " RETURNING id", (f"writes-{run}",)).fetchone()[0]
        status = db.execute("SELECT r.status, r.details FROM flywheel.validation_results r JOIN flywheel.validators v"
                            " ON v.id = r.validator_id WHERE v.name = %s AND r.trace_id = %s", (name, tid)).fetchone()
        assert status[0] == "pass" and status[1]["planned"] is True
        assert _fingerprint(db) == before
    finally:
        db.execute("DELETE FROM flywheel.validators WHERE name = %s", (name,))
