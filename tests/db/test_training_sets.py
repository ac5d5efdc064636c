"""Training sets: what each kind selects, the leak guard, immutable snapshots, privacy, bad input."""

from __future__ import annotations

import psycopg
import pytest


def _trace(db: psycopg.Connection, app: str, input: str, output: str, **extra: object) -> int:
    cols = ["app", "input", "output", *extra]
    row = db.execute(
        f"INSERT INTO flywheel.traces ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) RETURNING id",
        [app, input, output, *extra.values()],
    ).fetchone()
    assert row is not None
    return int(row[0])


def _build(db: psycopg.Connection, name: str, kind: str, filter: str) -> tuple[int, int, dict[str, int]]:
    row = db.execute("SELECT * FROM flywheel.create_training_set(%s, %s, %s::jsonb)", (name, kind, filter)).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def _rows(db: psycopg.Connection, name: str, version: int | None = None) -> list[tuple]:
    return db.execute("SELECT trace_id, trace_b, input, output, rejected, source, metadata"
                      " FROM flywheel.training_set_rows(%s, %s)", (name, version)).fetchall()


@pytest.fixture
def name(app_name: str) -> str:
    return f"ts-{app_name}"


def test_sft_takes_the_correction_then_approved_outputs_and_holds_golden_traces_back(
        db: psycopg.Connection, app_name: str, name: str) -> None:
    corrected = _trace(db, app_name, "capital of France?", "Lyon")
    db.execute("SELECT flywheel.record_feedback(%s, 'correction', NULL, 'Paris')", (corrected,))
    approved = _trace(db, app_name, "2 + 2?", "4")
    db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, %s, 'helpful', 'pass')",
               (approved, app_name))
    rejected = _trace(db, app_name, "colour of the sky?", "green")
    db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, %s, 'helpful', 'fail')",
               (rejected, app_name))
    unlabelled = _trace(db, app_name, "largest ocean?", "Pacific")
    golden = _trace(db, app_name, "boiling point of water at sea level?", "100 C")
    db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, %s, 'helpful', 'pass')",
               (golden, app_name))
    db.execute("SELECT flywheel.promote_to_golden(%s, %s, NULL, '100 C')", (golden, f"g-{app_name}"))
    # the same question asked again, approved: a leak of the golden input by another trace
    again = _trace(db, app_name, "Boiling point of water at sea level?", "100 degrees")
    db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, %s, 'helpful', 'pass')",
               (again, app_name))

    version, count, held = _build(db, name, "sft", f'{{"apps": ["{app_name}"]}}')
    rows = _rows(db, name)
    assert (version, count) == (1, 2)
    assert [(r[0], r[3], r[5]) for r in rows] == [(corrected, "Paris", "correction"), (approved, "4", "approved")]
    assert held == {"golden": 1, "golden_input": 1}
    assert unlabelled not in {r[0] for r in rows} and rejected not in {r[0] for r in rows}


def test_validators_source_needs_every_verdict_to_pass_and_no_negative_feedback(
        db: psycopg.Connection, app_name: str, name: str) -> None:
    good = _trace(db, app_name, "q1", "a1")
    thumbs_down = _trace(db, app_name, "q2", "a2")
    db.execute("SELECT flywheel.record_feedback(%s, 'thumbs', -1)", (thumbs_down,))
    if db.execute("SELECT to_regprocedure('flywheel.validate_traces(bigint[])')").fetchone() != (None,):
        db.execute("SELECT flywheel.validate_traces(ARRAY[%s, %s]::bigint[])", (good, thumbs_down))  # deferred mode
    passed = db.execute("SELECT count(*) FILTER (WHERE status = 'pass'), count(*) FILTER (WHERE status = 'fail')"
                        " FROM flywheel.validation_results WHERE trace_id = %s", (good,)).fetchone()
    assert passed is not None
    _, count, _ = _build(db, name, "sft", f'{{"apps": ["{app_name}"], "sources": ["validators"]}}')
    ids = {r[0] for r in _rows(db, name)}
    assert thumbs_down not in ids
    assert (good in ids) == (passed[0] > 0 and passed[1] == 0)


def test_preferences_take_the_people_majority_and_judges_only_when_allowed(
        db: psycopg.Connection, app_name: str, name: str) -> None:
    a = _trace(db, app_name, "write a haiku", "an old silent pond")
    b = _trace(db, app_name, "write a haiku", "roses are red")
    c = _trace(db, app_name, "name a prime", "7")
    d = _trace(db, app_name, "name a prime", "9")
    for winner, who in [("a", "p1"), ("a", "p2"), ("b", "p3")]:
        db.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, app, winner, annotator) VALUES (%s, %s, %s, %s, %s)",
                   (a, b, app_name, winner, who))
    db.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, app, winner, judged_by, validator)"
               " VALUES (%s, %s, %s, 'b', 'llm', 'judge_x'), (%s, %s, %s, 'b', 'llm', 'judge_x')",
               (a, b, app_name, d, c, app_name))  # the judge: against the people on a/b; c beats d

    _, count, _ = _build(db, name, "preference", f'{{"apps": ["{app_name}"]}}')
    rows = _rows(db, name)
    assert count == 1
    chosen, rejected_trace, prompt, chosen_text, rejected_text, source, meta = rows[0]
    assert (chosen, rejected_trace, prompt, chosen_text, rejected_text, source) == (
        a, b, "write a haiku", "an old silent pond", "roses are red", "human")
    assert meta["votes"] == 3 and meta["agreement"] == pytest.approx(0.667) and meta["judge_agreement"] == 0

    version, count, _ = _build(db, name, "preference", f'{{"apps": ["{app_name}"], "sources": ["human", "llm"]}}')
    rows = _rows(db, name)
    assert (version, count) == (2, 2)
    assert {(r[0], r[1], r[5]) for r in rows} == {(a, b, "human"), (c, d, "llm")}


def test_a_snapshot_never_changes_and_reads_back_identically(db: psycopg.Connection, app_name: str, name: str) -> None:
    t = _trace(db, app_name, "q", "draft")
    db.execute("SELECT flywheel.record_feedback(%s, 'correction', NULL, 'final')", (t,))
    _build(db, name, "sft", f'{{"apps": ["{app_name}"]}}')
    first = _rows(db, name, 1)
    db.execute("SELECT flywheel.record_feedback(%s, 'correction', NULL, 'even better')", (t,))
    version, _, _ = db.execute("SELECT * FROM flywheel.rebuild_training_set(%s)", (name,)).fetchone()  # type: ignore[misc]
    assert version == 2
    assert _rows(db, name, 1) == first and first[0][3] == "final"
    assert _rows(db, name, 2)[0][3] == "even better"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="immutable"):
        db.execute("UPDATE flywheel.training_set_rows SET output = 'x' WHERE set_name = %s", (name,))


def test_the_same_data_builds_the_same_rows(db: psycopg.Connection, app_name: str, name: str) -> None:
    for i in range(5):
        t = _trace(db, app_name, f"question {i}", f"answer {i}")
        db.execute("SELECT flywheel.record_feedback(%s, 'correction', NULL, %s)", (t, f"better {i}"))
    _build(db, name, "sft", f'{{"apps": ["{app_name}"]}}')
    db.execute("SELECT flywheel.rebuild_training_set(%s)", (name,))
    assert _rows(db, name, 1) == _rows(db, name, 2) and len(_rows(db, name, 1)) == 5


def test_pii_is_redacted_by_default(db: psycopg.Connection, app_name: str, name: str) -> None:
    t = _trace(db, app_name, "mail me at jane.doe@example.com", "sure")
    db.execute("SELECT flywheel.record_feedback(%s, 'correction', NULL, 'I will write to jane.doe@example.com')", (t,))
    _build(db, name, "sft", f'{{"apps": ["{app_name}"]}}')
    (row,) = _rows(db, name)
    assert "jane.doe@example.com" not in row[2] + row[3]
    _build(db, name, "sft", f'{{"apps": ["{app_name}"], "redact_pii": false}}')
    assert "jane.doe@example.com" in _rows(db, name, 2)[0][2]


def test_forget_user_removes_their_rows_and_marks_the_snapshot(db: psycopg.Connection, app_name: str, name: str) -> None:
    mine = _trace(db, app_name, "my question", "x", user_id=f"u-{app_name}")
    other = _trace(db, app_name, "another question", "y")
    for t in (mine, other):
        db.execute("SELECT flywheel.record_feedback(%s, 'correction', NULL, 'fixed')", (t,))
    _build(db, name, "sft", f'{{"apps": ["{app_name}"]}}')
    counts = db.execute("SELECT flywheel.forget_user(%s)", (f"u-{app_name}",)).fetchone()[0]  # type: ignore[index]
    assert counts.get("training_set_rows.trace_id") == 1
    assert [r[0] for r in _rows(db, name, 1)] == [other]
    marked = db.execute("SELECT row_count, forgotten_rows, forgotten_at IS NOT NULL FROM flywheel.training_set_versions"
                        " WHERE set_name = %s", (name,)).fetchone()
    assert marked == (2, 1, True)
    _build(db, name, "sft", f'{{"apps": ["{app_name}"]}}')
    assert [r[0] for r in _rows(db, name, 2)] == [other]


def test_an_empty_selection_is_an_empty_snapshot_with_a_notice(db: psycopg.Connection, app_name: str, name: str) -> None:
    _trace(db, app_name, "q", "unlabelled")
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    version, count, held = _build(db, name, "sft", f'{{"apps": ["{app_name}"]}}')
    assert (version, count, held) == (1, 0, {})
    assert any("selection is empty" in n for n in notices)


@pytest.mark.parametrize("kind, filter, message", [
    ("sft", '{"app": ["x"]}', 'unknown key "app"'),
    ("sft", '{"apps": ["no-such-app-anywhere"]}', 'unknown app "no-such-app-anywhere"'),
    ("sft", '{"validators": ["no_such_validator"]}', 'unknown validator "no_such_validator"'),
    ("preference", '{"judges": ["no_such_judge"]}', 'unknown validator "no_such_judge"'),
    ("sft", '{"sources": ["human"]}', 'unknown source "human"'),
    ("sft", '{"since": "yesterday-ish"}', "since must be a timestamp"),
    ("sft", '{"near_duplicate_threshold": 2}', "near_duplicate_threshold must be a number from 0 to 1"),
    ("dpo", '{}', "kind must be sft or preference"),
    ("sft", '[]', "filter must be a JSON object"),
])
def test_a_bad_filter_is_refused_in_one_line(db: psycopg.Connection, name: str, kind: str, filter: str,
                                             message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message) as e:
        _build(db, name, kind, filter)
    assert "\n" not in e.value.diag.message_primary  # type: ignore[operator]
    assert db.execute("SELECT count(*) FROM flywheel.training_sets WHERE name = %s", (name,)).fetchone() == (0,)


def test_only_admins_build_and_nobody_edits_snapshots(db: psycopg.Connection, login_role, app_name: str,
                                                      name: str) -> None:
    t = _trace(db, app_name, "q", "a")
    db.execute("SELECT flywheel.record_feedback(%s, 'correction', NULL, 'b')", (t,))
    admin = login_role("flywheel_admin")
    app = login_role("flywheel_app", app=app_name)
    row = admin.execute("SELECT row_count FROM flywheel.create_training_set(%s, 'sft', %s::jsonb)",
                        (name, f'{{"apps": ["{app_name}"]}}')).fetchone()
    assert row == (1,)
    for sql in ("UPDATE flywheel.training_set_rows SET output = 'x'", "DELETE FROM flywheel.training_set_rows",
                "INSERT INTO flywheel.training_set_versions (set_name, version, filter, row_count)"
                f" VALUES ('{name}', 9, '{{}}', 0)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.execute(sql)
    for sql in ("SELECT * FROM flywheel.training_set_rows(%s)", "SELECT * FROM flywheel.create_training_set(%s, 'sft')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute(sql, (name,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT * FROM flywheel.training_set_rows")


def test_a_near_duplicate_of_a_golden_input_is_held_back_at_the_sets_threshold(
        db: psycopg.Connection, app_name: str, name: str) -> None:
    golden = _trace(db, app_name, "What is the boiling point of water at sea level?", "100 C")
    db.execute("SELECT flywheel.promote_to_golden(%s, %s, NULL, '100 C')", (golden, f"g-{app_name}"))
    near = _trace(db, app_name, "what is the boiling point of water at sea level, in Celsius?", "about 100")
    other = _trace(db, app_name, "Name three prime numbers below ten.", "2, 3, 5")
    for t in (near, other):
        db.execute("SELECT flywheel.record_feedback(%s, 'correction', NULL, 'fixed')", (t,))
    # the hashed n-gram embedder puts the two questions at cosine ~0.88, the prime question far away
    _, count, held = _build(db, name, "sft", f'{{"apps": ["{app_name}"], "near_duplicate_threshold": 0.85}}')
    assert (count, held) == (1, {"near_duplicate": 1}) and [r[0] for r in _rows(db, name)] == [other]
    _, count, held = _build(db, name, "sft", f'{{"apps": ["{app_name}"]}}')  # the default 0.95 lets it through
    assert (count, held) == (2, {})
