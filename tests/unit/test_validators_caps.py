"""Attack tests (issue 12): a validator's cost is linear in its input and capped, a query cancel
is never turned into an `error` result, and a bad config is refused in one clear line."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import fewshot_embedder as fe
import pytest
import validators_builtin as b
import validators_pii as pii
import validators_runtime as rt
from fuzzing import VALID_CONFIGS, configs, examples
from hypothesis import given, settings
from plpy_stub import SPIError, StubPlpy, signed


def row(**cols: Any) -> dict[str, Any]:
    base = {"id": 1, "app": "a", "node": "n", "node_type": "writer", "model": "m", "prompt_version": "v1",
            "input": "q", "output": "a", "expected": None, "latency_ms": 100.0, "tokens_in": 10, "tokens_out": 20,
            "cost_usd": 0.001, "metadata": "{}"}
    return {**base, **cols}


class QueryCanceled(SPIError):  # noqa: N818 (PL/Python's name: plpy.spiexceptions.QueryCanceled)
    sqlstate = "57014"


# --- a query cancel is re-raised, never an `error` result -------------------------------------

class _CancelledSql(b.Sql):
    """An sql validator whose query the server cancels (statement_timeout, pg_cancel_backend)."""

    def __init__(self) -> None:
        super().__init__({"expression": "true"})

    def check_batch(self, plpy: Any, rows: list[dict[str, Any]], source: str) -> list[b.Result]:
        raise QueryCanceled("canceling statement due to statement timeout")


def test_run_validator_re_raises_a_cancel() -> None:
    v = rt.Validator({"id": 1, "name": "s", "version": 1, "kind": "sql", "mode": "sync", "enabled": True,
                      "config": '{"expression": "true"}', "applies_to": "{}", "sample_rate": 1})
    v._impl = _CancelledSql()
    with pytest.raises(QueryCanceled):
        rt.run_validator(StubPlpy(), v, [row()], "table")


def test_an_spierror_with_the_cancel_sqlstate_counts_as_a_cancel() -> None:
    e = SPIError("canceling statement due to user request")
    e.sqlstate = "57014"  # type: ignore[attr-defined]
    assert b.is_cancel(e) and b.is_cancel(QueryCanceled("x"))
    assert not b.is_cancel(SPIError("division by zero")) and not b.is_cancel(ValueError("x"))


def test_a_python_validator_does_not_swallow_a_cancel() -> None:
    class Plpy(StubPlpy):
        def execute(self, query: Any, args: list[Any] | None = None, limit: int = 0) -> list[dict[str, Any]]:
            raise QueryCanceled("canceling statement due to statement timeout")

    impl = b.Python(signed({"body": "plpy.execute('SELECT pg_sleep(10)')\nreturn True"}))
    with pytest.raises(QueryCanceled):
        impl.check_batch(Plpy(), [row()], "table")


def test_the_embedder_does_not_swallow_a_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    def cancelled(*args: Any) -> Any:
        raise QueryCanceled("canceling statement due to user request")

    monkeypatch.setattr(fe, "literals_and_keys", cancelled)
    with pytest.raises(QueryCanceled):
        fe.embed_rows(StubPlpy(), fe.NAME, ["q"])


# --- caps: the work a validator does is bounded --------------------------------------------------

def test_pii_findings_are_capped_and_linear() -> None:
    text = "10.10.10.10 " * 24000  # the audit's payload: 32.6 s in one INSERT, quadratic in findings
    res = b.Pii({}).check(row(input=text, output=None))
    assert res.status == "fail"
    assert res.score == pii.MAX_FINDINGS
    assert res.details is not None and res.details["truncated"] == ["input"]


def test_pii_examines_at_most_max_chars_per_field() -> None:
    hidden = "x" * pii.MAX_CHARS + " mail me at a@example.com"
    assert b.Pii({}).check(row(input=hidden, output=None)).status == "pass"
    assert b.Pii({}).check(row(input=hidden[-40:], output=None)).status == "fail"


@pytest.mark.timeout(30)
def test_redaction_of_dense_personal_data_is_linear() -> None:
    # Redaction is not capped (everything must go), so it has to be linear: 24000 findings took
    # half a minute when each finding was compared with all the earlier ones.
    text = "10.10.10.10 " * 24000 + "4111 1111 1111 1111 " * 2000
    redacted = pii.redact(text)
    assert redacted is not None and "10.10" not in redacted and "4111" not in redacted
    assert redacted.count("[IP]") == 24000 and redacted.count("[CARD]") == 2000


def test_the_embedder_caps_its_input_and_its_memory() -> None:
    huge = "select the customers who ordered twice " * 200_000  # 8 MB, as in the audit (1.3 GB backend)
    tracemalloc.start()
    try:
        present, literals, keys = fe.literals_and_keys(fe.NAME, [huge])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert present == [0]
    assert peak < 120 * 2**20, f"peak {peak / 2**20:.0f} MB for an 8 MB text"
    # What counts is the first MAX_CHARS characters of the normalised text; the cache key still
    # covers the whole text, so two long texts that differ late never share a cached answer.
    head = fe.normalize(huge)[: fe.MAX_CHARS]
    assert fe.literals_and_keys(fe.NAME, [head])[1] == literals
    assert fe.input_key(huge + " x") != fe.input_key(huge) == keys[0]


def test_length_counts_words_without_a_list_of_every_word() -> None:
    text = "a " * 3_000_000
    impl = b.Length({"max_words": 10})
    tracemalloc.start()
    try:
        res = impl.check(row(output=text))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.label == "too_long" and res.details is not None and res.details["words"] == 3_000_000
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MB"
    for t in ["", " ", "a", " a ", "a\u3000b", "x y\tz\n", "ab " * 10]:
        assert b.count_words(t) == len(t.split())


@pytest.mark.timeout(60)
def test_unique_items_is_not_quadratic() -> None:
    items = [{"k": i} for i in range(30_000)]
    impl = b.Json({"schema": {"type": "array", "uniqueItems": True}})
    assert impl.check(row(output=json.dumps(items))).status == "pass"
    assert impl.check(row(output=json.dumps([*items, {"k": 5}]))).label == "schema_mismatch"
    assert impl.check(row(output=json.dumps([1, True]))).status == "pass"  # jsonschema: true is not 1
    assert impl.check(row(output=json.dumps([1, 1.0]))).label == "schema_mismatch"


@pytest.mark.timeout(60)
def test_a_schema_that_branches_on_every_level_runs_out_of_budget_not_time() -> None:
    # anyOf over a recursive $ref: each level of nesting doubles the work (2**40 here).
    schema = {"anyOf": [{"items": {"$ref": "#"}, "minItems": 5}, {"items": {"$ref": "#"}}]}
    impl = b.Json({"schema": schema})
    res = impl.check(row(output="[" * 40 + "]" * 40))
    assert (res.status, res.label) == ("fail", "too_complex")
    assert impl.check(row(output="[[[]]]")).status == "pass"


@pytest.mark.timeout(60)
def test_a_schema_pattern_is_matched_in_linear_time() -> None:
    impl = b.Json({"schema": {"type": "string", "pattern": "^(a+)+$"}})
    assert impl.check(row(output=json.dumps("a" * 40 + "!"))).label == "schema_mismatch"
    assert impl.check(row(output=json.dumps("aaa"))).status == "pass"
    with pytest.raises(b.ConfigError, match="RE2"):
        b.Json({"schema": {"type": "string", "pattern": "(a)\\1"}})


# --- $ref: nothing outside the schema is ever fetched ------------------------------------------

@pytest.mark.parametrize("schema", [
    {"$ref": "http://127.0.0.1:9/s.json"},
    {"properties": {"a": {"$ref": "https://example.com/s.json#/x"}}},
    {"$id": "http://127.0.0.1:9/base/", "items": {"$ref": "other.json"}},
    {"$dynamicRef": "http://127.0.0.1:9/d.json"},
    {"$schema": "http://127.0.0.1:9/meta.json"},
])
def test_a_remote_reference_is_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(b.ConfigError, match="outside the schema|not a valid JSON Schema|unknown \\$schema"):
        b.Json({"schema": schema})


def test_local_references_still_work() -> None:
    schema = {"$defs": {"n": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/$defs/n"}}
    impl = b.Json({"schema": schema})
    assert impl.check(row(output="[1, 2]")).status == "pass"
    assert impl.check(row(output='[1, "x"]')).label == "schema_mismatch"
    nested = {"$id": "http://example.com/root", "$defs": {"b": {"$id": "http://example.com/b", "type": "string"}},
              "items": {"$ref": "b"}}
    assert b.Json({"schema": nested}).check(row(output='["x"]')).status == "pass"


def test_a_stored_remote_reference_errors_at_run_time_without_fetching(monkeypatch: pytest.MonkeyPatch) -> None:
    # A config stored before this check (or written to the table directly) must not fetch either.
    import urllib.request

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the validator opened a URL")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    impl = b.Json({})
    impl.validator = b._Schema({"$ref": "http://127.0.0.1:9/s.json"})
    res = b.Json.check(impl, row(output="{}"))
    assert res.status in ("error", "fail") and res.details is not None


# --- bad shapes: one clear line -----------------------------------------------------------------

BAD_SHAPES = [
    ("pii", {"fields": [[]]}), ("pii", {"fields": [{}]}), ("pii", {"categories": [[]]}), ("pii", {"fields": "input"}),
    ("anomaly", {"metrics": [[]]}), ("anomaly", {"metrics": [{"a": 1}]}), ("anomaly", {"threshold": "x"}),
    ("language", {"allowed": [[]]}), ("language", {"allowed": ["en"], "field": []}),
    ("language", {"allowed": ["en"], "min_chars": 1.5}),
    ("regex", {"pattern": "a", "label": {}}), ("regex", {"pattern": ["a"]}), ("regex", {"pattern": "a", "field": {}}),
    ("length", {"max_chars": [1]}), ("length", {"max_chars": 5, "field": [[]]}),
    ("json", {"strip_code_fence": []}), ("json", {"schema": []}), ("json", {"field": {"a": []}}),
    ("refusal", {"count_dont_know": {}}), ("refusal", {"field": [1]}),
    ("injection", {"threshold": []}), ("injection", {"field": None}),
    ("classifier", {"labels": [[]]}), ("classifier", {"case_sensitive": "yes"}),
    ("python", {"body": []}), ("python", {"body": "return True", "time_limit_ms": "x"}),
    ("python", {"body": "return True", "time_limit_ms": -5}),
    ("pii", {"time_limit_ms": "soon"}), ("regex", {"pattern": "a", "description": []}),
    ("regex", {"pattern": "a", "input_guard": "yes"}),
]


@pytest.mark.parametrize(("kind", "config"), BAD_SHAPES)
def test_a_config_of_the_wrong_shape_is_refused_in_one_line(kind: str, config: dict[str, Any]) -> None:
    problem = rt.check_config(StubPlpy(), kind, json.dumps(config), "{}")
    assert problem is not None, f"accepted {config}"
    assert "\n" not in problem and "Traceback" not in problem and "TypeError" not in problem, problem
    assert problem.startswith(kind), problem


def test_check_config_survives_any_exception_from_a_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def __init__(self, config: dict[str, Any]) -> None:
            raise TypeError("unhashable type: 'list'")

    monkeypatch.setitem(rt.SYNC_KINDS, "length", Broken)
    problem = rt.check_config(StubPlpy(), "length", "{}", "{}")
    assert problem is not None and "TypeError" not in problem and "\n" not in problem


# --- generated configs of every shape (make fuzz runs more of them, with random seeds) ----------

_ROWS = [row(), row(input="mail a@b.co, 10.0.0.1", output='```json\n{"a": [1, 1]}\n```'),
         row(input=None, output=None, expected="b"), row(output="b", expected="B")]


@settings(max_examples=examples(400), deadline=None)
@given(generated=configs([k for k in VALID_CONFIGS if k != "sql"]))
def test_a_generated_config_is_refused_in_one_line_or_works(generated: tuple[str, Any]) -> None:
    kind, config = generated
    problem = rt.check_config(StubPlpy(), kind, json.dumps(config), "{}")
    if problem is not None:
        assert problem.startswith(kind) or problem.startswith("config"), problem
        assert "\n" not in problem and len(problem) <= 500, problem
        assert "Traceback" not in problem and "TypeError" not in problem, problem
        return
    impl = rt.SYNC_KINDS[kind](config)
    for r in _ROWS:  # a config that was accepted judges any row without raising
        if hasattr(impl, "check"):
            assert impl.check(r).status in ("pass", "fail", "skipped", "error")
