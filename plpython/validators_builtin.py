"""The built-in validator kinds: each checks its config once (at creation) and then judges traces.

A kind is a class built from its config (raising ConfigError with a message that says what is
wrong) whose `check(row)` returns a Result. Kinds that need the database (sql, anomaly, python,
sql_codegen) instead implement `check_batch(plpy, rows, source)`, called once per statement.
Rows are dicts with the trace's columns. Nothing here raises into the caller on bad trace data:
the runner turns an exception into an `error` result, except a query cancel (statement_timeout,
pg_cancel_backend), which always goes up (is_cancel). PL/Python does not check for a cancel while
Python runs, so each kind's work is capped (MAX_CHARS and the others below; README.md lists them).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import sys
import time
import unicodedata
from typing import Any, NamedTuple

import re2


class ConfigError(ValueError):
    """A validator config that cannot work; the message is shown to whoever created it."""


class Result(NamedTuple):
    status: str  # pass | fail | error | skipped
    score: float | None = None
    label: str | None = None
    details: dict[str, Any] | None = None


TEXT_FIELDS = ("input", "output", "expected")
# The common verdicts, shared: nothing to say beyond them. A score of 0 means "none found"
# for the detectors (pii, injection, refusal), whose score measures what they found.
_PASS = Result("pass", 1.0, None, None)
_CLEAN = Result("pass", 0.0, None, None)
PASS = _PASS
MAX_DETAIL_CHARS = 200
# The text-scanning kinds (regex, injection, json) examine a field's first MAX_CHARS characters
# (pii: validators_pii.MAX_CHARS, the same); a JSON Schema check stops after MAX_SCHEMA_STEPS
# keyword evaluations. README.md documents these caps.
MAX_CHARS = 1_000_000
MAX_SCHEMA_STEPS = 1_000_000
CANCEL_SQLSTATE = "57014"  # query_canceled: statement_timeout and pg_cancel_backend() both raise it


def is_cancel(e: BaseException) -> bool:
    """Whether e is PostgreSQL cancelling the statement (plpy.spiexceptions.QueryCanceled, or an
    SPIError with its sqlstate): it must reach the server, never become an `error` result."""
    return getattr(e, "sqlstate", None) == CANCEL_SQLSTATE or type(e).__name__ == "QueryCanceled"


def reraise_cancel(e: BaseException) -> None:
    """For every broad `except`: a cancel goes on up, anything else is the caller's to handle."""
    if is_cancel(e):
        raise e


class Prefilter(NamedTuple):
    """A promise of a kind that scans text, which lets the runtime judge a whole batch with one re2
    scan per field: a row whose `field` text (its first `head` characters, if given) is not NULL
    or empty and has no match of `pattern` gets exactly `clean` from check(). The pattern must not
    use the anchors ^ $ \\A \\z outside (?m) (the runtime scans the texts joined by newlines)."""

    field: str
    pattern: str
    clean: Result
    head: int | None = None


# An admin's regex is a prefilter only without these: anchors that mean "start or end of the text",
# \Q (it quotes up to the end, the wrapping group's parenthesis too) and \C (any byte).
_NOT_PREFILTERABLE = ("^", "$", "\\A", "\\z", "\\Q", "\\C")


def _short(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: Any) -> str:
    """A config value in a message: its repr, short (a message is one line of bounded length)."""
    return _short(repr(value), 80)


def _known_keys(config: dict[str, Any], allowed: set[str], kind: str) -> None:
    # Every kind also accepts the runner's own keys.
    unknown = set(config) - allowed - {"input_guard", "description", "time_limit_ms"}
    if unknown:
        raise ConfigError(f"{kind}: unknown config key(s) {_short(str(sorted(unknown)))}; known: {sorted(allowed)}")
    _flag(config, "input_guard", kind)
    if not isinstance(config.get("description", ""), str):
        raise ConfigError(f"{kind}: description must be a string, not {_show(config['description'])}")
    if "time_limit_ms" in config and _number(config, "time_limit_ms", kind, 0.0) <= 0:
        raise ConfigError(f"{kind}: time_limit_ms must be a positive number, not {_show(config['time_limit_ms'])}")


def _flag(config: dict[str, Any], key: str, kind: str, default: bool = False) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{kind}: {key} must be true or false, not {_show(value)}")
    return value


def _names(config: dict[str, Any], key: str, kind: str, allowed: Any, default: list[str]) -> list[str]:
    """A non-empty list of names, each one of allowed (strings only: a list in it is no name)."""
    value = config.get(key, default)
    if (not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value)
            or not set(value) <= set(allowed)):
        raise ConfigError(f"{kind}: {key} must be a non-empty list of {list(allowed)}, not {_show(value)}")
    return value


def _field(config: dict[str, Any], kind: str, default: str, allowed: tuple[str, ...] = TEXT_FIELDS) -> str:
    field = config.get("field", default)
    if field not in allowed:
        raise ConfigError(f"{kind}: field must be one of {list(allowed)}, not {_show(field)}")
    return str(field)


def _count(config: dict[str, Any], key: str, kind: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{kind}: {key} must be a non-negative integer, not {_show(value)}")
    return value


def _number(config: dict[str, Any], key: str, kind: str, default: float) -> float:
    value = config.get(key, default)
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer of hundreds of digits
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"{kind}: {key} must be a number, not {_show(value)}")
    return number


def compile_re2(pattern: Any, kind: str, case_insensitive: bool = False) -> Any:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{kind}: pattern must be a non-empty string")
    try:
        return re2.compile(("(?i)" if case_insensitive else "") + pattern)
    except Exception as e:  # re2 reports bytes; decode for a readable message
        msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ConfigError(
            f"{kind}: bad regular expression {_show(pattern)}: {_short(msg, 120)} (patterns are RE2: no "
            "backreferences or lookaround)") from None


try:  # re2's C++ matcher without the wrapper's match objects: ~5x faster for a yes/no question
    _UNANCHORED = re2._Anchor.UNANCHORED

    def re2_found(regex: Any, text: str) -> bool:
        encoded = text.encode()
        return bool(regex._regexp.Match(_UNANCHORED, encoded, 0, len(encoded))[0][0] >= 0)
except AttributeError:  # another google-re2 version: the public API
    def re2_found(regex: Any, text: str) -> bool:
        return regex.search(text) is not None


def strip_code_fence(text: str) -> str:
    """LLMs wrap code in ```lang ... ```; the content is what counts."""
    stripped = text.strip()
    if stripped.startswith("```"):
        first_newline = stripped.find("\n")
        body = stripped[first_newline + 1 :] if first_newline >= 0 else ""
        end = body.rfind("```")
        return body[:end] if end >= 0 else body
    return text


_WORD_CHUNK = 1 << 20


def count_words(text: str) -> int:
    """len(text.split()), a megabyte at a time: the list of every word of a long text costs
    ~50 bytes a word (a 100 MB text of one-letter words: gigabytes)."""
    if len(text) <= _WORD_CHUNK:
        return len(text.split())
    words = 0
    for at in range(0, len(text), _WORD_CHUNK):
        words += len(text[at:at + _WORD_CHUNK].split())
        # a word that runs across the cut was counted on both sides
        if at and not text[at - 1].isspace() and not text[at].isspace():
            words -= 1
    return words


class Length:
    def __init__(self, config: dict[str, Any]) -> None:
        _known_keys(config, {"min_chars", "max_chars", "min_words", "max_words", "field"}, "length")
        self.field = _field(config, "length", "output")
        self.bounds = {k: _count(config, k, "length") for k in ("min_chars", "max_chars", "min_words", "max_words")}
        if all(v is None for v in self.bounds.values()):
            raise ConfigError("length: give at least one of min_chars, max_chars, min_words, max_words")
        for unit in ("chars", "words"):
            lo, hi = self.bounds[f"min_{unit}"], self.bounds[f"max_{unit}"]
            if lo is not None and hi is not None and lo > hi:
                raise ConfigError(f"length: min_{unit} ({lo}) is greater than max_{unit} ({hi})")
        self.count_words = self.bounds["min_words"] is not None or self.bounds["max_words"] is not None

    def passes(self, text: str | None) -> bool:
        """Whether check() gives exactly _PASS for a row with this text (the runtime's quick path)."""
        if text is None:
            return False
        measured = {"chars": len(text)}
        if self.count_words:
            measured["words"] = count_words(text)
        for unit, n in measured.items():
            lo, hi = self.bounds[f"min_{unit}"], self.bounds[f"max_{unit}"]
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                return False
        return True

    def check(self, row: dict[str, Any]) -> Result:
        text = row.get(self.field)
        if text is None:
            return Result("fail", 0.0, "missing", {"reason": f"no {self.field}"})
        chars = len(text)
        details: dict[str, Any] = {"chars": chars}
        measured = {"chars": chars}
        if self.count_words:
            measured["words"] = details["words"] = count_words(text)
        for unit, n in measured.items():
            lo, hi = self.bounds[f"min_{unit}"], self.bounds[f"max_{unit}"]
            if lo is not None and n < lo:
                return Result("fail", 0.0, "too_short", {**details, "reason": f"{n} {unit} < min_{unit} {lo}"})
            if hi is not None and n > hi:
                return Result("fail", 0.0, "too_long", {**details, "reason": f"{n} {unit} > max_{unit} {hi}"})
        return _PASS


class Regex:
    def __init__(self, config: dict[str, Any]) -> None:
        _known_keys(config, {"pattern", "field", "must_match", "case_insensitive", "label"}, "regex")
        self.field = _field(config, "regex", "output", (*TEXT_FIELDS, "any"))
        self.must_match = _flag(config, "must_match", "regex")
        self.regex = compile_re2(config.get("pattern"), "regex", _flag(config, "case_insensitive", "regex"))
        label = config.get("label", "matched" if not self.must_match else "no_match")
        if not isinstance(label, str) or not label:
            raise ConfigError(f"regex: label must be a non-empty string, not {_show(label)}")
        self.label = label
        self._no_match = Result("fail", 0.0, self.label, {"reason": "the pattern does not match"})
        self.prefilters: list[Prefilter] = []
        pattern = config["pattern"]
        if not any(s in pattern for s in _NOT_PREFILTERABLE) and not re2_found(self.regex, ""):
            scoped = ("(?i:" if config.get("case_insensitive", False) else "(?:") + pattern + ")"
            clean = self._no_match if self.must_match else _PASS
            fields = ("input", "output") if self.field == "any" else (self.field,)
            self.prefilters = [Prefilter(f, scoped, clean, MAX_CHARS) for f in fields]

    def check(self, row: dict[str, Any]) -> Result:
        fields = ("input", "output") if self.field == "any" else (self.field,)
        for field in fields:
            text = (row.get(field) or "")[:MAX_CHARS]
            m = self.regex.search(text) if re2_found(self.regex, text) else None
            if m is not None:
                details = {"field": field, "match": _short(m.group()), "at": m.start()}
                if self.must_match:
                    return Result("pass", 1.0, None, details)
                return Result("fail", 0.0, self.label, details)
        if self.must_match:
            return self._no_match
        return _PASS


class _TooComplex(Exception):
    """A JSON Schema check that ran out of its MAX_SCHEMA_STEPS."""


def _canonical(value: Any) -> Any:
    """A hashable form of a JSON value under JSON Schema's equality (jsonschema's `equal`: true is
    not 1, 1 is 1.0, objects compare by keys and values)."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("l", tuple(map(_canonical, value)))
    if isinstance(value, dict):
        return ("d", frozenset((k, _canonical(v)) for k, v in value.items()))
    return ("n", value)


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Any:
    # jsonschema's own compares every pair of items it cannot sort (objects): quadratic.
    if unique and validator.is_type(instance, "array"):
        seen: set[Any] = set()
        for item in instance:
            key = _canonical(item)
            if key in seen:
                from jsonschema import ValidationError

                yield ValidationError(f"{_short(repr(instance), 80)} has non-unique elements")
                return
            seen.add(key)


_RE2_CACHE: dict[str, Any] = {}


def _schema_re2(pattern: str) -> Any:
    rx = _RE2_CACHE.get(pattern)
    if rx is None:
        if len(_RE2_CACHE) > 256:
            _RE2_CACHE.clear()
        rx = _RE2_CACHE[pattern] = compile_re2(pattern, "json")
    return rx


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Any:
    # re2 (linear time) instead of Python's re, which backtracks: "^(a+)+$" on "aaaa…!" never ends.
    if validator.is_type(instance, "string") and not re2_found(_schema_re2(pattern), instance):
        from jsonschema import ValidationError

        yield ValidationError(f"{_short(repr(instance), 80)} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        rx = _schema_re2(pattern)
        for k, v in instance.items():
            if re2_found(rx, k):
                yield from validator.descend(v, subschema, path=k, schema_path=pattern)


def _refuse_retrieval(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # never the network: only what is inside the schema


_NOT_SCHEMAS = ("enum", "const", "default", "examples")  # values there are data, not subschemas


def _refs(node: Any, base: str, out: list[tuple[str, str]]) -> None:
    """Every $ref (and $dynamicRef, $recursiveRef) in a schema, with the URI it resolves to."""
    from urllib.parse import urljoin

    if isinstance(node, list):
        for item in node:
            _refs(item, base, out)
        return
    if not isinstance(node, dict):
        return
    for key in ("$id", "id"):
        if isinstance(node.get(key), str):
            base = urljoin(base, node[key])
    for key, value in node.items():
        if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str):
            out.append((value, urljoin(base, value)))
        elif key not in _NOT_SCHEMAS:
            _refs(value, base, out)


class _Schema:
    """A JSON Schema check that fetches nothing, matches patterns with re2, checks uniqueItems in
    linear time and stops after MAX_SCHEMA_STEPS keyword evaluations (anyOf over a recursive $ref
    doubles the work at each level of nesting: without a cap, 40 levels never end)."""

    def __init__(self, schema: Any) -> None:
        import jsonschema
        import referencing

        cls = jsonschema.validators.validator_for(schema)
        self.steps = 0
        keywords = {**cls.VALIDATORS, "uniqueItems": _unique_items, "pattern": _pattern,
                    "patternProperties": _pattern_properties}
        keywords = {k: self._counted(fn) for k, fn in keywords.items()}
        self.cls = jsonschema.validators.extend(cls, validators=keywords)
        self.validator = self.cls(schema, registry=referencing.Registry(retrieve=_refuse_retrieval))  # type: ignore[call-arg]

    def _counted(self, fn: Any) -> Any:
        def keyword(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
            self.steps += 1
            if self.steps > MAX_SCHEMA_STEPS:
                raise _TooComplex
            return fn(validator, value, instance, schema)

        return keyword

    def first_error(self, value: Any) -> Any:
        self.steps = 0
        return next(iter(self.validator.iter_errors(value)), None)


def _check_schema(schema: Any) -> _Schema:
    """The config's schema, checked: a valid JSON Schema of a known dialect, RE2 patterns, and
    references only inside it (a $ref to a URL would make the server fetch it during an INSERT)."""
    import jsonschema
    from referencing.exceptions import Unresolvable

    if not isinstance(schema, dict | bool):
        raise ConfigError("json: schema must be a JSON Schema object")
    if isinstance(schema, dict) and "$schema" in schema:
        dialect = schema["$schema"]
        if not isinstance(dialect, str) or jsonschema.validators.validator_for(schema, default=None) is None:
            raise ConfigError(f"json: unknown $schema {_show(dialect)}; use a JSON Schema draft's URI "
                              "(draft 4 to 2020-12), or leave it out")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise ConfigError(f"json: the schema is not a valid JSON Schema: {_short(e.message, 200)}") from None
    except RecursionError:
        raise ConfigError("json: the schema is nested too deeply") from None
    checked = _Schema(schema)
    found: list[tuple[str, str]] = []
    try:
        _refs(schema, "", found)
    except RecursionError:
        raise ConfigError("json: the schema is nested too deeply") from None
    resolver = getattr(checked.validator, "_resolver", None)
    for ref, target in found:
        try:
            if resolver is not None:
                resolver.lookup(target)
        except Unresolvable:
            raise ConfigError(f"json: $ref {_show(ref)} does not resolve inside the schema; references outside "
                              "the schema (URLs, files) are never fetched") from None
    for pattern in _schema_patterns(schema):
        _schema_re2(pattern)  # a ConfigError that says RE2
    return checked


def _schema_patterns(node: Any) -> list[str]:
    out: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, list):
            stack.extend(n)
        elif isinstance(n, dict):
            for key, value in n.items():
                if key == "pattern" and isinstance(value, str):
                    out.append(value)
                elif key == "patternProperties" and isinstance(value, dict):
                    out.extend(value)
                if key not in _NOT_SCHEMAS:
                    stack.append(value)
    return out


class Json:
    def __init__(self, config: dict[str, Any]) -> None:
        _known_keys(config, {"schema", "field", "strip_code_fence"}, "json")
        self.field = _field(config, "json", "output")
        self.strip = _flag(config, "strip_code_fence", "json", True)
        self.validator: _Schema | None = None
        if "schema" in config:
            self.validator = _check_schema(config["schema"])

    def check(self, row: dict[str, Any]) -> Result:
        text = row.get(self.field)
        if text is None or not text.strip():
            return Result("fail", 0.0, "missing", {"reason": f"no {self.field}"})
        if len(text) > MAX_CHARS:
            return Result("fail", 0.0, "too_large", {"reason": f"more than {MAX_CHARS} characters",
                                                     "chars": len(text)})
        if self.strip:
            text = strip_code_fence(text)
        try:
            value = json.loads(text)
        except RecursionError:
            return Result("fail", 0.0, "too_deep", {"reason": "JSON nested too deeply to parse"})
        except ValueError as e:
            return Result("fail", 0.0, "invalid_json", {"reason": _short(str(e))})
        if self.validator is not None:
            from referencing.exceptions import Unresolvable

            try:
                error = self.validator.first_error(value)
            except RecursionError:
                return Result("fail", 0.0, "too_deep", {"reason": "JSON nested too deeply to validate"})
            except _TooComplex:
                return Result("fail", 0.0, "too_complex",
                              {"reason": f"the schema check took more than {MAX_SCHEMA_STEPS} steps"})
            except Unresolvable as e:  # a stored config from before references were checked
                return Result("error", None, "unresolvable_ref", {"error": _short(f"{e}; nothing is fetched", 500)})
            if error is not None:
                path = "/".join(str(p) for p in error.absolute_path)
                return Result("fail", 0.0, "schema_mismatch", {"reason": _short(error.message), "path": path})
        return _PASS


class Pii:
    def __init__(self, config: dict[str, Any]) -> None:
        import validators_pii

        self.pii = validators_pii
        _known_keys(config, {"fields", "categories"}, "pii")
        fields = _names(config, "fields", "pii", TEXT_FIELDS, ["input", "output"])
        cats = _names(config, "categories", "pii", validators_pii.CATEGORIES, list(validators_pii.CATEGORIES))
        self.fields, self.categories = fields, set(cats)
        self.prefilters = [Prefilter(f, validators_pii.MAYBE_ANY, _CLEAN, validators_pii.MAX_CHARS) for f in fields]

    def check(self, row: dict[str, Any]) -> Result:
        found: dict[str, dict[str, int]] = {}
        truncated = []
        for field in self.fields:
            counts, capped = self.pii.categories_capped(row.get(field))
            counts = {c: n for c, n in counts.items() if c in self.categories}
            if counts:
                found[field] = counts
                if capped:
                    truncated.append(field)
        if not found:
            return _CLEAN
        cats = sorted({c for counts in found.values() for c in counts})
        total = sum(n for counts in found.values() for n in counts.values())
        details: dict[str, Any] = {"categories": cats, "fields": found}
        if truncated:  # a cap stopped the count (README.md: the validators' caps)
            details["truncated"] = truncated
        return Result("fail", float(total), cats[0], details)


# Signals of prompt injection and jailbreaks, with a weight each; the score combines them
# as independent evidence: 1 - prod(1 - w).
INJECTION_SIGNALS = {
    "ignore_instructions": (
        r"(?i)\b(ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}\b(instructions?|prompts?|rules|"
        r"directions|guidelines|guardrails|context)\b|"
        # "ignore all previous text", "forget everything above": what to ignore named by its place
        r"(?i)\b(ignore|disregard|forget)\s+(all|everything|anything|any|the|your|my)?\s*(previous|prior|preceding|"
        r"above|earlier|before|that came before)\b",
        0.8,
    ),
    # System-prompt extraction: "repeat the instructions you were given at the beginning".
    "extract_prompt": (
        r"(?i)\b(repeat|reveal|show|print|output|leak|recite|spell out|tell me|write out|what (are|were))\b[^.\n]{0,40}"
        r"\b(instructions|prompt|rules|directives|guidelines|system message)\b[^.\n]{0,40}"
        r"\b(you were given|you received|given to you|above|at the (beginning|start|top)|before (this|my)|so far|"
        r"initially|verbatim|word for word)|"
        r"(?i)\b(repeat|print|output|recite)\b[^.\n]{0,20}\b(everything|all( of)? the (text|words))\b[^.\n]{0,20}"
        r"\b(above|before)\b",
        0.6,
    ),
    "reveal_prompt": (
        r"(?i)\b(reveal|show|print|repeat|output|leak|tell me|what is|what are)\b[^.\n]{0,30}\b(system|hidden|"
        r"initial|original|secret)\s+(prompt|instructions|message)",
        0.6,
    ),
    "role_override": (
        r"(?i)(\byou are now\b|\bfrom now on,? you\b|\bpretend (to be|you are)\b|\bact as (an? )?(unrestricted|"
        r"unfiltered|jailbroken|evil|uncensored)\b|\broleplay as\b)",
        0.5,
    ),
    "jailbreak_persona": (r"(\bDAN\b|(?i:\b(do anything now|developer mode|jailbreak|jailbroken|god mode)\b))", 0.6),
    "chat_markup": (r"(<\|im_start\|>|<\|system\|>|\[/?INST\]|<<SYS>>|(?im:^[ \t]*(system|assistant)[ \t]*:))", 0.5),
    "no_restrictions": (
        r"(?i)\b(without|no|ignore (any|all|your)?)\s+(restrictions|filters|limitations|censorship|"
        r"safety (guidelines|rules))\b",
        0.4,
    ),
    "encoded_payload": (r"[A-Za-z0-9+/]{200,}={0,2}", 0.2),
}
# re2 runs in linear time on untrusted text. One search for any signal at all keeps the common
# case (no signal) to a single pass; the signals are told apart only when there is one.
_INJECTION = {name: (re2.compile(p), w) for name, (p, w) in INJECTION_SIGNALS.items()}
# A prefilter must match the raw text whenever a signal matches the normalised one (see
# normalise_for_injection), hence its extra alternatives: a character that normalisation changes
# (invisible, look-alike, full-width or mathematical letters; not accented letters, so German or
# French text is still cleared by the one scan) and a word spelt out letter by letter.
_INVISIBLE_CHARS = "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
_LOOKALIKES = "аеорсухіјѕԁһӏАВЕКМНОРСТХІЈЅαεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ"
_ANY_INJECTION = re2.compile(
    "|".join(f"(?:{p})" for p, _ in INJECTION_SIGNALS.values())
    + f"|[{_INVISIBLE_CHARS}{_LOOKALIKES}\uff01-\uff5e\U0001d400-\U0001d7ff]|(?:\\b\\w ){{3}}\\w\\b"
)
# Characters that render as nothing (zero-width space/joiners, word joiner, BOM, soft hyphen).
_INVISIBLE = dict.fromkeys(map(ord, _INVISIBLE_CHARS))
# Cyrillic and Greek letters that look like Latin ones ("іgnоre" with Cyrillic і and о); NFKC
# covers full-width and mathematical letters.
_HOMOGLYPHS = str.maketrans(_LOOKALIKES, "aeopcyxijsdhlABEKMHOPCTXIJSaeiknoptuxABEZHIKMNOPTYX")

_SPELT_OUT = re.compile(r"(?:\b\w ){3}\w\b")


def normalise_for_injection(text: str) -> str:
    """The text as a reader sees it: invisible characters dropped, look-alike letters made Latin
    (NFKC, then the Cyrillic/Greek table), and words spelt out letter by letter ("i g n o r e")
    joined. Linear in the text."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text.translate(_INVISIBLE)).translate(_HOMOGLYPHS)
    if not _SPELT_OUT.search(text):
        return text
    words, out, run = text.split(" "), [], []
    for word in words:  # join each run of 4+ one-letter words into one word
        if len(word) == 1 and word.isalnum():
            run.append(word)
            continue
        out.extend(["".join(run)] if len(run) >= 4 else run)
        run = []
        out.append(word)
    out.extend(["".join(run)] if len(run) >= 4 else run)
    return " ".join(w for w in out if w)


class Injection:
    def __init__(self, config: dict[str, Any]) -> None:
        _known_keys(config, {"threshold", "field"}, "injection")
        self.field = _field(config, "injection", "input")
        self.threshold = _number(config, "threshold", "injection", 0.5)
        if not 0 < self.threshold <= 1:
            raise ConfigError("injection: threshold must be in (0, 1]")
        self.prefilters = [Prefilter(self.field, _ANY_INJECTION.pattern, _CLEAN, MAX_CHARS)]

    def check(self, row: dict[str, Any]) -> Result:
        text = (row.get(self.field) or "")[:MAX_CHARS]
        if not re2_found(_ANY_INJECTION, text):
            return _CLEAN
        text = normalise_for_injection(text)
        signals = [name for name, (rx, _) in _INJECTION.items() if rx.search(text) is not None]
        keep = 1.0
        for name in signals:
            keep *= 1 - _INJECTION[name][1]
        score = round(1 - keep, 4)
        details = {"signals": signals} if signals else {}
        if score >= self.threshold:
            return Result("fail", score, "injection", details)
        return Result("pass", score, None, details)


REFUSAL_PATTERNS = {
    "refusal": (
        r"(?i)(\bI('m| am)( really| very)? sorry,? but I (can't|cannot|won't|am unable|'m unable|am not able)\b|"
        r"\bI (can't|cannot|won't|will not) (help|assist|comply|provide|do that|fulfill)\b|"
        r"\bI('m| am) (unable|not able) to (help|assist|comply|provide)\b|"
        r"\bas an AI( language model)?,? I (can't|cannot|don't|do not)\b|"
        r"\b(this|that) (request )?(goes against|violates) (my|the) (guidelines|policies|policy)\b|"
        r"\b(it is|it's|it would be) (not |never |in)appropriate (for me )?to\b|\bit('s| is) not appropriate\b|"
        r"\bI('m| am) (just|only) an AI\b[^.\n]{0,60}\b(can't|cannot|not appropriate|not able|unable)\b|"
        r"\bI (must|have to|need to) (respectfully )?(decline|refuse)\b|"
        r"\bI('m| am) not (comfortable|going to|able to)\b|"
        r"\bI apologi[sz]e,? but I\b|\bI (won't|will not|can't|cannot) (be able to )?(help|assist|provide|create|write|"
        r"generate|give|share|engage|support)\b)"
    ),
    "dont_know": (
        r"(?i)(\bI (don't|do not) know\b|\bI('m| am) not sure\b|\bI (don't|do not) have (enough )?(information|"
        r"access|data)\b|\bI (couldn't|could not|can't|cannot) find (any )?(information|anything)\b|"
        r"\bno information (is )?available\b)"
    ),
}
_REFUSAL = {label: re2.compile(p) for label, p in REFUSAL_PATTERNS.items()}
# A disclaimer, not a refusal, when an answer follows it ("As an AI, I don't have personal
# opinions. However, ..."); a refusal followed by an alternative is a partial refusal.
_DISCLAIMER = re2.compile(
    r"(?i)\bas an AI( language model)?,? I (don't|do not) have (personal )?(opinions|feelings|beliefs|"
    r"preferences|emotions|experiences|views)\b"
)
_BUT_HERE = re2.compile(
    r"(?i)\b(however|but|that said|instead|nevertheless|nonetheless)\b[^.\n]{0,80}|\bhere (is|are)\b|"
    r"\bI can (help|offer|suggest|provide|tell|give)\b"
)
# What must follow a disclaimer or a refusal for the rest to count as an answer.
MIN_ANSWER_CHARS = 40
REFUSAL_HEAD = 2000
_ANY_REFUSAL = re2.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS.values()))


class Refusal:
    def __init__(self, config: dict[str, Any]) -> None:
        _known_keys(config, {"field", "count_dont_know", "count_partial"}, "refusal")
        self.field = _field(config, "refusal", "output")
        self.labels = ["refusal"] + (["dont_know"] if _flag(config, "count_dont_know", "refusal", True) else [])
        # A refusal that offers something instead is labelled partial_refusal (or passes, if not counted).
        self.count_partial = _flag(config, "count_partial", "refusal", True)
        self.prefilters = [Prefilter(self.field, _ANY_REFUSAL.pattern, _CLEAN, REFUSAL_HEAD)]

    def check(self, row: dict[str, Any]) -> Result:
        text = row.get(self.field)
        if not text:
            return Result("skipped", None, None, {"reason": f"no {self.field}"})
        head = text[:REFUSAL_HEAD]  # a refusal says so up front; do not scan a megabyte for it
        if not re2_found(_ANY_REFUSAL, head):
            return _CLEAN
        for label in self.labels:
            m = _REFUSAL[label].search(head)
            if m is None:
                continue
            rest = head[m.end() :]
            answer = _BUT_HERE.search(rest)
            answered = answer is not None and len(rest) - answer.start() >= MIN_ANSWER_CHARS
            if label == "refusal" and _DISCLAIMER.search(head) is not None and answered:
                continue  # a disclaimer followed by the answer: not a refusal
            if label == "refusal" and answered:
                if self.count_partial:
                    return Result("fail", 0.5, "partial_refusal", {"match": _short(m.group())})
                continue
            return Result("fail", 1.0, label, {"match": _short(m.group())})
        return Result("pass", 0.0, None, {})


# Scripts that identify a language (or a small family) on their own.
_SCRIPTS = [
    ("ru", "[\u0400-\u04FF]"), ("el", "[\u0370-\u03FF]"), ("he", "[\u0590-\u05FF]"),
    ("ar", "[\u0600-\u06FF]"), ("hi", "[\u0900-\u097F]"), ("th", "[\u0E00-\u0E7F]"),
    ("ko", "[\uAC00-\uD7AF]"), ("ja", "[\u3040-\u30FF]"), ("zh", "[\u4E00-\u9FFF]"),
]
_SCRIPT_RX = [(lang, re.compile(p)) for lang, p in _SCRIPTS]
# The most frequent function words of the Latin-script languages told apart here.
_STOPWORDS = {
    "en": "the and is are of to in that it for you with on this what how was not be have",
    "de": "der die das und ist nicht ich sie es zu mit den ein eine auf für von wie was",
    "fr": "le la les et est des une un que qui pas pour dans sur vous ce il je du",
    "es": "el la los las y es de que en un una por para con no se como qué su",
    "it": "il lo la gli le e è di che un una per non con sono come del della",
    "pt": "o a os as e é de que em um uma para com não se do da como você",
    "nl": "de het een en is van dat die niet ik je op te met voor zijn wat",
}
_STOP = {lang: set(words.split()) for lang, words in _STOPWORDS.items()}
_WORD = re.compile(r"[^\W\d_]+")
LANGUAGES = sorted({lang for lang, _ in _SCRIPTS} | set(_STOP))


def detect_language(text: str) -> str | None:
    sample = text[:2000]
    for lang, rx in _SCRIPT_RX:
        if len(rx.findall(sample)) >= 3:
            return lang
    words = [w.lower() for w in _WORD.findall(sample)]
    if len(words) < 3:
        return None
    hits = {lang: sum(1 for w in words if w in stop) for lang, stop in _STOP.items()}
    best = max(hits, key=lambda k: hits[k])
    return best if hits[best] >= 2 else None


class Language:
    def __init__(self, config: dict[str, Any]) -> None:
        _known_keys(config, {"allowed", "field", "min_chars"}, "language")
        allowed = config.get("allowed")
        if not isinstance(allowed, list) or not allowed or not all(isinstance(a, str) for a in allowed):
            raise ConfigError(f"language: allowed must be a non-empty list of language codes, e.g. {LANGUAGES}")
        unknown = set(allowed) - set(LANGUAGES)
        if unknown:
            raise ConfigError(f"language: unknown language code(s) {sorted(unknown)}; known: {LANGUAGES}")
        self.allowed = set(allowed)
        self.field = _field(config, "language", "input")
        self.min_chars = _count(config, "min_chars", "language") or 20

    def check(self, row: dict[str, Any]) -> Result:
        text = row.get(self.field) or ""
        if len(text.strip()) < self.min_chars:
            return Result("skipped", None, None, {"reason": f"{self.field} shorter than {self.min_chars} characters"})
        lang = detect_language(text)
        if lang is None:
            return Result("skipped", None, None, {"reason": "language not recognised"})
        return Result("pass" if lang in self.allowed else "fail", None, lang, {"language": lang})


class Classifier:
    def __init__(self, config: dict[str, Any]) -> None:
        _known_keys(config, {"labels", "case_sensitive"}, "classifier")
        labels = config.get("labels")
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
            raise ConfigError("classifier: labels must be a list of strings")
        self.case_sensitive = _flag(config, "case_sensitive", "classifier")
        self.labels = None if labels is None else {self._norm(x) for x in labels}

    def _norm(self, text: str) -> str:
        text = text.strip().strip(".").strip()
        return text if self.case_sensitive else text.casefold()

    def check(self, row: dict[str, Any]) -> Result:
        output = row.get("output")
        if output is None:
            return Result("fail", 0.0, "missing", {"reason": "no output"})
        got = self._norm(output)
        if self.labels is not None and got not in self.labels:
            return Result("fail", 0.0, "unknown_label", {"reason": f"{_short(got, 60)!r} is not one of the labels"})
        expected = row.get("expected")
        if expected is None:
            return Result("skipped", None, got, {"reason": "no expected label"})
        ok = got == self._norm(expected)
        return Result("pass" if ok else "fail", 1.0 if ok else 0.0, got, {"expected": _short(self._norm(expected), 60)})


class Rollback(Exception):
    """Raised to leave a subtransaction that must never keep what it did."""


def _read_only_subtransaction(plpy: Any, fn: Any) -> Any:
    """Run fn() in a subtransaction that is always rolled back, and return its value. (The
    callers in SQL make the whole evaluation read-only: a SET LOCAL here would not last, since
    PostgreSQL restores the read-only flag when PL/Python's own subtransaction of each execute ends.)"""
    box: list[Any] = []
    try:
        with plpy.subtransaction():
            box.append(fn())
            raise Rollback
    except Rollback:
        pass
    return box[0]


class Sql:
    """A boolean SQL expression over the trace row, run set-wise on the batch."""

    def __init__(self, config: dict[str, Any], plpy: Any = None) -> None:
        _known_keys(config, {"expression"}, "sql")
        expr = config.get("expression")
        if not isinstance(expr, str) or not expr.strip():
            raise ConfigError('sql: config needs {"expression": "<boolean SQL over the trace row>"}')
        self.expression = expr
        self.plans: dict[str, Any] = {}
        if plpy is not None:  # create_validator: checked once, where writing is possible
            # Checked (parsed as flywheel_sql_checker, rolled back) before the owner ever parses
            # it: parsing runs the input functions of its literals, a domain's CHECK included.
            self._refuse_volatile(plpy)
            self._plan(plpy, "table")

    def _plan(self, plpy: Any, source: str) -> Any:
        plan = self.plans.get(source)
        if plan is None:
            # The expression is the admin's SQL, like a view's; prepare() below refuses a second statement.
            if source == "table":
                query = (f"SELECT t.id, (\n{self.expression}\n)::boolean AS ok"  # noqa: S608
                         " FROM flywheel.traces t WHERE t.id = ANY($1)")
                types = ["bigint[]"]
            else:  # a trace that is not stored (check_input): one row built from JSON
                query = (f"SELECT t.id, (\n{self.expression}\n)::boolean AS ok"  # noqa: S608
                         " FROM jsonb_populate_record(NULL::flywheel.traces, $1) t")
                types = ["jsonb"]
            try:
                # prepare() refuses several statements, so the expression cannot smuggle one in.
                plan = plpy.prepare(query, types)
            except plpy.SPIError as e:
                raise ConfigError(f"sql: the expression does not compile against a trace row: {e}") from None
            self.plans[source] = plan
        return plan

    def _refuse_volatile(self, plpy: Any) -> None:
        # Checked on what PostgreSQL parsed, by oid (flywheel._unsafe_calls): no volatile function
        # (pg_sleep, nextval, writes), nothing outside the flywheel schema (pg_authid, temp objects).
        # A column named by a nonce after the expression: text that closes the parentheses early or
        # comments out the rest cannot produce it (checked in _unsafe_calls).
        nonce = "end_" + secrets.token_hex(8)
        query = f"SELECT (\n{self.expression}\n)::boolean AS ok, 1 AS {nonce} FROM flywheel.traces t"  # noqa: S608
        problem = plpy.execute(
            plpy.prepare("SELECT flywheel._one_select_problem($1) AS problem", ["text"]), [query]
        )[0]["problem"]
        if problem:
            raise ConfigError(f"sql: the expression does not compile against a trace row: {problem}")
        problem = plpy.execute(
            plpy.prepare("SELECT flywheel._unsafe_calls($1, ARRAY['flywheel'], ARRAY['ok', $2]) AS problem",
                         ["text", "text"]), [query, nonce]
        )[0]["problem"]
        if problem:
            raise ConfigError(f"sql: the expression is refused: {problem}; a check only reads the trace "
                              "with non-volatile built-in functions")

    def check_batch(self, plpy: Any, rows: list[dict[str, Any]], source: str) -> list[Result]:
        plan = self._plan(plpy, source)
        args: list[Any]
        if source == "table":
            args = [[r["id"] for r in rows]]
        else:
            args = [json.dumps({k: v for k, v in rows[0].items() if k != "metadata"})]
        found = _read_only_subtransaction(plpy, lambda: {r["id"]: r["ok"] for r in plpy.execute(plan, args)})
        out = []
        for r in rows:
            ok = found.get(r["id"], None)
            if ok is None:
                out.append(Result("skipped", None, None, {"reason": "the expression is NULL for this trace"}))
            else:
                out.append(Result("pass" if ok else "fail", 1.0 if ok else 0.0, None, {}))
        return out


_NO_BASELINE = Result("skipped", None, None, {"reason": "no baseline yet for this model and node"})


class Anomaly:
    """Latency, cost or tokens far from the recent norm of the same model and node: a robust
    z-score on the log scale against flywheel._anomaly_baselines (median and MAD per metric),
    which flywheel.refresh_anomaly_baselines() recomputes off the insert path."""

    METRICS = ("latency_ms", "cost_usd", "tokens_in", "tokens_out")
    CACHE_SECONDS = 60.0

    def __init__(self, config: dict[str, Any]) -> None:
        _known_keys(config, {"metrics", "threshold", "min_samples"}, "anomaly")
        self.metrics = _names(config, "metrics", "anomaly", self.METRICS, ["latency_ms", "cost_usd", "tokens_out"])
        self.threshold = _number(config, "threshold", "anomaly", 4.0)
        self.min_samples = _count(config, "min_samples", "anomaly") or 30
        if self.threshold <= 0:
            raise ConfigError("anomaly: threshold must be positive")
        self.baselines: dict[tuple[Any, Any, str], tuple[int, float, float]] = {}
        self.loaded_at = -math.inf

    def _load(self, plpy: Any) -> None:
        now = time.monotonic()
        if now - self.loaded_at < self.CACHE_SECONDS:
            return
        rows = plpy.execute("SELECT model, node, metric, n, median_log, mad_log FROM flywheel._anomaly_baselines")
        self.baselines = {(r["model"], r["node"], r["metric"]): (r["n"], r["median_log"], r["mad_log"]) for r in rows}
        self.loaded_at = now

    def check_batch(self, plpy: Any, rows: list[dict[str, Any]], source: str) -> list[Result]:
        self._load(plpy)
        return [self.check(r) for r in rows]

    def check(self, row: dict[str, Any]) -> Result:
        worst: tuple[float, str] | None = None
        measured: dict[str, float] = {}
        for metric in self.metrics:
            value = row.get(metric)
            base = self.baselines.get((row.get("model"), row.get("node"), metric))
            if value is None or base is None or base[0] < self.min_samples:
                continue
            spread = max(1.4826 * base[2], 0.05)  # a floor, so a constant history does not flag noise
            z = abs(math.log1p(max(float(value), 0.0)) - base[1]) / spread
            measured[metric] = round(z, 2)
            if worst is None or z > worst[0]:
                worst = (z, metric)
        if worst is None:
            return _NO_BASELINE
        if worst[0] > self.threshold:
            return Result("fail", round(worst[0], 2), worst[1], {"z": measured})
        return Result("pass", round(worst[0], 2), None, {"z": measured})


class Python:
    """An admin's PL/Python body: `trace` is a dict of the row; return True/False, a score, a dict
    (status, score, label, details) or None (skipped). Runs read-only with a time limit."""

    def __init__(self, config: dict[str, Any]) -> None:
        _known_keys(config, {"body", "threshold", "time_limit_ms", "signature"}, "python")
        body = config.get("body")
        if not isinstance(body, str) or not body.strip():
            raise ConfigError('python: config needs {"body": "<python code that returns a verdict>"}')
        self.body, self.signature = body, config.get("signature")
        self.threshold = _number(config, "threshold", "python", 0.5)
        self.time_limit = _number(config, "time_limit_ms", "python", 1000.0) / 1000
        source = "def _validate(trace, plpy):\n" + "\n".join("    " + line for line in body.splitlines())
        try:
            code = compile(source, "<python validator>", "exec")
        except SyntaxError as e:
            raise ConfigError(f"python: the body does not compile: {e.msg} (line {e.lineno})") from None
        namespace: dict[str, Any] = {}
        exec(code, namespace)  # noqa: S102 (an admin's validator body, checked at creation)
        self.fn = namespace["_validate"]

    def check_batch(self, plpy: Any, rows: list[dict[str, Any]], source: str) -> list[Result]:
        from python_bodies import approved

        if not approved(self.body, self.signature):
            # Written by someone other than a superuser's create_validator (or on another server).
            why = "this python body was not approved by a superuser on this server: create_validator it again as one"
            return [Result("error", None, "not_approved", {"error": why})] * len(rows)
        out = []
        for row in rows:
            try:
                out.append(_read_only_subtransaction(plpy, lambda row=row: self._verdict(self._run(row, plpy))))
            except Exception as e:
                reraise_cancel(e)
                out.append(error_result(e))
        return out

    def _run(self, row: dict[str, Any], plpy: Any) -> Any:
        deadline = time.monotonic() + self.time_limit
        limit_ms = int(self.time_limit * 1000)

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the validator ran longer than its time limit of {limit_ms} ms")
            return tracer

        previous = sys.gettrace()
        sys.settrace(tracer)
        try:
            return self.fn(dict(row), plpy)
        finally:
            sys.settrace(previous)

    def _verdict(self, value: Any) -> Result:
        if value is None:
            return Result("skipped", None, None, {"reason": "the validator returned None"})
        if isinstance(value, bool):
            return Result("pass" if value else "fail", 1.0 if value else 0.0, None, {})
        if isinstance(value, int | float):
            return Result("pass" if value >= self.threshold else "fail", float(value), None, {})
        if isinstance(value, dict):
            status = value.get("status")
            score = value.get("score")
            if status is None and score is not None:
                status = "pass" if float(score) >= self.threshold else "fail"
            if status not in ("pass", "fail", "skipped"):
                raise ValueError(f"the validator returned status {status!r}; expected pass, fail or skipped")
            details = value.get("details") or {}
            label = value.get("label")
            return Result(status, None if score is None else float(score), None if label is None else str(label),
                          details if isinstance(details, dict) else {"value": details})
        raise ValueError(f"the validator returned a {type(value).__name__}; expected bool, number, dict or None")


def error_result(e: BaseException) -> Result:
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return Result("error", None, type(e).__name__, {"error": _short(message, 500)})
