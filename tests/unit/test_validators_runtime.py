"""plpython/validators_runtime.py under the stub plpy: selection, applies_to, sampling, isolation."""

from __future__ import annotations

import json
from typing import Any

import pytest
import validators_runtime as rt
from plpy_stub import StubPlpy, signed


def validator(id: int, name: str, kind: str, config: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"id": id, "name": name, "version": kw.get("version", 1), "kind": kind, "config": json.dumps(config),
            "mode": kw.get("mode", "sync"), "applies_to": json.dumps(kw.get("applies_to", {})),
            "sample_rate": kw.get("sample_rate", 1.0), "enabled": kw.get("enabled", True)}


def stub(*validators: dict[str, Any]) -> StubPlpy:
    return StubPlpy({"string_agg(": [{"k": json.dumps(validators)}], "sample_rate, enabled": list(validators)})


def run(plpy: StubPlpy, rows: list[dict[str, Any]], purpose: str = "insert", names: list[str] | None = None) -> dict[str, Any]:
    cols = ["id", "app", "node", "node_type", "model", "prompt_version", "input", "output", "expected",
            "latency_ms", "tokens_in", "tokens_out", "cost_usd", "metadata"]
    full = [{c: r.get(c) for c in cols} for r in rows]
    return rt.evaluate(plpy, purpose, names, *[[r[c] for r in full] for c in cols])


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt, "REGISTRY", rt.Registry())


def parse(literal: str) -> list[str | None]:
    """A flat array literal of simple values (no quotes inside) back to a list."""
    inner = literal[1:-1]
    return [None if x == "NULL" else x.strip('"') for x in inner.split(",")] if inner else []


def test_results_come_back_as_array_literals_per_validator_and_trace() -> None:
    plpy = stub(validator(1, "short", "length", {"max_chars": 5}), validator(2, "banned", "regex", {"pattern": "x"}))
    out = run(plpy, [{"id": 10, "output": "abc"}, {"id": 11, "output": "xxxxxxx"}])
    # In (trace, validator) order, which the unique index of validation_results appends fastest.
    assert parse(out["r_trace_ids"]) == ["10", "10", "11", "11"]
    assert parse(out["r_validator_ids"]) == ["1", "2", "1", "2"]
    assert parse(out["r_statuses"]) == ["pass", "pass", "fail", "fail"]
    assert out["j_trace_ids"] == "{}"


def test_text_literals_survive_quotes_backslashes_and_null() -> None:
    assert rt._text_array(['a"b', "c\\d", None]) == '{"a\\"b","c\\\\d",NULL}'
    assert rt._text_array(["pass", "null", "two words", "{}", "", "a,b"]) == '{pass,"null","two words","{}","","a,b"}'


def test_applies_to_and_disabled_validators() -> None:
    plpy = stub(validator(1, "codegen_only", "length", {"max_chars": 5}, applies_to={"node_type": "codegen"}),
                validator(2, "off", "length", {"max_chars": 5}, enabled=False))
    out = run(plpy, [{"id": 1, "node_type": "codegen", "output": "a"}, {"id": 2, "node_type": "writer", "output": "a"}])
    assert parse(out["r_trace_ids"]) == ["1"]


def test_async_validators_queue_jobs_instead_of_running() -> None:
    plpy = stub(validator(7, "judge", "llm_judge", {}, mode="async", version=3))
    out = run(plpy, [{"id": 1}, {"id": 2}])
    assert (out["j_trace_ids"], out["j_validator_ids"], out["j_versions"]) == ("{1,2}", "{7,7}", "{3,3}")
    assert out["r_trace_ids"] == "{}"


def test_sampling_is_deterministic_and_near_the_rate() -> None:
    picked = [t for t in range(10_000) if rt.sampled(t, 5, 0.3)]
    assert picked == [t for t in range(10_000) if rt.sampled(t, 5, 0.3)]
    assert 2700 < len(picked) < 3300
    assert rt.sampled(1, 1, 1.0) and not rt.sampled(1, 1, 0.0)


def test_a_broken_validator_yields_errors_and_the_others_still_run() -> None:
    plpy = stub(validator(1, "broken", "python", signed({"body": "raise RuntimeError('boom')"})),
                validator(2, "bad_config", "regex", {"pattern": "("}),
                validator(3, "short", "length", {"max_chars": 5}))
    out = run(plpy, [{"id": 1, "output": "a"}])
    assert parse(out["r_statuses"]) == ["error", "error", "pass"]
    details = out["r_details"]
    assert "boom" in details and "bad regular expression" in details


def test_validate_refuses_unknown_and_async_names() -> None:
    plpy = stub(validator(1, "judge", "llm_judge", {}, mode="async"))
    with pytest.raises(ValueError, match="no validator named nope"):
        run(plpy, [{"id": 1}], purpose="validate", names=["nope"])
    with pytest.raises(ValueError, match="asynchronously"):
        run(plpy, [{"id": 1}], purpose="validate", names=["judge"])


def test_on_insert_an_internal_failure_is_a_warning_not_an_error() -> None:
    plpy = StubPlpy({"string_agg(": [{"k": "x"}], "sample_rate, enabled": [{"id": 1}]})  # a malformed registry row
    out = run(plpy, [{"id": 1}])
    assert out["r_trace_ids"] == "{}"
    assert plpy.notices and plpy.notices[0][0] == "warning"


def test_check_input_runs_only_the_input_guards() -> None:
    plpy = stub(validator(1, "pii", "pii", {}), validator(2, "short", "length", {"max_chars": 5}),
                validator(3, "topic", "regex", {"pattern": "casino", "field": "input", "input_guard": True}))
    out = run(plpy, [{"id": None, "input": "mail me at a@b.io about the casino"}], purpose="check_input")
    assert parse(out["r_names"]) == ["pii", "topic"]
    assert parse(out["r_statuses"]) == ["fail", "fail"]


@pytest.mark.parametrize(
    ("kind", "config", "applies_to", "message"),
    [
        ("nope", "{}", "{}", "unknown kind"),
        ("regex", '{"pattern": "("}', "{}", "bad regular expression"),
        ("length", '{"min_chars": 1}', '{"colour": "red"}', "unknown key"),
        ("length", '{"min_chars": 1}', '{"node_type": 3}', "string or a non-empty list"),
        ("length", "[]", "{}", "JSON object"),
    ],
)
def test_check_config_says_what_is_wrong(kind: str, config: str, applies_to: str, message: str) -> None:
    problem = rt.check_config(StubPlpy(), kind, config, applies_to)
    assert problem is not None and message in problem
    assert rt.check_config(StubPlpy(), "llm_judge", "{}", "{}") is None
