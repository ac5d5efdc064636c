"""Generated bad input (hypothesis): a trace or feedback row is either stored exactly as given
or refused with a clear error, and a refusal writes nothing."""

from __future__ import annotations

import math
import uuid

import psycopg
import pytest
from fuzzing import configs, examples
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

NODE_TYPES = ["classifier", "writer", "codegen", "retriever", "tool", "guard", "other"]
FEEDBACK_KINDS = ["thumbs", "rating", "correction", "click", "dwell", "requery", "continuation", "comment"]

# PostgreSQL text holds any Unicode but NUL; lone surrogates cannot be encoded as UTF-8.
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300)
numbers = st.one_of(
    st.none(), st.just(math.nan), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10).map(float)
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**31), 2**31), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=10,
)
SETTINGS = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _count(db: psycopg.Connection, table: str, app: str) -> int:
    return db.execute(f"SELECT count(*) FROM flywheel.{table} WHERE app = %s", (app,)).fetchone()[0]  # type: ignore[index]


def _trace_should_be_accepted(node_type: str, latency: float | None, metadata: object) -> bool:
    return (
        node_type in NODE_TYPES
        and (latency is None or (latency >= 0 and not math.isnan(latency)))
        and isinstance(metadata, dict)
    )


@SETTINGS
@given(
    input_text=texts,
    output_text=texts,
    node_type=st.one_of(st.sampled_from(NODE_TYPES), texts),
    latency=numbers,
    metadata=json_values,
)
def test_a_trace_is_stored_exactly_or_refused_cleanly(
    db: psycopg.Connection, app_name: str, input_text: str, output_text: str, node_type: str,
    latency: float | None, metadata: object,
) -> None:
    before = _count(db, "traces", app_name)
    expected = _trace_should_be_accepted(node_type, latency, metadata)
    try:
        row = db.execute(
            "INSERT INTO flywheel.traces (app, input, output, node_type, latency_ms, metadata)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING input, output, node_type, latency_ms, metadata",
            (app_name, input_text, output_text, node_type, latency, Jsonb(metadata)),
        ).fetchone()
    except (psycopg.errors.CheckViolation, psycopg.errors.DataError) as e:
        assert not expected, f"refused a valid trace: {e}"
        assert _count(db, "traces", app_name) == before
        return
    assert expected, "accepted an invalid trace"
    assert row == (input_text, output_text, node_type, latency, metadata)
    assert _count(db, "traces", app_name) == before + 1


def _feedback_should_be_accepted(kind: str, value: float | None, corrected: str | None, comment: str | None) -> bool:
    if kind not in FEEDBACK_KINDS:
        return False
    if value is not None and math.isnan(value) and kind in ("thumbs", "rating", "dwell"):
        return False  # NaN is no rating, no thumb and no duration (NaN sorts above every number)
    return {
        "thumbs": value is None or value in (1.0, -1.0),
        "rating": value is None or 1 <= value <= 5,
        "dwell": value is None or value >= 0,
        "correction": corrected is not None,
        "comment": comment is not None,
    }.get(kind, True)


@pytest.fixture
def trace_id(db: psycopg.Connection, app_name: str) -> int:
    return db.execute(  # type: ignore[index]
        "INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'q', 'a') RETURNING id", (app_name,)
    ).fetchone()[0]


@SETTINGS
@given(
    kind=st.one_of(st.sampled_from(FEEDBACK_KINDS), texts),
    value=numbers,
    corrected=st.one_of(st.none(), texts),
    comment=st.one_of(st.none(), texts),
)
def test_feedback_is_stored_or_refused_as_its_rules_say(
    db: psycopg.Connection, app_name: str, trace_id: int, kind: str, value: float | None,
    corrected: str | None, comment: str | None,
) -> None:
    before = _count(db, "feedback", app_name)
    expected = _feedback_should_be_accepted(kind, value, corrected, comment)
    try:
        db.execute(
            "INSERT INTO flywheel.feedback (trace_id, kind, value, corrected_output, comment)"
            " VALUES (%s, %s, %s, %s, %s)",
            (trace_id, kind, value, corrected, comment),
        )
    except psycopg.errors.CheckViolation as e:
        assert not expected, f"refused valid feedback: {e}"
        assert _count(db, "feedback", app_name) == before
        return
    assert expected, f"accepted invalid feedback {kind!r} {value!r}"
    assert _count(db, "feedback", app_name) == before + 1


@SETTINGS
@given(generated=configs())
@example(generated=("classifier", {"labels": None}))  # found by make fuzz: applies to classifier traces only
@example(generated=("pii", {"fields": [[]]}))  # the audit's: a Python TypeError
def test_a_validator_config_of_any_shape_is_refused_in_one_line_or_works(
        db: psycopg.Connection, app_name: str, generated: tuple[str, object]) -> None:
    """Every built-in kind, each key set to anything (create_validator('x', 'pii', '{"fields": [[]]}')
    was a Python TypeError): refused with one clear line and nothing written, or created and usable."""
    kind, config = generated
    name = f"prop_{kind}_{uuid.uuid4().hex[:8]}"
    try:
        vid = db.execute("SELECT flywheel.create_validator(%s, %s, %s, applies_to => %s)",
                         (name, kind, Jsonb(config), Jsonb({"app": app_name}))).fetchone()[0]  # type: ignore[index]
    except psycopg.Error as e:
        message = e.diag.message_primary or ""
        assert e.sqlstate in ("22023", "P0001"), (e.sqlstate, str(e))  # invalid_parameter_value, raise_exception
        assert message.startswith("create_validator: ") and "\n" not in message and len(message) < 600, message
        assert "Traceback" not in str(e) and "TypeError" not in str(e), str(e)
        assert db.execute("SELECT count(*) FROM flywheel.validators WHERE name = %s", (name,)).fetchone() == (0,)
        return
    try:
        # (create_validator points classifier validators at classifier traces)
        trace = db.execute("INSERT INTO flywheel.traces (app, node_type, input, output)"
                           " VALUES (%s, %s, 'mail a@b.co', '{\"a\": 1}') RETURNING id",
                           (app_name, "classifier" if kind == "classifier" else "writer")).fetchone()[0]  # type: ignore[index]
        status = db.execute("SELECT status FROM flywheel.validation_results WHERE trace_id = %s AND validator_id = %s",
                            (trace, vid)).fetchone()
        assert status is not None and status[0] in ("pass", "fail", "skipped"), (config, status)
    finally:
        db.execute("DELETE FROM flywheel.validators WHERE id = %s", (vid,))
