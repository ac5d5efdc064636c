"""Traces, feedback and labels: defaults, constraints with clear messages, partitions, indexes."""

from __future__ import annotations

import psycopg
import pytest


def _trace(db: psycopg.Connection, default_app: str, **cols: object) -> int:
    cols = {"app": default_app, "input": "q", "output": "a", "model": "m", "prompt_version": "v1", **cols}
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    row = db.execute(f"INSERT INTO flywheel.traces ({names}) VALUES ({marks}) RETURNING id", list(cols.values())).fetchone()  # noqa: S608
    assert row is not None
    return int(row[0])


def test_the_documented_insert_works(db: psycopg.Connection) -> None:
    row = db.execute(
        "INSERT INTO flywheel.traces (input, output, model, prompt_version)"
        " VALUES ('2+2?', '4', 'gpt-4o', 'v1.0') RETURNING app, node_type, metadata, uid"
    ).fetchone()
    assert row == ("default", "other", {}, None)  # uid is the application's own id: only when given


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("node_type", "planner", "traces_node_type_is_known"),
        ("latency_ms", -1, "traces_latency_ms_is_not_negative"),
        ("tokens_in", -5, "traces_tokens_in_is_not_negative"),
        ("cost_usd", -0.1, "traces_cost_usd_is_not_negative"),
        ("app", "", "traces_app_is_not_empty"),
    ],
)
def test_nonsense_traces_are_rejected_by_named_constraints(
    db: psycopg.Connection, app_name: str, column: str, value: object, constraint: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        _trace(db, app_name, **{column: value})


def test_metadata_must_be_an_object(db: psycopg.Connection, app_name: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="traces_metadata_is_an_object"):
        _trace(db, app_name, metadata=psycopg.types.json.Jsonb([1, 2]))


@pytest.mark.parametrize(
    ("kind", "value", "extra", "constraint"),
    [
        ("applause", 1, {}, "feedback_kind_is_known"),
        ("rating", 6, {}, "feedback_rating_is_1_to_5"),
        ("rating", 0, {}, "feedback_rating_is_1_to_5"),
        ("thumbs", 2, {}, "feedback_thumbs_is_1_up_or_minus_1_down"),
        ("dwell", -3, {}, "feedback_dwell_is_not_negative"),
        ("correction", None, {}, "feedback_correction_needs_corrected_output"),
    ],
)
def test_nonsense_feedback_is_rejected(
    db: psycopg.Connection, app_name: str, kind: str, value: object, extra: dict[str, object], constraint: str
) -> None:
    trace_id = _trace(db, app_name)
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        db.execute("INSERT INTO flywheel.feedback (trace_id, kind, value) VALUES (%s, %s, %s)", (trace_id, kind, value))
    assert db.execute("SELECT count(*) FROM flywheel.feedback WHERE trace_id = %s", (trace_id,)).fetchone() == (0,)


def test_feedback_for_a_missing_trace_is_a_clear_error(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="feedback for trace -42, which does not exist"):
        db.execute("INSERT INTO flywheel.feedback (trace_id, kind, value) VALUES (-42, 'thumbs', 1)")


def test_feedback_and_labels_take_the_app_of_their_trace(db: psycopg.Connection, app_name: str) -> None:
    trace_id = _trace(db, app_name)
    db.execute("INSERT INTO flywheel.feedback (trace_id, kind, value) VALUES (%s, 'rating', 4)", (trace_id,))
    db.execute("INSERT INTO flywheel.labels (trace_id, validator, verdict) VALUES (%s, 'tone', 'fail')", (trace_id,))
    assert db.execute("SELECT app FROM flywheel.feedback WHERE trace_id = %s", (trace_id,)).fetchone() == (app_name,)
    assert db.execute("SELECT app FROM flywheel.labels WHERE trace_id = %s", (trace_id,)).fetchone() == (app_name,)


def test_a_label_must_say_something(db: psycopg.Connection, app_name: str) -> None:
    trace_id = _trace(db, app_name)
    with pytest.raises(psycopg.errors.CheckViolation, match="labels_say_something"):
        db.execute("INSERT INTO flywheel.labels (trace_id, validator) VALUES (%s, 'tone')", (trace_id,))


def test_new_month_partitions_take_their_rows_from_the_default_partition(
    db: psycopg.Connection, app_name: str
) -> None:
    trace_id = _trace(db, app_name, created_at="2031-05-17T12:00:00Z")
    assert db.execute("SELECT tableoid::regclass::text FROM flywheel.traces WHERE id = %s", (trace_id,)).fetchone() == (
        "flywheel._traces_default",
    )
    created = db.execute("SELECT flywheel.ensure_trace_partitions('2031-05-01', '2031-06-30')").fetchone()
    assert created == (2,)
    assert db.execute("SELECT tableoid::regclass::text FROM flywheel.traces WHERE id = %s", (trace_id,)).fetchone() == (
        "flywheel._traces_2031_05",
    )
    assert db.execute("SELECT flywheel.ensure_trace_partitions('2031-05-01', '2031-06-30')").fetchone() == (0,)


def test_the_traces_indexes_are_the_few_the_insert_path_pays_for(db: psycopg.Connection) -> None:
    indexes = dict(db.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'flywheel'"
                              " AND tablename = 'traces'").fetchall())
    assert set(indexes) == {"traces_pkey", "traces_created_at", "traces_app_created_at", "traces_uid",
                            "traces_run_id", "traces_user_id"}
    # Optional columns are indexed only where given, so a trace without them pays nothing.
    assert all("WHERE" in indexes[i] for i in ("traces_uid", "traces_run_id", "traces_user_id"))
