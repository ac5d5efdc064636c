"""Hypothesis settings shared by the property tests.

`make test` loads the "repeatable" profile (tests/conftest.py): a fixed seed and no example
database, so a fresh clone passes or fails the same way every time. `make fuzz` loads "fuzz":
random seeds and examples() times FUZZ_FACTOR (default 10) more examples per test; whatever it
finds becomes an explicit test."""

from __future__ import annotations

import os

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "repeatable")
FUZZ_FACTOR = int(os.environ.get("FUZZ_FACTOR", "10")) if PROFILE == "fuzz" else 1


def examples(n: int) -> int:
    """A property test's number of examples: n under `make test`, more under `make fuzz`."""
    return n * FUZZ_FACTOR


# --- validator configs of every shape, for the config property tests ------------------------------

from typing import Any  # noqa: E402

from hypothesis import strategies as st  # noqa: E402

# Each built-in kind with a config that works and the keys it knows (plus the runner's own).
VALID_CONFIGS: dict[str, dict[str, Any]] = {
    "length": {"max_chars": 100}, "regex": {"pattern": "^[A-Z]"}, "json": {}, "pii": {}, "injection": {},
    "refusal": {}, "language": {"allowed": ["en"]}, "classifier": {"labels": ["a", "b"]}, "anomaly": {},
    "python": {"body": "return True"}, "sql": {"expression": "length(output) > 0"},
}
KIND_KEYS: dict[str, list[str]] = {
    "length": ["min_chars", "max_chars", "min_words", "max_words", "field"],
    "regex": ["pattern", "field", "must_match", "case_insensitive", "label"],
    "json": ["schema", "field", "strip_code_fence"],
    "pii": ["fields", "categories"],
    "injection": ["threshold", "field"],
    "refusal": ["field", "count_dont_know"],
    "language": ["allowed", "field", "min_chars"],
    "classifier": ["labels", "case_sensitive"],
    "anomaly": ["metrics", "threshold", "min_samples"],
    "python": ["threshold"],  # (not body: generated code would run on every INSERT)
    "sql": ["expression"],
}
COMMON_KEYS = ["input_guard", "description", "time_limit_ms", "unknown_key"]
SCHEMA_KEYWORDS = ["type", "properties", "items", "$ref", "$id", "$defs", "pattern", "patternProperties", "anyOf",
                   "allOf", "oneOf", "not", "uniqueItems", "enum", "const", "$schema", "$dynamicRef", "$anchor",
                   "$dynamicAnchor", "required", "additionalProperties", "minItems", "maxLength", "format", "id"]

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.integers(min_value=10**300),
    st.floats(allow_nan=False, allow_infinity=False), _text,
    st.sampled_from(["input", "output", "expected", "any", "email", "ip", "latency_ms", "en", "xx", "(a+)+$", "[",
                     "(a)\\1", "#", "#/$defs/a", "http://127.0.0.1:9/s.json", "other.json", "string", "object",
                     "array", "https://json-schema.org/draft/2020-12/schema", "http://json-schema.org/draft-04/schema#",
                     "length(output) > 2", "1/0 = 1", "true"]))
json_values = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3),
    st.dictionaries(st.sampled_from(SCHEMA_KEYWORDS), inner, max_size=3)), max_leaves=8)
schemas = st.recursive(
    st.one_of(st.booleans(), st.dictionaries(st.sampled_from(SCHEMA_KEYWORDS), _scalar, max_size=3)),
    lambda inner: st.one_of(
        st.dictionaries(st.sampled_from(SCHEMA_KEYWORDS), st.one_of(inner, _scalar, st.lists(inner, max_size=2),
                                                                    st.dictionaries(_text, inner, max_size=2)),
                        max_size=4)), max_leaves=10)


@st.composite
def configs(draw: Any, kinds: list[str] | None = None) -> tuple[str, Any]:
    """(kind, config): a kind's working config with one to three keys set to anything (lists in
    lists, objects, huge numbers, schemas), or a config of any shape at all."""
    kind = draw(st.sampled_from(kinds or sorted(VALID_CONFIGS)))
    if draw(st.integers(0, 9)) == 0:
        return kind, draw(json_values)
    config = dict(VALID_CONFIGS[kind])
    for key in draw(st.lists(st.sampled_from(KIND_KEYS[kind] + COMMON_KEYS), min_size=1, max_size=3)):
        config[key] = draw(schemas if key == "schema" else json_values)
    return kind, config
