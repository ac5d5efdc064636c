"""validation_results as one view over packed insert-path results and one-row results: what
the insert trigger packs reads back, updates and deletes as rows, and nothing is doubled."""

from __future__ import annotations

import psycopg
import pytest
from metrics_helpers import add_result, make_validator


def _insert(db: psycopg.Connection, app: str, outputs: list[str]) -> list[int]:
    rows = db.execute(
        "INSERT INTO flywheel.traces (app, input, output, model) SELECT %s, 'a question', o, 'm'"
        " FROM unnest(%s::text[]) o RETURNING id", (app, outputs)).fetchall()
    return [r[0] for r in rows]


def _results(db: psycopg.Connection, trace: int) -> dict[str, tuple[str, str]]:
    rows = db.execute(
        "SELECT v.name, r.status, r.judged_by FROM flywheel.validation_results r"
        " JOIN flywheel.validators v ON v.id = r.validator_id WHERE r.trace_id = %s", (trace,)).fetchall()
    return {name: (status, judged_by) for name, status, judged_by in rows}


def test_the_insert_trigger_writes_one_packed_row_per_trace(db: psycopg.Connection, app_name: str) -> None:
    ids = _insert(db, app_name, ["Fine.", "As an AI language model, I cannot help.", ""])
    packed = db.execute("SELECT trace_id, cardinality(validator_ids) FROM flywheel._insert_results"
                        " WHERE trace_id = ANY(%s) ORDER BY trace_id", (ids,)).fetchall()
    assert [t for t, _ in packed] == ids and all(n >= 6 for _, n in packed)
    assert db.execute("SELECT count(*) FROM flywheel._results WHERE trace_id = ANY(%s)", (ids,)).fetchone() == (0,)
    # The view shows each packed element as a row of its own, with what the validator said.
    fine, stock, empty = (_results(db, t) for t in ids)
    assert fine["stock_phrases"] == ("pass", "code") and fine["length"] == ("pass", "code")
    assert stock["stock_phrases"] == ("fail", "code") and stock["refusal"] == ("fail", "code")
    assert empty["length"] == ("fail", "code")
    n_view = db.execute("SELECT count(*) FROM flywheel.validation_results WHERE trace_id = ANY(%s)", (ids,)).fetchone()
    assert n_view == (sum(n for _, n in packed),)


def test_validate_traces_updates_packed_results_in_place(db: psycopg.Connection, app_name: str) -> None:
    (trace,) = _insert(db, app_name, ["As an AI language model, I think so."])
    db.execute("UPDATE flywheel.validation_results SET status = 'pass'"
               " WHERE trace_id = %s AND validator_id = (SELECT id FROM flywheel.validators WHERE name = 'stock_phrases')",
               (trace,))
    assert _results(db, trace)["stock_phrases"] == ("pass", "code")
    before = db.execute("SELECT cardinality(validator_ids) FROM flywheel._insert_results WHERE trace_id = %s",
                        (trace,)).fetchone()
    got = db.execute("SELECT status FROM flywheel.validate_traces(ARRAY[%s::bigint], ARRAY['stock_phrases'])",
                     (trace,)).fetchall()
    assert got == [("fail",)]
    # Rewritten where it was: same packed row, no second row for the same (trace, validator, version).
    assert _results(db, trace)["stock_phrases"] == ("fail", "code")
    assert db.execute("SELECT cardinality(validator_ids) FROM flywheel._insert_results WHERE trace_id = %s",
                      (trace,)).fetchone() == before
    assert db.execute("SELECT count(*) FROM flywheel._results WHERE trace_id = %s", (trace,)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM flywheel.validation_results WHERE trace_id = %s"
                      " GROUP BY validator_id, validator_version HAVING count(*) > 1", (trace,)).fetchall() == []


def test_rows_of_the_view_insert_update_and_delete_like_a_table(db: psycopg.Connection, app_name: str) -> None:
    (trace,) = _insert(db, app_name, ["Fine."])
    stock = db.execute("SELECT id, version FROM flywheel.validators WHERE name = 'stock_phrases'").fetchone()
    assert stock is not None
    # The key is unique across both stores.
    with pytest.raises(psycopg.errors.UniqueViolation, match="duplicate result"):
        with db.transaction():
            db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status)"
                       " VALUES (%s, %s, %s, 'fail')", (trace, *stock))
    # A human verdict for another version is a row of its own; defaults as in a table.
    db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status, judged_by)"
               " VALUES (%s, %s, 99, 'fail', 'human')", (trace, stock[0]))
    row = db.execute("SELECT details, judged_by FROM flywheel.validation_results"
                     " WHERE trace_id = %s AND validator_version = 99", (trace,)).fetchone()
    assert row == ({}, "human")
    # Deleting one packed result keeps the others; deleting the last removes the packed row.
    n = db.execute("SELECT cardinality(validator_ids) FROM flywheel._insert_results WHERE trace_id = %s",
                   (trace,)).fetchone()[0]  # type: ignore[index]
    db.execute("DELETE FROM flywheel.validation_results WHERE trace_id = %s AND validator_id = %s"
               " AND validator_version = %s", (trace, *stock))
    assert "stock_phrases" not in {k for k, v in _results(db, trace).items() if v[1] == "code"}
    assert db.execute("SELECT cardinality(validator_ids) FROM flywheel._insert_results WHERE trace_id = %s",
                      (trace,)).fetchone() == (n - 1,)
    db.execute("DELETE FROM flywheel.validation_results WHERE trace_id = %s", (trace,))
    assert db.execute("SELECT count(*) FROM flywheel._insert_results WHERE trace_id = %s", (trace,)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM flywheel.validation_results WHERE trace_id = %s", (trace,)).fetchone() == (0,)


def test_deleting_a_validator_removes_only_its_packed_results(db: psycopg.Connection, app_name: str) -> None:
    db.execute("SELECT flywheel.create_validator('test_packed_gone', 'length', '{\"max_chars\": 3}')")
    try:
        ids = _insert(db, app_name, ["Fine.", "Also fine."])
        assert all(_results(db, t)["test_packed_gone"] == ("fail", "code") for t in ids)
        others = {t: set(_results(db, t)) - {"test_packed_gone"} for t in ids}
    finally:
        db.execute("DELETE FROM flywheel.validators WHERE name = 'test_packed_gone'")
    for t in ids:
        assert set(_results(db, t)) == others[t] and others[t]
    arrays = db.execute("SELECT bool_and(cardinality(validator_ids) = cardinality(statuses)"
                        " AND cardinality(details) = cardinality(validator_ids))"
                        " FROM flywheel._insert_results WHERE trace_id = ANY(%s)", (ids,)).fetchone()
    assert arrays == (True,)


def test_inserted_traces_mark_the_pass_rate_rollup(db: psycopg.Connection, app_name: str) -> None:
    db.execute("CALL flywheel.refresh('pass_rate')")
    ids = _insert(db, app_name, ["Fine.", "Fine too."])
    marked = db.execute("SELECT count(*) FROM flywheel._rollup_dirty_days WHERE metric = 'pass_rate'"
                        " AND trace_ids @> %s::bigint[]", (ids,)).fetchone()
    assert marked == (1,)
    db.execute("CALL flywheel.refresh('pass_rate')")
    day_rows = db.execute(
        "SELECT sum(results) FROM flywheel.metric_pass_rate WHERE app = %s", (app_name,)).fetchone()
    assert day_rows is not None and day_rows[0] >= 12


def test_awkward_labels_and_details_survive_the_packed_literal(db: psycopg.Connection, app_name: str) -> None:
    """The trigger parses one literal of nested quoting (array of rows of arrays): whatever a
    validator says must come back exactly."""
    label = 'a "quoted", (paren) {brace} \\ back\\slash; NULL'
    details = {"text": label, "nested": {"q": '"', "b": "\\", "u": "é✓", "n": None}, "list": [1, "x,y"]}
    body = f"return {{'status': 'fail', 'score': 0.25, 'label': {label!r}, 'details': {details!r}}}"
    db.execute("SELECT flywheel.create_validator('test_packed_awkward', 'python', jsonb_build_object('body', %s::text),"
               " applies_to => jsonb_build_object('app', %s::text))", (body, app_name))
    try:
        (trace,) = _insert(db, app_name, ["Fine."])
        row = db.execute(
            "SELECT r.status, r.score, r.label, r.details, r.judged_by FROM flywheel.validation_results r"
            " JOIN flywheel.validators v ON v.id = r.validator_id"
            " WHERE v.name = 'test_packed_awkward' AND r.trace_id = %s", (trace,)).fetchone()
        assert row == ("fail", 0.25, label, details, "code")
        # Packed, and still with the other validators' results beside it.
        assert db.execute("SELECT cardinality(validator_ids) > 1 FROM flywheel._insert_results WHERE trace_id = %s",
                          (trace,)).fetchone() == (True,)
    finally:
        db.execute("DELETE FROM flywheel.validators WHERE name = 'test_packed_awkward'")


def test_a_malformed_packed_literal_is_a_warning_never_a_failed_insert(db: psycopg.Connection, app_name: str) -> None:
    """The packed rows are parsed inside the trigger's error handler: whatever _evaluate hands
    back, the application's INSERT stands (and says why its results are missing)."""
    original = db.execute("SELECT pg_get_functiondef('flywheel._evaluate'::regproc)").fetchone()[0]  # type: ignore[index]
    head = original[:original.index("AS $function$")]
    outputs = ("r_trace_ids", "r_validator_ids", "r_names", "r_versions", "r_statuses", "r_scores", "r_labels",
               "r_details", "j_trace_ids", "j_validator_ids", "j_versions")
    broken = ("{" + ", ".join(f"'{k}': '{{}}'" for k in outputs)
              + ", 'p_trace_ids': '{' + str(ids[0]) + '}', 'p_rows': '{\"(1,,{oops\"}'}")
    db.execute(head + "AS $function$\nreturn " + broken + "\n$function$")
    warnings: list[str] = []
    db.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
    try:
        (trace,) = _insert(db, app_name, ["Fine."])
    finally:
        db.execute(original)
    assert db.execute("SELECT count(*) FROM flywheel.traces WHERE id = %s", (trace,)).fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM flywheel._insert_results WHERE trace_id = %s", (trace,)).fetchone() == (0,)
    assert any("validators did not run on this INSERT" in w for w in warnings)
    # Restored: the next trace is validated again.
    (after,) = _insert(db, app_name, ["Fine again."])
    assert db.execute("SELECT count(*) FROM flywheel._insert_results WHERE trace_id = %s", (after,)).fetchone() == (1,)


def test_metrics_count_packed_and_one_row_results_alike(db: psycopg.Connection, app_name: str) -> None:
    """The built-in metrics read flywheel._trace_results: traces joined with each table of results
    on its own. It must hold exactly what traces joined with the validation_results view holds."""
    ids = _insert(db, app_name, ["Fine.", "As an AI language model, I cannot help.", ""])
    judge, judge_name = make_validator(db)
    add_result(db, ids[0], judge, "fail", label="hallucination")  # a judge's verdict: one row in _results
    db.execute("INSERT INTO flywheel.traces (app, input, output, model, shadow) VALUES (%s, 'q', 'Fine.', 'm', true)",
               (app_name,))
    columns = "app, node, model, prompt_version, shadow, validator_id, validator_version, status, label"
    joined = db.execute(
        f"SELECT t.id, t.created_at, {columns} FROM flywheel.traces t"  # noqa: S608 (constant column names)
        " JOIN flywheel.validation_results r ON r.trace_id = t.id WHERE t.app = %s ORDER BY 1, 7, 8", (app_name,)).fetchall()
    assert db.execute(f"SELECT trace_id, created_at, {columns} FROM flywheel._trace_results"  # noqa: S608
                      " WHERE app = %s ORDER BY 1, 7, 8", (app_name,)).fetchall() == joined
    assert {r[7] for r in joined} >= {judge} and len(joined) > 3 * 6  # both tables, and the shadow trace
    live = [r for r in joined if not r[6]]
    expected_failures = sum(1 for r in live if r[9] == "fail")
    mode = db.execute("SELECT kind, schedule FROM flywheel.metrics WHERE name = 'pass_rate'").fetchone()
    assert mode is not None
    try:
        db.execute("SELECT flywheel.set_metric_mode('pass_rate', 'view')")
        got = db.execute("SELECT sum(results), sum(failed), sum(results) FILTER (WHERE validator = %s)"
                         " FROM flywheel.metric_pass_rate WHERE app = %s", (judge_name, app_name)).fetchone()
        assert got == (len(live), expected_failures, 1)
    finally:
        db.execute("SELECT flywheel.set_metric_mode('pass_rate', %s, %s)", mode)
    modes = db.execute("SELECT failed_traces, hallucination FROM flywheel.metric_failure_modes WHERE app = %s",
                       (app_name,)).fetchone()
    assert modes == (len({r[0] for r in live if r[9] == "fail"}), 1)


def test_human_labels_meet_packed_results(db: psycopg.Connection, app_name: str) -> None:
    """Disagreements, validator alignment and the annotation queue's agreement rates start from
    the labels and probe the results per label: packed results must be found as one-row ones are."""
    def items() -> dict[tuple[str, str], int]:
        return {(h, j): n for h, j, n in db.execute(
            "SELECT human, judge, count(*) FROM flywheel._alignment_items WHERE validator = 'stock_phrases'"
            " GROUP BY 1, 2")}

    before = items()
    stock, fine = _insert(db, app_name, ["As an AI language model, I cannot say.", "Fine."])
    assert _results(db, stock)["stock_phrases"] == ("fail", "code")
    for trace in (stock, fine):  # a person disagrees with the validator on the first only
        db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, %s, 'stock_phrases', 'pass')",
                   (trace, app_name))
    got = db.execute("SELECT trace_id, human_verdict, validator_status, judged_by FROM flywheel.disagreements"
                     " WHERE trace_id = ANY(%s)", ([stock, fine],)).fetchall()
    assert got == [(stock, "pass", "fail", "code")]
    # Only a trace's latest label counts: the person changes their mind on the first.
    db.execute("INSERT INTO flywheel.labels (trace_id, app, validator, verdict) VALUES (%s, %s, 'stock_phrases', 'fail')",
               (stock, app_name))
    after = items()
    assert {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)} == {
        ("fail", "fail"): 1, ("pass", "pass"): 1}
