"""Runs the registry's validators over a batch of traces, once per statement.

The insert trigger, validate_traces(), revalidate() and check_input() all come here with the
batch as column arrays, and get back result rows and judge jobs as arrays, which SQL writes in
one INSERT each. Nothing here writes: a validator runs set-wise over the batch (read-only,
in a subtransaction where it touches the database) and, only if that raises, again one row at
a time, so a broken validator yields `error` results and never an error in the INSERT.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from validators_builtin import (
    Anomaly,
    Classifier,
    ConfigError,
    Injection,
    Json,
    Language,
    Length,
    Pii,
    Python,
    Refusal,
    Regex,
    Result,
    Sql,
    error_result,
)


def SqlCodegen(config: dict[str, Any], plpy: Any = None) -> Any:  # noqa: N802 (stands in for the class)
    # sqlglot takes ~0.3 s to import: only sessions that check generated SQL pay for it.
    from validators_sql_codegen import SqlCodegen as cls

    return cls(config, plpy)


SYNC_KINDS: dict[str, Any] = {
    "sql": Sql, "regex": Regex, "length": Length, "json": Json, "sql_codegen": SqlCodegen, "pii": Pii,
    "injection": Injection, "refusal": Refusal, "language": Language, "classifier": Classifier,
    "anomaly": Anomaly, "python": Python,
}
ASYNC_KINDS = ("llm_judge", "llm_pairwise")
KINDS = (*SYNC_KINDS, *ASYNC_KINDS)
# Kinds whose constructor checks the config against the database (compiles, looks up the schema).
_CHECKED_IN_DATABASE = {"sql", "sql_codegen"}
INPUT_GUARD_KINDS = ("pii", "injection", "language")
APPLIES_TO_KEYS = ("app", "node", "node_type", "model", "prompt_version")


def parse_applies_to(value: Any) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict):
        raise ConfigError('applies_to must be a JSON object such as {"node_type": "codegen", "app": ["a", "b"]}')
    unknown = set(value) - set(APPLIES_TO_KEYS)
    if unknown:
        raise ConfigError(f"applies_to: unknown key(s) {sorted(unknown)}; known: {list(APPLIES_TO_KEYS)}")
    out = {}
    for key, allowed in value.items():
        items = [allowed] if isinstance(allowed, str) else allowed
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"applies_to: {key} must be a string or a non-empty list of strings")
        out[key] = frozenset(items)
    return out


def sampled(trace_id: int | None, validator_id: int, rate: float) -> bool:
    """Deterministic per (trace, validator): a rerun samples the same traces."""
    if rate >= 1:
        return True
    if rate <= 0 or trace_id is None:
        return rate > 0
    digest = hashlib.blake2b(f"{trace_id}:{validator_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


class Validator:
    __slots__ = ("id", "name", "version", "kind", "mode", "config", "applies_to", "sample_rate", "enabled", "_impl")

    def __init__(self, row: dict[str, Any]) -> None:
        self.id, self.name, self.version = row["id"], row["name"], row["version"]
        self.kind, self.mode, self.enabled = row["kind"], row["mode"], row["enabled"]
        self.config = json.loads(row["config"])
        self.sample_rate = float(row["sample_rate"])
        try:
            self.applies_to: dict[str, frozenset[str]] | None = parse_applies_to(json.loads(row["applies_to"]))
        except ConfigError:
            self.applies_to = None  # reported as an error result when it runs
        self._impl: Any = None

    @property
    def input_guard(self) -> bool:
        return self.kind in INPUT_GUARD_KINDS or self.config.get("input_guard") is True

    def applies(self, row: dict[str, Any]) -> bool:
        if self.applies_to is None:
            return True
        return all(row.get(key) in allowed for key, allowed in self.applies_to.items())

    def impl(self) -> Any:
        if self._impl is None:
            if self.applies_to is None:
                raise ConfigError("applies_to is not valid; recreate the validator")
            cls = SYNC_KINDS.get(self.kind)
            if cls is None:
                raise ConfigError(f"kind {self.kind!r} does not run in the database")
            self._impl = cls(self.config)
        return self._impl


class Registry:
    """The validators table, parsed once per session and again only when a row changed (xmin)."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.validators: list[Validator] = []
        self.plans: dict[str, Any] = {}

    def _plan(self, plpy: Any, name: str, query: str) -> Any:
        plan = self.plans.get(name)
        if plan is None:
            plan = self.plans[name] = plpy.prepare(query)
        return plan

    def load(self, plpy: Any) -> list[Validator]:
        # One short string that changes whenever any row does (xmin): cheap to fetch and compare.
        key = plpy.execute(self._plan(
            plpy, "key", "SELECT string_agg(id || ':' || xmin, ',' ORDER BY id) AS k FROM flywheel.validators"))[0]["k"]
        if key != self.key:
            full = plpy.execute(self._plan(
                plpy, "all",
                "SELECT id, name, version, kind, config::text AS config, mode, applies_to::text AS applies_to,"
                " sample_rate, enabled FROM flywheel.validators ORDER BY id"))
            old = {(v.id, v.version): v for v in self.validators}
            fresh = []
            for r in full:
                v = Validator(r)
                same = old.get((v.id, v.version))
                if same is not None and same.config == v.config:
                    v._impl = same._impl  # keep compiled patterns, prepared plans and caches
                fresh.append(v)
            self.validators, self.key = fresh, key
        return self.validators


REGISTRY = Registry()


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def _details_json(details: dict[str, Any] | None) -> str | None:
    if not details:
        return None  # SQL writes '{}': one constant instead of a jsonb parse per result
    try:
        return json.dumps(details, ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:
        return json.dumps({"value": str(details)}, ensure_ascii=False)


# The results go back to SQL as array literals (text), which array_in parses in C: PL/Python
# would otherwise convert every element of every returned array through str() and the type's
# input function, which cost more than running the validators.
_PLAIN = re.compile(r"[A-Za-z0-9_.:-]+")  # array elements that need no quotes


def _element(x: Any) -> str:
    if x is None:
        return "NULL"
    if x == "{}":
        return '"{}"'
    x = str(x)
    if _PLAIN.fullmatch(x) and x.upper() != "NULL":
        return x
    return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text_array(items: list[Any]) -> str:
    # Statuses, names and labels repeat across a batch: quote each distinct value once.
    quoted: dict[Any, str] = {}
    out = []
    for x in items:
        if x is not None and type(x) is not str:  # 1 == 1.0 == True: only strings share a quoting
            out.append(_element(x))
            continue
        q = quoted.get(x)
        if q is None:
            q = quoted[x] = _element(x)
        out.append(q)
    return "{" + ",".join(out) + "}"


def _number_array(items: list[Any]) -> str:
    if None not in items:
        return "{" + ",".join(map(repr, items)) + "}"
    return "{" + ",".join("NULL" if x is None else repr(x) for x in items) + "}"


_ROW_KEYS = ("id", "app", "node", "node_type", "model", "prompt_version", "input", "output", "expected", "latency_ms",
             "tokens_in", "tokens_out", "cost_usd", "metadata")
_TEXT_COLUMNS = ("r_names", "r_statuses", "r_labels", "r_details")


def _as_literals(out: dict[str, list[Any]]) -> dict[str, str]:
    return {k: (_text_array(v) if k in _TEXT_COLUMNS else _number_array(v)) for k, v in out.items()}


def run_validator(plpy: Any, v: Validator, rows: list[dict[str, Any]], source: str) -> list[Result]:
    """Set-wise first; only when that raises, one row at a time, each isolated."""
    try:
        impl = v.impl()
    except Exception as e:
        return [error_result(e)] * len(rows)
    if not hasattr(impl, "check_batch"):
        out = []
        for row in rows:  # pure Python: an exception cannot leave the transaction broken
            try:
                out.append(impl.check(row))
            except Exception as e:
                out.append(error_result(e))
        return out
    try:
        return list(impl.check_batch(plpy, rows, source))
    except Exception:
        out = []
        for row in rows:
            try:
                out.extend(impl.check_batch(plpy, [row], source))
            except Exception as e:
                out.append(error_result(e))
        return out


def _select(validators: list[Validator], purpose: str, names: list[str] | None) -> list[Validator]:
    if names is None:
        if purpose == "check_input":
            return [v for v in validators if v.enabled and v.mode == "sync" and v.input_guard]
        if purpose == "insert":
            return [v for v in validators if v.enabled]
        return [v for v in validators if v.enabled and v.mode == "sync"]
    by_name = {v.name: v for v in validators}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"no validator named {', '.join(missing)}")
    chosen = [by_name[n] for n in dict.fromkeys(names)]
    if purpose == "validate":
        not_sync = [v.name for v in chosen if v.mode != "sync"]
        if not_sync:
            raise ValueError(f"{', '.join(not_sync)} run(s) asynchronously (LLM judge): the judge queue runs them, "
                             "not validate_traces")
    return chosen


def evaluate(plpy: Any, purpose: str, names: list[str] | None, ids: list[int | None] | None, apps: list[Any],
             nodes: list[Any], node_types: list[Any], models: list[Any], prompt_versions: list[Any],
             inputs: list[Any], outputs: list[Any], expecteds: list[Any], latencies: list[Any],
             tokens_ins: list[Any], tokens_outs: list[Any], costs: list[Any], metadatas: list[Any]) -> dict[str, str]:
    """purpose: 'insert' (the trigger: enabled validators, sampled, async ones enqueued), 'validate'
    (named or all enabled sync ones, every trace), 'revalidate' (one named validator, sampled) or
    'check_input' (the input guards, on a trace that is not stored)."""
    out: dict[str, list[Any]] = {k: [] for k in ("r_trace_ids", "r_validator_ids", "r_names", "r_versions",
                                                 "r_statuses", "r_scores", "r_labels", "r_details",
                                                 "j_trace_ids", "j_validator_ids", "j_versions",
                                                 "p_trace_ids", "p_firsts", "p_lasts")}
    try:
        n = len(ids or [])
        rows = [
            dict(zip(_ROW_KEYS, values, strict=True))
            for values in zip(ids or [], apps, nodes, node_types, models, prompt_versions, inputs, outputs, expecteds,
                              latencies, tokens_ins, tokens_outs, costs, metadatas, strict=True)
        ] if n else []
        if not rows:
            return _as_literals(out)
        sampling = purpose in ("insert", "revalidate")
        source = "record" if purpose == "check_input" else "table"
        # Results per batch row, so that they come out in (trace, validator) order.
        per_row: list[list[tuple[Validator, Result]]] = [[] for _ in rows]
        for v in _select(REGISTRY.load(plpy), purpose, names):
            targets = range(n) if not v.applies_to else [i for i in range(n) if v.applies(rows[i])]
            if sampling and v.sample_rate < 1:
                targets = [i for i in targets if sampled(rows[i]["id"], v.id, v.sample_rate)]
            if not targets:
                continue
            if v.mode == "async":
                if purpose in ("insert", "revalidate"):
                    out["j_trace_ids"] += [rows[i]["id"] for i in targets]
                    out["j_validator_ids"] += [v.id] * len(targets)
                    out["j_versions"] += [v.version] * len(targets)
                continue
            results = run_validator(plpy, v, [rows[i] for i in targets], source)
            if len(results) != len(targets):
                raise RuntimeError(f"validator {v.name} returned {len(results)} results for {len(targets)} traces")
            for i, res in zip(targets, results, strict=True):
                per_row[i].append((v, res))
        for i, found in enumerate(per_row):
            if not found:
                continue
            # Where this trace's results sit in the r_ arrays (1-based, inclusive): the trigger
            # slices them into one packed row per trace.
            out["p_trace_ids"].append(rows[i]["id"])
            out["p_firsts"].append(len(out["r_trace_ids"]) + 1)
            out["p_lasts"].append(len(out["r_trace_ids"]) + len(found))
            out["r_trace_ids"] += [rows[i]["id"]] * len(found)
            out["r_validator_ids"] += [v.id for v, _ in found]
            if purpose != "insert":  # the trigger does not need the names
                out["r_names"] += [v.name for v, _ in found]
            out["r_versions"] += [v.version for v, _ in found]
            out["r_statuses"] += [res.status for _, res in found]
            out["r_scores"] += [_finite(res.score) for _, res in found]
            out["r_labels"] += [res.label for _, res in found]
            out["r_details"] += [_details_json(res.details) for _, res in found]
    except Exception as e:
        if purpose != "insert":
            raise
        # A bug here must never cost the application its INSERT: say so in the server log.
        plpy.warning(f"dbflywheel: validators did not run on this INSERT: {type(e).__name__}: {e}")
        return _as_literals({k: [] for k in out})
    return _as_literals(out)


def check_config(plpy: Any, kind: str, config: str, applies_to: str) -> str | None:
    """create_validator's check: None when the config works, else what is wrong with it."""
    try:
        parse_applies_to(json.loads(applies_to))
        if kind in ASYNC_KINDS:
            return None  # flywheel._check_llm_judge_config() checks a judge's config
        cls = SYNC_KINDS.get(kind)
        if cls is None:
            raise ConfigError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
        parsed = json.loads(config)
        if not isinstance(parsed, dict):
            raise ConfigError("config must be a JSON object")
        if kind in _CHECKED_IN_DATABASE:
            cls(parsed, plpy)
        else:
            cls(parsed)
    except ConfigError as e:
        return str(e)
    return None
