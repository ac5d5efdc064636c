"""The `sql_codegen` validator: is a generated query valid SQL for the configured schema?

Checks, in order: it is at most `max_chars` long (sqlglot's cost grows with the text, and it runs
inside the application's INSERT, where a cancel is only seen between queries); it parses
(sqlglot, postgres dialect); only allowed statement types appear (SELECT by default; a
`;`-chained write, DDL, a data-modifying CTE, SELECT INTO or FOR UPDATE fail); it names nothing
outside the configured schema: no other schema, no pg_temp, no OPERATOR(...) syntax, no type
from elsewhere, and no function outside ALLOWED_FUNCTIONS (ordinary read-only built-ins);
every table and column it names exists in the schema (from the catalog); optionally it plans:
flywheel._plan_generated_sql() runs EXPLAIN (never ANALYZE) as the role flywheel_sql_planner,
which may only read the schema, with the search path pg_catalog, the schema, pg_temp, in a
read-only block that is always rolled back. Planning evaluates IMMUTABLE functions: whatever a
query reaches runs with the planner role's rights, never the trigger owner's. The query is never
executed, so checking never writes anything.
"""

from __future__ import annotations

import re
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
    _short,
    error_result,
    reraise_cancel,
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
# sqlglot takes ~3 µs a character (2 MB: 20 s) and PostgreSQL cannot cancel it mid-parse.
DEFAULT_MAX_CHARS = 20_000
MAX_CHARS_LIMIT = 200_000
PLANNER_ROLE = "flywheel_sql_planner"
_REFUSED = "not_allowed"
# Built-ins that sqlglot does not know by name (it parses them as Anonymous): ordinary read-only
# functions of generated queries. Functions sqlglot knows (count, lower, now, coalesce, ...) are
# its own expression classes and allowed. Not here on purpose: pg_* (pg_sleep, pg_read_file,
# pg_ls_dir, pg_advisory_*...), lo_*, dblink*, set_config, current_setting, txid_*, nextval and
# setval, *_to_xml and query_to_*, xpath, has_*_privilege: what reads files, sleeps, locks,
# writes, runs another query or looks at the server.
ALLOWED_FUNCTIONS = frozenset("""
    abs cbrt ceil ceiling degrees div exp factorial floor gcd lcm ln log log10 mod pi power pow radians
    round scale sign sqrt trunc width_bucket sin cos tan asin acos atan atan2 cot random greatest least
    avg bit_and bit_or bool_and bool_or corr count covar_pop covar_samp every max min mode percentile_cont
    percentile_disc regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy
    regr_syy stddev stddev_pop stddev_samp sum variance var_pop var_samp string_agg array_agg json_agg
    jsonb_agg json_object_agg jsonb_object_agg
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    ascii bit_length btrim char_length character_length chr concat concat_ws format initcap left length
    lower lpad ltrim md5 octet_length overlay position regexp_count regexp_instr regexp_like regexp_match
    regexp_matches regexp_replace regexp_split_to_array regexp_split_to_table regexp_substr repeat replace
    reverse right rpad rtrim split_part starts_with strpos substr substring to_hex translate trim upper
    quote_literal quote_nullable encode decode sha224 sha256 sha384 sha512 string_to_array
    age clock_timestamp current_date current_time current_timestamp date_bin date_part date_trunc extract
    isfinite justify_days justify_hours justify_interval localtime localtimestamp make_date make_interval
    make_time make_timestamp make_timestamptz now statement_timestamp timeofday to_char to_date to_number
    to_timestamp transaction_timestamp timezone
    coalesce nullif num_nonnulls num_nulls row
    array_append array_cat array_dims array_fill array_length array_lower array_ndims array_position
    array_positions array_prepend array_remove array_replace array_to_string array_upper cardinality unnest
    generate_series generate_subscripts
    array_to_json json_array_elements json_array_elements_text json_array_length json_build_array
    json_build_object json_each json_each_text json_extract_path json_extract_path_text json_object
    json_object_keys json_strip_nulls json_typeof jsonb_array_elements jsonb_array_elements_text
    jsonb_array_length jsonb_build_array jsonb_build_object jsonb_each jsonb_each_text jsonb_extract_path
    jsonb_extract_path_text jsonb_object jsonb_object_keys jsonb_pretty jsonb_strip_nulls jsonb_typeof
    row_to_json to_json to_jsonb
""".split())
_TEMP_SCHEMA = re.compile(r"pg_(toast_)?temp(_\d+)?")


def _kind_of(stmt: Any) -> str:
    for name, classes in STATEMENT_TYPES.items():
        if isinstance(stmt, classes):
            return name
    return type(stmt).__name__.lower()


class SqlCodegen:
    def __init__(self, config: dict[str, Any], plpy: Any = None) -> None:
        _known_keys(config, {"schema", "allowed_statements", "explain", "max_statements", "lock_timeout_ms",
                             "max_chars"}, "sql_codegen")
        schema = config.get("schema")
        if not isinstance(schema, str) or not schema:
            raise ConfigError('sql_codegen: config needs {"schema": "<the schema whose tables the SQL may use>"}')
        allowed = config.get("allowed_statements", ["select"])
        if not isinstance(allowed, list) or not allowed or not set(allowed) <= set(STATEMENT_TYPES):
            raise ConfigError(f"sql_codegen: allowed_statements must be a non-empty list of {list(STATEMENT_TYPES)}")
        max_statements = config.get("max_statements", 1)
        if isinstance(max_statements, bool) or not isinstance(max_statements, int) or max_statements < 1:
            raise ConfigError("sql_codegen: max_statements must be a positive integer")
        max_chars = config.get("max_chars", DEFAULT_MAX_CHARS)
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or not 1 <= max_chars <= MAX_CHARS_LIMIT:
            raise ConfigError(f"sql_codegen: max_chars must be an integer from 1 to {MAX_CHARS_LIMIT}")
        lock_timeout_ms = config.get("lock_timeout_ms", 200)
        if isinstance(lock_timeout_ms, bool) or not isinstance(lock_timeout_ms, int) \
                or not 1 <= lock_timeout_ms <= 60_000:
            raise ConfigError("sql_codegen: lock_timeout_ms must be an integer from 1 to 60000")
        self.schema, self.allowed, self.max_statements = schema, set(allowed), max_statements
        self.max_chars, self.lock_timeout_ms = max_chars, lock_timeout_ms
        self.explain = bool(config.get("explain", True))
        self.catalog: dict[str, dict[str, str]] = {}
        # Type names the search path (pg_catalog, the schema, pg_temp) finds before pg_temp.
        self.types: dict[str, frozenset[str]] = {"pg_catalog": frozenset(), schema: frozenset()}
        self.loaded_at = -1e18
        self.explain_plan: Any = None
        if plpy is not None:
            self._load_catalog(plpy, force=True)
            if not self.catalog:
                raise ConfigError(f"sql_codegen: schema {schema!r} does not exist or has no tables")
            if self.explain:
                missing = self._planner_cannot_read(plpy)
                if missing:
                    raise ConfigError(f"sql_codegen: the role {PLANNER_ROLE}, which plans generated SQL, cannot read "
                                      f"{missing}; a DBA grants it: {grant_statement(schema)}")

    def _planner_cannot_read(self, plpy: Any) -> str | None:
        row = plpy.execute(plpy.prepare(
            "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $2) AS no_role,"
            " NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $2)"
            " OR NOT pg_catalog.has_schema_privilege($2, n.oid, 'USAGE') AS no_usage,"
            " (SELECT pg_catalog.string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_catalog.pg_class c"
            "   WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            "   AND EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $2)"
            "   AND NOT pg_catalog.has_table_privilege($2, c.oid, 'SELECT')) AS no_select"
            " FROM pg_catalog.pg_namespace n WHERE n.nspname = $1", ["name", "name"]), [self.schema, PLANNER_ROLE])
        if not row:
            return None
        if row[0]["no_role"]:
            return "anything (it does not exist: re-run the install)"
        if row[0]["no_usage"]:
            return f"schema {self.schema!r}"
        if row[0]["no_select"]:
            return f"table(s) {_short(row[0]['no_select'])} of schema {self.schema!r}"
        return None

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
        types = plpy.execute(
            plpy.prepare(
                "SELECT n.nspname, pg_catalog.array_agg(t.typname::text) AS names FROM pg_catalog.pg_type t"
                " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
                " WHERE n.nspname IN ('pg_catalog', $1) GROUP BY n.nspname",
                ["name"],
            ),
            [self.schema],
        )
        found = {r["nspname"]: frozenset(r["names"] or ()) for r in types}
        self.types = {name: found.get(name, frozenset()) for name in ("pg_catalog", self.schema)}
        self.catalog, self.loaded_at = catalog, now

    def check_batch(self, plpy: Any, rows: list[dict[str, Any]], source: str) -> list[Result]:
        self._load_catalog(plpy)
        out = []
        for row in rows:
            try:
                out.append(self.check_sql(plpy, row.get("output")))
            except Exception as e:
                reraise_cancel(e)  # statement_timeout or a cancel: the statement stops, it is not a verdict
                out.append(error_result(e))
        return out

    def check_sql(self, plpy: Any, text: str | None) -> Result:
        if text is None or not text.strip():
            return Result("fail", 0.0, "missing", {"reason": "no SQL in the output"})
        if len(text) > self.max_chars:
            return Result("fail", 0.0, "too_long", {"reason": f"{len(text)} characters: more than max_chars "
                                                              f"({self.max_chars}), not parsed"})
        sql = strip_code_fence(text).strip().rstrip(";").strip()
        try:
            statements = [s for s in sqlglot.parse(sql, read="postgres") if s is not None]
        except (ParseError, TokenError) as e:
            return Result("fail", 0.0, "syntax_error", {"reason": _short(str(e).splitlines()[0])})
        except RecursionError:
            return Result("fail", 0.0, "too_complex", {"reason": "nested too deeply to parse"})
        if not statements:
            return Result("fail", 0.0, "missing", {"reason": "no SQL statement"})
        kinds = [_kind_of(s) for s in statements]
        if len(statements) > self.max_statements or any(k not in self.allowed for k in kinds):
            return Result("fail", 0.0, "statement_not_allowed",
                          {"statements": kinds, "allowed": sorted(self.allowed), "max_statements": self.max_statements})
        for stmt in statements:
            try:
                verdict = self._refused(stmt) or self._check_statement(stmt)
            except RecursionError:
                return Result("fail", 0.0, "too_complex", {"reason": "nested too deeply to check"})
            if verdict is not None:
                return verdict
        if self.explain:
            return self._plan(plpy, sql)
        return Result("pass", 1.0, None, {"statements": kinds})

    def _refused(self, stmt: Any) -> Result | None:
        """Anything that reaches beyond the configured schema and the allowed built-ins, refused
        before planning: planning runs IMMUTABLE functions, and whatever is named can be one."""
        def no(reason: str) -> Result:
            return Result("fail", 0.0, _REFUSED, {"reason": _short(reason)})

        for node in stmt.walk():
            if isinstance(node, exp.Identifier) and _TEMP_SCHEMA.fullmatch(node.name.lower()):
                return no(f"{node.name} (temporary objects) may not be named")
            if isinstance(node, exp.Operator):
                return no("OPERATOR(...) syntax is not allowed")
            if isinstance(node, exp.Table | exp.Column):
                for part in ("db", "catalog"):
                    name = node.text(part)
                    if name and (part == "catalog" or name != self.schema):
                        what = "schema" if part == "db" else "catalog"
                        return no(f"{what} {name!r} is not the configured schema {self.schema!r}")
                if isinstance(node, exp.Table) and isinstance(node.this, exp.Func) and node.text("db"):
                    return no(f"function {node.text('db')}.{_function_name(node.this)} is qualified by a schema")
            elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
                qualifier = node.this
                if not (isinstance(qualifier, exp.Identifier) and qualifier.name == "pg_catalog"):
                    return no(f"function {qualifier.sql(dialect='postgres')}.{_function_name(node.expression)} is "
                              "qualified by a schema other than pg_catalog")
            elif isinstance(node, exp.Anonymous):
                name = _function_name(node)
                if name not in ALLOWED_FUNCTIONS:
                    return no(f"function {name} is not in the allowed built-ins")
            elif isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
                reason = self._type_refused(node.args.get("kind"))
                if reason:
                    return no(reason)
        return None

    def _type_refused(self, kind: Any) -> str | None:
        if isinstance(kind, exp.Dot) and isinstance(kind.this, exp.Identifier) and isinstance(
                kind.expression, exp.Identifier):
            schema, name = kind.this.name, kind.expression.name
            if schema in self.types and name in self.types[schema]:
                return None
            return f"type {schema}.{name} is not a type of pg_catalog or {self.schema!r}"
        if isinstance(kind, exp.Identifier):
            name = kind.name if kind.quoted else kind.name.lower()
            if any(name in names for names in self.types.values()):
                return None
            return f"type {name} is not a type of pg_catalog or {self.schema!r}"
        return f"type {kind} is not a type of pg_catalog or {self.schema!r}"

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
        # As flywheel_sql_planner, read-only, rolled back; a cancel is raised, never returned.
        if self.explain_plan is None:
            self.explain_plan = plpy.prepare(
                "SELECT error_state, error_message FROM flywheel._plan_generated_sql($1, $2, $3)",
                ["text", "text", "integer"])
        row = plpy.execute(self.explain_plan, [self.schema, sql, self.lock_timeout_ms])[0]
        state = row["error_state"]
        if state is None:
            return Result("pass", 1.0, None, {"planned": True})
        message = row["error_message"] or ""
        if state == "42501" and (f"schema {self.schema}" in message or "permission denied for table" in message):
            # Not the SQL's fault: the DBA has not let the planner role read the schema.
            return Result("error", None, "planner_not_granted",
                          {"error": _short(message.splitlines()[0] if message else state, 500),
                           "hint": grant_statement(self.schema)})
        label = _SQLSTATE_LABELS.get(state, "does_not_plan")
        return Result("fail", 0.0, label, {"reason": _short(message.splitlines()[0] if message else label),
                                           "sqlstate": state})


def _function_name(node: Any) -> str:
    """The name PostgreSQL looks up: folded to lower case unless quoted."""
    this = node.this if isinstance(node, exp.Anonymous) else None
    if isinstance(this, exp.Identifier):
        return str(this.name) if this.quoted else str(this.name).lower()
    return str(node.name).lower() if isinstance(node, exp.Anonymous) else str(node.sql_name()).lower()


def grant_statement(schema: str) -> str:
    """What a DBA runs so that the planner role can plan queries over the schema."""
    quoted = '"' + schema.replace('"', '""') + '"'
    return (f"GRANT USAGE ON SCHEMA {quoted} TO {PLANNER_ROLE}; "
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {quoted} TO {PLANNER_ROLE}")
