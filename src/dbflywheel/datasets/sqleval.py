"""defog-ai/sql-eval: its seven PostgreSQL databases loaded as schemas, its gold queries as plain
SQL, and broken variants of them, for testing and demonstrating the `sql_codegen` validator."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import psycopg
import sqlglot
from psycopg import sql
from sqlglot import exp

DATABASES = ("academic", "advising", "atis", "geography", "restaurants", "scholar", "yelp")
_ROOT = files("dbflywheel") / "data" / "datasets" / "sql-eval"
# Lines of a pg_dump that only make sense for the dump's own database.
_SKIP = re.compile(
    r"^(SET |SELECT pg_catalog\.set_config|ALTER SCHEMA |REVOKE |GRANT |COMMENT ON SCHEMA |ALTER .* OWNER TO )")


@dataclass(frozen=True)
class GoldQuery:
    db_name: str
    question: str
    query: str  # plain SQL: the first alternative, the first item of each {a, b} group
    category: str


def schema_name(db_name: str) -> str:
    return f"sqleval_{db_name}"


def _dump_statements(text: str) -> Iterator[tuple[str, list[str] | None]]:
    """(statement, data lines of a COPY ... FROM stdin or None), in order."""
    lines = iter(text.splitlines())
    buffer: list[str] = []
    for line in lines:
        if not buffer and (not line.strip() or line.startswith("--") or _SKIP.match(line)):
            continue
        buffer.append(line)
        if line.rstrip().endswith(";"):
            statement = "\n".join(buffer)
            buffer = []
            if statement.startswith("COPY ") and statement.rstrip().endswith("FROM stdin;"):
                data = []
                for row in lines:
                    if row == "\\.":
                        break
                    data.append(row)
                yield statement, data
            else:
                yield statement, None


def load_schema(conn: psycopg.Connection, db_name: str, schema: str | None = None) -> str:
    """Create schema (default sqleval_<db>) holding the database's tables and rows; replaces it."""
    if db_name not in DATABASES:
        raise ValueError(f"unknown sql-eval database {db_name!r}; known: {', '.join(DATABASES)}")
    schema = schema or schema_name(db_name)
    qualified = sql.Identifier(schema).as_string(conn) + "."
    text = (_ROOT / "schemas" / f"{db_name}.sql").read_text()
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for statement, data in _dump_statements(text):
            statement = statement.replace("public.", qualified)
            if data is None:
                conn.execute(statement.encode())
                continue
            copy_sql = statement.rstrip().rstrip(";").replace("FROM stdin", "FROM STDIN")
            with conn.cursor().copy(copy_sql.encode()) as copy:
                for row in data:
                    copy.write(row + "\n")
        grant_planner(conn, schema)
    return schema


def grant_planner(conn: psycopg.Connection, schema: str) -> None:
    """What a DBA grants so that sql_codegen validators can plan generated SQL over the schema:
    the planner role reads it, nothing else (see README, sql_codegen)."""
    if conn.execute("SELECT FROM pg_roles WHERE rolname = 'flywheel_sql_planner'").fetchone() is None:
        return  # dbflywheel is not installed here yet
    name = sql.Identifier(schema)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO flywheel_sql_planner").format(name))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO flywheel_sql_planner").format(name))


def normalise(query: str) -> str:
    """sql-eval's notation to plain SQL: the first `;`-separated alternative, the first item of
    each {a, b} group, and `{}` as the columns chosen for the group before it."""
    first = query.split(";")[0].strip()
    chosen = ""

    def pick(m: re.Match[str]) -> str:
        nonlocal chosen
        items = [i.strip() for i in m.group(1).split(",") if i.strip()]
        if items:
            chosen = items[0]
        return chosen

    return re.sub(r"\{([^{}]*)\}", pick, first)


def gold_queries(databases: tuple[str, ...] = DATABASES) -> list[GoldQuery]:
    with (_ROOT / "questions_gen_postgres.csv").open() as f:
        return [
            GoldQuery(r["db_name"], r["question"], normalise(r["query"]), r["query_category"])
            for r in csv.DictReader(f)
            if r["db_name"] in databases
        ]


def catalog(conn: psycopg.Connection, schema: str) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s"
        " ORDER BY table_name, ordinal_position",
        (schema,),
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def broken_variants(query: str, tables: dict[str, Any]) -> dict[str, str]:
    """Ways a generated query goes wrong, each derived from a working one: a table or column
    that does not exist, a syntax error, and a write or DDL chained after the SELECT."""
    tree = sqlglot.parse_one(query, read="postgres")
    real = [t for t in tree.find_all(exp.Table) if t.name.lower() in tables]
    table = real[0].name.lower() if real else next(iter(tables))
    column = tables[table][0]
    variants = {}
    if real:
        wrong_table = tree.copy()
        next(t for t in wrong_table.find_all(exp.Table) if t.name.lower() in tables).set(
            "this", exp.to_identifier("no_such_table"))
        variants["unknown_table"] = wrong_table.sql(dialect="postgres")
    columns = list(tree.find_all(exp.Column))
    if columns:
        wrong_column = tree.copy()
        next(iter(wrong_column.find_all(exp.Column))).set("this", exp.to_identifier("no_such_column"))
        variants["unknown_column"] = wrong_column.sql(dialect="postgres")
    variants["syntax_error"] = re.sub(r"(?i)\bFROM\b", "FROM FROM (", query, count=1)
    # Deliberately harmful SQL, as test data for the validator: it is checked, never run.
    variants["chained_delete"] = f"{query}; DELETE FROM {table}"  # noqa: S608
    variants["chained_drop"] = f"{query}; DROP TABLE {table}"
    variants["chained_update"] = f"{query}; UPDATE {table} SET {column} = NULL"  # noqa: S608
    return variants
