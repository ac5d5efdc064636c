"""Runs the registry's validators over a batch of traces, once per statement.

The insert trigger, validate_traces(), revalidate() and check_input() all come here with the
batch as column arrays, and get back result rows and judge jobs as arrays, which SQL writes in
one INSERT each. Nothing here writes: a validator runs set-wise over the batch (read-only,
in a subtransaction where it touches the database) and, only if that raises, again one row at
a time, so a broken validator yields `error` results and never an error in the INSERT. A query
cancel (statement_timeout, pg_cancel_backend) is the exception: every `except` here re-raises it
(reraise_cancel), so the statement fails as the server asked and nothing is committed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from typing import Any

from validators_batch import combined, flag_rows
from validators_builtin import (
    _NO_BASELINE,
    PASS,
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
    _short,
    error_result,
    is_cancel,
    reraise_cancel,
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
        self.selections: dict[tuple[str, tuple[str, ...] | None], Any] = {}  # (purpose, names): its _Plan

    def _plan(self, plpy: Any, name: str, query: str) -> Any:
        plan = self.plans.get(name)
        if plan is None:
            plan = self.plans[name] = plpy.prepare(query)
        return plan

    def load(self, plpy: Any) -> list[Validator]:
        # One short string that changes whenever the visible rows do: a row written by another
        # transaction since the last look has that transaction's xmin, which no row had then; one
        # written again by our own transaction keeps its xmin but has a new ctid (the version it
        # replaced still holds the old one until the transaction ends); a deleted row shortens it.
        # Unordered: a reordering with nothing changed only costs a reload.
        key = plpy.execute(self._plan(
            plpy, "key", "SELECT string_agg(xmin::text || ctid::text, ';') AS k FROM flywheel.validators"))[0]["k"]
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
            self.validators, self.key, self.selections = fresh, key, {}
        return self.validators

    def plan(self, plpy: Any, purpose: str, names: list[str] | None) -> Any:
        """The validators a purpose (and names) selects, prepared for set-wise runs (a _Plan)."""
        validators = self.load(plpy)
        key = (purpose, None if names is None else tuple(names))
        found = self.selections.get(key)
        if found is None:
            found = self.selections[key] = _Plan(_select(validators, purpose, names))
        return found


REGISTRY = Registry()


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


# json.dumps(details, ensure_ascii=False, allow_nan=False, default=str) without making an encoder per call.
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str)


def _details_json(details: dict[str, Any] | None) -> str | None:
    if not details:
        return None  # SQL writes '{}': one constant instead of a jsonb parse per result
    try:
        return _JSON.encode(details)
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
        reraise_cancel(e)
        return [error_result(e)] * len(rows)
    if not hasattr(impl, "check_batch"):
        out = []
        for row in rows:  # pure Python: an exception cannot leave the transaction broken
            try:
                out.append(impl.check(row))
            except Exception as e:
                reraise_cancel(e)
                out.append(error_result(e))
        return out
    try:
        return list(impl.check_batch(plpy, rows, source))
    except Exception as e:
        reraise_cancel(e)  # else the retry below would run the cancelled work again, and commit
        out = []
        for row in rows:
            try:
                out.extend(impl.check_batch(plpy, [row], source))
            except Exception as e:
                reraise_cancel(e)
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
    'check_input' (the input guards, on a trace that is not stored).

    The set-wise path (evaluate_fast) gives exactly what the per-row path (evaluate_exact) gives;
    should it fail, the per-row path decides, raising or warning as it always did."""
    columns = (ids, apps, nodes, node_types, models, prompt_versions, inputs, outputs, expecteds, latencies,
               tokens_ins, tokens_outs, costs, metadatas)
    try:
        return evaluate_fast(plpy, purpose, names, *columns)
    except Exception as e:
        reraise_cancel(e)
        return evaluate_exact(plpy, purpose, names, *columns)


_EMPTY = {k: "{}" for k in ("r_trace_ids", "r_validator_ids", "r_names", "r_versions", "r_statuses", "r_scores",
                            "r_labels", "r_details", "j_trace_ids", "j_validator_ids", "j_versions", "p_trace_ids",
                            "p_rows")}


def _number(x: Any) -> str:
    return "NULL" if x is None else repr(x)


def _result_elements(res: Result) -> tuple[str, str, str, str]:
    """A result's status, score, label and details as elements of the r_ array literals (what
    _text_array and _number_array make of them)."""
    return _element(res.status), _number(_finite(res.score)), _element(res.label), _element(_details_json(res.details))


def _quoted(text: str) -> str:
    """text as one quoted field of a record literal, or element of an array literal."""
    if '"' in text or "\\" in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text + '"'


def packed_rows(trace_ids: list[str], counts: list[int], flat: list[tuple[str, ...]]) -> str:
    """The insert trigger's rows of flywheel._insert_results, one per trace with results, as one
    array literal of that table's row type, which the server parses in C (record_in, array_in):
    cheaper than slicing the r_ arrays per trace in SQL. Fields in the table's column order:
    trace_id, created_at (empty: NULL, the trigger leaves it to the column default),
    validator_ids, validator_versions, statuses, scores, labels, details. flat holds each
    result's array elements (validator id, version, name, status, score, label, details) in
    (trace, validator) order; counts, each trace's number of results."""
    rows = []
    at = 0
    for trace_id, count in zip(trace_ids, counts, strict=True):
        if not count:
            continue
        ids, versions, _names, statuses, scores, labels, details = zip(*flat[at:at + count], strict=True)
        at += count
        fields = ",".join([_quoted("{" + ",".join(col) + "}") for col in (ids, versions, statuses, scores, labels,
                                                                          details)])
        rows.append(_quoted(f"({trace_id},,{fields})"))
    return "{" + ",".join(rows) + "}"


# Statuses and labels repeat across batches.
_cached_element = functools.lru_cache(maxsize=1024, typed=True)(_element)


_NO_BASELINE_ELEMENTS = _result_elements(_NO_BASELINE)


class _AnomalyQuick:
    """Anomaly.check() over the target rows of a batch, with the same arithmetic, written straight
    into array elements: the baselines looked up once per model and node, each z computed once
    per distinct value. Its details, {"z": {metric: z}}, differ for every trace; they are written
    as the JSON encoder and _element would write them (where a z is not finite, they are)."""

    def __init__(self, impl: Anomaly) -> None:
        self.impl = impl
        self.loaded_at = impl.loaded_at
        # (model, node): for each metric with a usable baseline: metric, median, spread, known zs
        self.usable: dict[tuple[Any, Any], list[tuple[str, float, float, dict[Any, tuple[Any, ...]]]]] = {}

    def _usable(self, key: tuple[Any, Any]) -> list[tuple[str, float, float, dict[Any, tuple[Any, ...]]]]:
        found = self.usable.get(key)
        if found is None:
            impl = self.impl
            if len(self.usable) > 1000:
                self.usable.clear()
            found = self.usable[key] = []
            for metric in impl.metrics:
                base = impl.baselines.get((*key, metric))
                if base is not None and not base[0] < impl.min_samples:
                    found.append((metric, base[1], max(1.4826 * base[2], 0.05), {}))
        return found

    def run(self, plpy: Any, head: tuple[str, ...], targets: range | list[int],
            columns: dict[str, list[Any]]) -> dict[int, tuple[str, ...]]:
        impl = self.impl
        impl._load(plpy)
        if impl.loaded_at != self.loaded_at:  # new baselines
            self.usable, self.loaded_at = {}, impl.loaded_at
        models, nodes = columns["model"], columns["node"]
        skipped = head + _NO_BASELINE_ELEMENTS
        out = {}
        for i in targets:
            worst: tuple[Any, ...] | None = None
            parts = []
            finite = True
            usable = self.usable.get((models[i], nodes[i]))
            if usable is None:
                usable = self._usable((models[i], nodes[i]))
            for metric, median, spread, known in usable:
                value = columns[metric][i]
                if value is None:
                    continue
                z = known.get(value)  # (z, rounded, metric, as JSON, finite)
                if z is None:
                    if len(known) > 4096:
                        known.clear()
                    zf = abs(math.log1p(max(float(value), 0.0)) - median) / spread
                    zr = round(zf, 2)
                    z = known[value] = (zf, zr, metric, f'\\"{metric}\\": {zr!r}', math.isfinite(zr))
                parts.append(z)
                finite = finite and z[4]
                if worst is None or z[0] > worst[0]:
                    worst = z
            if worst is None:
                out[i] = skipped
                continue
            failed = worst[0] > impl.threshold
            if not finite:  # the JSON encoder's own way with them
                measured = {z[2]: z[1] for z in parts}
                res = Result("fail", worst[1], worst[2], {"z": measured}) if failed else Result(
                    "pass", worst[1], None, {"z": measured})
                out[i] = head + _result_elements(res)
                continue
            details = '"{\\"z\\": {' + ", ".join([z[3] for z in parts]) + '}}"'
            if failed:
                out[i] = (*head, "fail", repr(worst[1]), _cached_element(worst[2]), details)
            else:
                out[i] = (*head, "pass", repr(worst[1]), "NULL", details)
        return out


class _Entry:
    """A selected validator, prepared once per registry version for set-wise runs: its array
    elements, its kind's set-wise way (if any) and the elements of the result most rows share."""

    __slots__ = ("v", "impl", "head", "applies_key", "way", "prefilters", "shared", "anomaly")

    def __init__(self, v: Validator) -> None:
        self.v = v
        self.head = (_number(v.id), _number(v.version), _element(v.name))
        self.applies_key = tuple(sorted(v.applies_to.items())) if v.applies_to else None
        self.impl: Any = None
        self.way: str | None = None
        self.prefilters: list[Any] = []
        self.shared: tuple[str, ...] | None = None
        if v.mode != "sync":
            return
        try:
            self.impl = v.impl()
        except Exception as e:
            reraise_cancel(e)
            return  # run_validator() turns it into error results
        shared = None
        prefilters = getattr(self.impl, "prefilters", None)
        if prefilters and len({id(p.clean) for p in prefilters}) == 1:
            self.way, self.prefilters, shared = "prefilter", prefilters, prefilters[0].clean
        elif type(self.impl) is Length:
            self.way, shared = "length", PASS
        elif type(self.impl) is Json:
            self.way = "json"
        elif type(self.impl) is Anomaly and len(set(self.impl.metrics)) == len(self.impl.metrics):
            self.way = "anomaly"  # (a metric named twice would be measured once)
            self.anomaly = _AnomalyQuick(self.impl)
        if shared is not None:
            self.shared = self.head + _result_elements(shared)


class _Plan:
    """The selected validators of one purpose (and names), and the combined prefilter patterns."""

    def __init__(self, validators: list[Validator]) -> None:
        self.entries = [_Entry(v) for v in validators]
        self.heads: dict[str, list[int | None]] = {}  # field: the heads its prefilters scan
        for e in self.entries:
            for p in e.prefilters:
                heads = self.heads.setdefault(p.field, [])
                if p.head not in heads:
                    heads.append(p.head)
        self.scans: dict[tuple[str, tuple[int | None, ...]], dict[int | None, Any]] = {}

    def scan_regexes(self, field: str, effective: tuple[int | None, ...]) -> dict[int | None, Any]:
        """For the field's heads as they take effect in a batch: one regex per effective head."""
        key = (field, effective)
        found = self.scans.get(key)
        if found is None:
            as_effective = dict(zip(self.heads[field], effective, strict=True))
            patterns: dict[int | None, set[str]] = {}
            for e in self.entries:
                for p in e.prefilters:
                    if p.field == field:
                        patterns.setdefault(as_effective[p.head], set()).add(p.pattern)
            found = {}
            for head, group in patterns.items():
                try:
                    found[head] = combined(tuple(sorted(group)))
                except Exception as e:  # a combination re2 refuses: every row gets the exact check
                    reraise_cancel(e)
                    found[head] = None
            self.scans[key] = found
        return found


class _Batch:
    """The batch as columns, with what several validators share: row dicts (made only for rows
    that need a per-row check), applies_to targets and the prefilter scans of each field."""

    def __init__(self, plan: _Plan, columns: dict[str, list[Any]], n: int) -> None:
        self.plan, self.columns, self.n = plan, columns, n
        self.rows: dict[int, dict[str, Any]] = {}
        self.targets_cache: dict[Any, list[int]] = {}
        self.flagged_cache: dict[tuple[str, int | None], set[int]] = {}
        self.effective: dict[str, tuple[int | None, ...]] = {}

    def row(self, i: int) -> dict[str, Any]:
        r = self.rows.get(i)
        if r is None:
            r = self.rows[i] = {k: col[i] for k, col in self.columns.items()}
        return r

    def targets(self, key: tuple[tuple[str, frozenset[str]], ...] | None) -> range | list[int]:
        if key is None:
            return range(self.n)
        found = self.targets_cache.get(key)
        if found is None:
            if len(key) == 1:
                (k, allowed), = key
                found = [i for i, x in enumerate(self.columns[k]) if x in allowed]
            else:
                found = [i for i in range(self.n) if all(self.columns[k][i] in allowed for k, allowed in key)]
            self.targets_cache[key] = found
        return found

    def flagged(self, field: str, head: int | None) -> set[int]:
        """Rows that need the exact check of every validator with a prefilter on this field: a match
        of any of them, or no text at all."""
        found = self.flagged_cache.get((field, head))
        if found is not None:
            return found
        effective = self.effective.get(field)
        if effective is None:
            # Where no text is longer than a head, the whole texts are scanned: one scan serves all.
            longest = max(map(len, filter(None, self.columns[field])), default=0)
            effective = self.effective[field] = tuple(
                None if h is None or longest <= h else h for h in self.plan.heads[field])
        nominal, head = head, effective[self.plan.heads[field].index(head)]
        found = self.flagged_cache.get((field, head))
        if found is None:
            regex = self.plan.scan_regexes(field, effective)[head]
            column = self.columns[field]
            texts = [t or "" for t in column] if head is None else [(t or "")[:head] for t in column]
            try:
                found = set(range(self.n)) if regex is None else flag_rows(regex, texts)
            except Exception as e:  # a text re2 cannot take: every row gets the exact check
                reraise_cancel(e)
                found = set(range(self.n))
            if None in column or "" in column:
                found.update(i for i, t in enumerate(column) if not t)
            self.flagged_cache[(field, head)] = found
        self.flagged_cache[(field, nominal)] = found
        return found


def _exact(impl: Any, row: dict[str, Any]) -> Result:
    try:
        return impl.check(row)  # type: ignore[no-any-return]
    except Exception as e:
        reraise_cancel(e)
        return error_result(e)


def _quick(plpy: Any, e: _Entry, targets: range | list[int], batch: _Batch) -> dict[int, tuple[str, ...]]:
    """The elements of the target rows' results that differ from e.shared (all of them when there
    is no shared result), judged set-wise."""
    impl, head = e.impl, e.head
    results: dict[int, Result]
    if e.way == "prefilter":
        flagged: set[int] = set()
        for p in e.prefilters:
            flagged |= batch.flagged(p.field, p.head)
        if not flagged:
            return {}
        results = {i: _exact(impl, batch.row(i)) for i in sorted(flagged) if i in targets}
    elif e.way == "length":
        column = batch.columns[impl.field]
        if impl.count_words:
            outside = [i for i in targets if not impl.passes(column[i])]
        else:  # passes(), inlined
            lo, hi = impl.bounds["min_chars"], impl.bounds["max_chars"]
            lo, hi = 0 if lo is None else lo, math.inf if hi is None else hi
            outside = [i for i in targets if (t := column[i]) is None or not lo <= len(t) <= hi]
        results = {i: _exact(impl, batch.row(i)) for i in outside}
    elif e.way == "json":  # outputs repeat (tool calls): parse each distinct one once
        column = batch.columns[impl.field]
        by_text: dict[Any, Result] = {}
        results = {}
        for i in targets:
            res = by_text.get(column[i])
            if res is None:
                res = by_text[column[i]] = _exact(impl, {impl.field: column[i]})  # check() reads only it
            results[i] = res
    else:
        return e.anomaly.run(plpy, head, targets, batch.columns)  # type: ignore[no-any-return]
    return _written(head, results)


def _written(head: tuple[str, ...], results: dict[int, Result]) -> dict[int, tuple[str, ...]]:
    made: dict[int, tuple[str, ...]] = {}  # id(result): its elements (kinds share result objects)
    out = {}
    for i, res in results.items():
        elements = made.get(id(res))
        if elements is None:
            elements = made[id(res)] = head + _result_elements(res)
        out[i] = elements
    return out


def evaluate_fast(plpy: Any, purpose: str, names: list[str] | None, *columns: list[Any] | None) -> dict[str, str]:
    """evaluate() set-wise: built-in kinds judge the batch with one scan per field and shared
    results; a row only gets a per-row check() where a scan says it may not be clean."""
    ids = columns[0] or []
    n = len(ids)
    if not n:
        return dict(_EMPTY)
    if len(columns) != len(_ROW_KEYS) or any(c is None or len(c) != n for c in columns):
        raise ValueError("the batch's columns differ in length")
    plan = REGISTRY.plan(plpy, purpose, names)
    batch = _Batch(plan, dict(zip(_ROW_KEYS, columns, strict=True)), n)  # type: ignore[arg-type]
    sampling = purpose in ("insert", "revalidate")
    source = "record" if purpose == "check_input" else "table"
    jobs: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    per_validator: list[list[Any]] = []
    counts = [0] * n  # results per trace
    for e in plan.entries:
        v = e.v
        targets = batch.targets(e.applies_key)
        if sampling and v.sample_rate < 1:
            targets = [i for i in targets if sampled(ids[i], v.id, v.sample_rate)]
        if not targets:
            continue
        if v.mode == "async":
            if purpose in ("insert", "revalidate"):
                jobs[0].extend(ids[i] for i in targets)
                jobs[1].extend([v.id] * len(targets))
                jobs[2].extend([v.version] * len(targets))
            continue
        shared = e.shared
        others = None
        if e.way is not None:
            try:
                others = _quick(plpy, e, targets, batch)
            except Exception as failure:
                reraise_cancel(failure)
                others = None  # the per-row path below isolates the failure
        if others is None:
            shared = None
            results = run_validator(plpy, v, [batch.row(i) for i in targets], source)
            if len(results) != len(targets):
                raise RuntimeError(f"validator {v.name} returned {len(results)} results for {len(targets)} traces")
            others = _written(e.head, dict(zip(targets, results, strict=True)))
        if type(targets) is range:
            counts = [c + 1 for c in counts]
            outcomes: list[Any] = [shared] * n
        else:
            outcomes = [None] * n
            for i in targets:
                counts[i] += 1
                outcomes[i] = shared
        for i, elements in others.items():
            outcomes[i] = elements
        per_validator.append(outcomes)
    out = dict(_EMPTY)
    # In (trace, validator) order; then each column of the results as one array literal.
    flat = [x for found in zip(*per_validator, strict=True) for x in found if x is not None]
    if flat:
        for k, col in zip(("r_validator_ids", "r_versions", "r_names", "r_statuses", "r_scores", "r_labels",
                           "r_details"), zip(*flat, strict=True), strict=True):
            out[k] = "{" + ",".join(col) + "}"
        if purpose == "insert":  # the trigger does not need the names
            out["r_names"] = "{}"
        trace_ids = list(map(repr, ids)) if None not in ids else ["NULL" if t is None else repr(t) for t in ids]
        per_trace = [",".join([t] * c) for t, c in zip(trace_ids, counts, strict=True) if c]
        out["r_trace_ids"] = "{" + ",".join(per_trace) + "}"
        # The traces with results, in the order of their packed rows (the trigger marks them).
        out["p_trace_ids"] = "{" + ",".join([t for t, c in zip(trace_ids, counts, strict=True) if c]) + "}"
        if purpose == "insert":
            out["p_rows"] = packed_rows(trace_ids, counts, flat)
    if jobs[0]:
        for k, values in zip(("j_trace_ids", "j_validator_ids", "j_versions"), jobs, strict=True):
            out[k] = _number_array(values)
    return out


def evaluate_exact(plpy: Any, purpose: str, names: list[str] | None, ids: list[int | None] | None, apps: list[Any],
                   nodes: list[Any], node_types: list[Any], models: list[Any], prompt_versions: list[Any],
                   inputs: list[Any], outputs: list[Any], expecteds: list[Any], latencies: list[Any],
                   tokens_ins: list[Any], tokens_outs: list[Any], costs: list[Any],
                   metadatas: list[Any]) -> dict[str, str]:
    """evaluate() one row at a time: each validator's check() (or check_batch()) on row dicts, the
    reference that evaluate_fast must equal."""
    out: dict[str, list[Any]] = {k: [] for k in ("r_trace_ids", "r_validator_ids", "r_names", "r_versions",
                                                 "r_statuses", "r_scores", "r_labels", "r_details",
                                                 "j_trace_ids", "j_validator_ids", "j_versions",
                                                 "p_trace_ids")}
    p_rows = "{}"
    try:
        n = len(ids or [])
        rows = [
            dict(zip(_ROW_KEYS, values, strict=True))
            for values in zip(ids or [], apps, nodes, node_types, models, prompt_versions, inputs, outputs, expecteds,
                              latencies, tokens_ins, tokens_outs, costs, metadatas, strict=True)
        ] if n else []
        if not rows:
            return {**_as_literals(out), "p_rows": p_rows}
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
            out["p_trace_ids"].append(rows[i]["id"])
            out["r_trace_ids"] += [rows[i]["id"]] * len(found)
            out["r_validator_ids"] += [v.id for v, _ in found]
            if purpose != "insert":  # the trigger does not need the names
                out["r_names"] += [v.name for v, _ in found]
            out["r_versions"] += [v.version for v, _ in found]
            out["r_statuses"] += [res.status for _, res in found]
            out["r_scores"] += [_finite(res.score) for _, res in found]
            out["r_labels"] += [res.label for _, res in found]
            out["r_details"] += [_details_json(res.details) for _, res in found]
        if purpose == "insert":
            kept = [found for found in per_row if found]
            p_rows = packed_rows([_number(t) for t in out["p_trace_ids"]], [len(found) for found in kept],
                                 [(str(v.id), str(v.version), _element(v.name), *_result_elements(res))
                                  for found in kept for v, res in found])
    except Exception as e:
        if purpose != "insert" or is_cancel(e):
            raise
        # A bug here must never cost the application its INSERT: say so in the server log.
        plpy.warning(f"dbflywheel: validators did not run on this INSERT: {type(e).__name__}: {e}")
        return {**_as_literals({k: [] for k in out}), "p_rows": "{}"}
    return {**_as_literals(out), "p_rows": p_rows}


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
        return _one_line(str(e))
    except Exception as e:  # a shape no check foresaw: still one line, never a Python traceback
        reraise_cancel(e)
        return _one_line(f"{kind}: the config is not valid ({e})")
    return None


def _one_line(message: str) -> str:
    return _short(" ".join(message.split()), 500)
