"""The `sql_codegen` validator: is a generated query valid SQL for the configured schema?

Checks, in order: it parses (sqlglot, postgres dialect); only allowed statement types appear
(SELECT by default; a `;`-chained write, DDL, a data-modifying CTE, SELECT INTO or FOR UPDATE
fail); every table and column it names exists in the schema (from the catalog); optionally it
plans: EXPLAIN (never ANALYZE) in a read-only subtransaction that is always rolled back. The
query is never executed, so checking never writes anything.
"""

from __future__ import annotations

import time
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, TokenError
from sqlglot.optimizer.qualify import qualify
from validators_builtin import (
    ConfigError,
    Result,
    _known_keys,
    _read_only_subtransaction,
    _short,
    error_result,
    strip_code_fence,
)

STATEMENT_TYPES: dict[str, tuple[type[Any], ...]] = {
    "select": (exp.Query,),
    "insert": (exp.Insert,),
    "update": (exp.Update,),
    "delete": (exp.Delete,),
    "merge": (exp.Merge,),
}
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
# What PostgreSQL says when EXPLAIN refuses the query, as a label.
_SQLSTATE_LABELS = {"42601": "syntax_error", "42P01": "unknown_table", "42703": "unknown_column",
                    "42883": "unknown_function", "42804": "type_mismatch", "42803": "grouping_error",
                    "42702": "ambiguous_column"}
CATALOG_SECONDS = 10.0


def _kind_of(stmt: Any) -> str:
    for name, classes in STATEMENT_TYPES.items():
        if isinstance(stmt, classes):
            return name
    return type(stmt).__name__.lower()


class SqlCodegen:
    def __init__(self, config: dict[str, Any], plpy: Any = None) -> None:
        _known_keys(config, {"schema", "allowed_statements", "explain", "max_statements", "lock_timeout_ms"},
                    "sql_codegen")
        schema = config.get("schema")
        if not isinstance(schema, str) or not schema:
            raise ConfigError('sql_codegen: config needs {"schema": "<the schema whose tables the SQL may use>"}')
        allowed = config.get("allowed_statements", ["select"])
        if not isinstance(allowed, list) or not allowed or not set(allowed) <= set(STATEMENT_TYPES):
            raise ConfigError(f"sql_codegen: allowed_statements must be a non-empty list of {list(STATEMENT_TYPES)}")
        max_statements = config.get("max_statements", 1)
        if isinstance(max_statements, bool) or not isinstance(max_statements, int) or max_statements < 1:
            raise ConfigError("sql_codegen: max_statements must be a positive integer")
        self.schema, self.allowed, self.max_statements = schema, set(allowed), max_statements
        self.explain = bool(config.get("explain", True))
        self.lock_timeout_ms = int(config.get("lock_timeout_ms", 200))
        self.catalog: dict[str, dict[str, str]] = {}
        self.loaded_at = -1e18
        self.explain_plan: Any = None
        if plpy is not None:
            self._load_catalog(plpy, force=True)
            if not self.catalog:
                raise ConfigError(f"sql_codegen: schema {schema!r} does not exist or has no tables")

    def _load_catalog(self, plpy: Any, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.loaded_at < CATALOG_SECONDS:
            return
        rows = plpy.execute(
            plpy.prepare(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type"
                " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
                " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                ["name"],
            ),
            [self.schema],
        )
        catalog: dict[str, dict[str, str]] = {}
        for r in rows:
            catalog.setdefault(r["relname"], {})[r["attname"]] = r["type"]
        self.catalog, self.loaded_at = catalog, now

    def check_batch(self, plpy: Any, rows: list[dict[str, Any]], source: str) -> list[Result]:
        self._load_catalog(plpy)
        out = []
        for row in rows:
            try:
                out.append(self.check_sql(plpy, row.get("output")))
            except Exception as e:
                out.append(error_result(e))
        return out

    def check_sql(self, plpy: Any, text: str | None) -> Result:
        if text is None or not text.strip():
            return Result("fail", 0.0, "missing", {"reason": "no SQL in the output"})
        sql = strip_code_fence(text).strip().rstrip(";").strip()
        try:
            statements = [s for s in sqlglot.parse(sql, read="postgres") if s is not None]
        except (ParseError, TokenError) as e:
            return Result("fail", 0.0, "syntax_error", {"reason": _short(str(e).splitlines()[0])})
        if not statements:
            return Result("fail", 0.0, "missing", {"reason": "no SQL statement"})
        kinds = [_kind_of(s) for s in statements]
        if len(statements) > self.max_statements or any(k not in self.allowed for k in kinds):
            return Result("fail", 0.0, "statement_not_allowed",
                          {"statements": kinds, "allowed": sorted(self.allowed), "max_statements": self.max_statements})
        for stmt in statements:
            verdict = self._check_statement(stmt)
            if verdict is not None:
                return verdict
        if self.explain:
            return self._plan(plpy, sql)
        return Result("pass", 1.0, None, {"statements": kinds})

    def _check_statement(self, stmt: Any) -> Result | None:
        if isinstance(stmt, exp.Query):
            if any(True for _ in stmt.find_all(*_WRITES)):
                return Result("fail", 0.0, "statement_not_allowed",
                              {"reason": "a data-modifying statement inside the query"})
            if stmt.find(exp.Into) is not None or stmt.find(exp.Lock) is not None:
                return Result("fail", 0.0, "statement_not_allowed", {"reason": "SELECT INTO or FOR UPDATE/SHARE"})
        ctes = {c.alias_or_name.lower() for c in stmt.find_all(exp.CTE)}
        for table in stmt.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                continue  # a table function such as generate_series(...)
            name = table.name if table.this.quoted else table.name.lower()
            schema = table.db
            if schema and schema != self.schema:
                return Result("fail", 0.0, "unknown_table", {"reason": f"schema {schema!r} is not {self.schema!r}"})
            if not schema and name in ctes:
                continue
            if name not in self.catalog:
                return Result("fail", 0.0, "unknown_table", {"reason": f"table {name!r} does not exist"})
        try:
            qualify(stmt.copy(), schema={self.schema: self.catalog}, db=self.schema, dialect="postgres",
                    validate_qualify_columns=True, identify=False)
        except OptimizeError as e:
            message = str(e)
            if "could not be resolved" in message or "Unknown column" in message or "Unknown table" in message:
                return Result("fail", 0.0, "unknown_column", {"reason": _short(message.splitlines()[0])})
            # Anything else is sqlglot not following a valid construct: PostgreSQL has the last word.
        return None

    def _plan(self, plpy: Any, sql: str) -> Result:
        def explain() -> None:
            plpy.execute(f"SET LOCAL lock_timeout = {self.lock_timeout_ms}")
            plpy.execute(f"SET LOCAL search_path = pg_catalog, {plpy.quote_ident(self.schema)}")
            # prepare() takes exactly one statement, whatever sqlglot thought of the text.
            plpy.execute(plpy.prepare("EXPLAIN (COSTS OFF) " + sql))

        try:
            _read_only_subtransaction(plpy, explain)
        except plpy.SPIError as e:
            state = getattr(e, "sqlstate", None) or ""
            label = _SQLSTATE_LABELS.get(state, "does_not_plan")
            return Result("fail", 0.0, label, {"reason": _short(str(e).splitlines()[0] if str(e) else label),
                                               "sqlstate": state})
        return Result("pass", 1.0, None, {"planned": True})
