"""Calibrated pairwise judges (issue 16): on llmfao, a calibration learnt from the crowd's votes
beats raw GPT-4 on the newest held-out labels; bad input leaves the raw verdict standing."""

from __future__ import annotations

import psycopg
import pytest

from dbflywheel.datasets.llmfao import load


@pytest.fixture(scope="module")
def llmfao(dsn: str) -> tuple[str, str]:
    app, prefix = "llmfao-test", "llmfaotest"
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT 1 FROM flywheel.traces WHERE app = %s LIMIT 1", (app,)).fetchone() is None:
            load(conn, app=app, judge_prefix=prefix)
    return app, prefix


def test_calibration_of_gpt4_beats_the_raw_judge_on_held_out_labels(db: psycopg.Connection,
                                                                     llmfao: tuple[str, str]) -> None:
    judge = f"{llmfao[1]}_gpt4"
    db.execute("DELETE FROM flywheel.calibrations WHERE validator = %s", (judge,))
    row = db.execute("SELECT * FROM flywheel.calibrate(%s)", (judge,)).fetchone()
    assert row is not None
    version, n_labels, n_holdout, kappa, raw_kappa, active_kappa, activated = row
    assert version == 1 and n_labels > 1000 and n_holdout == n_labels - int(n_labels * 0.75)
    assert active_kappa is None
    assert kappa > raw_kappa, (kappa, raw_kappa)
    assert activated
    verdicts = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE calibration_version = 1), count(DISTINCT calibrated_verdict),"
        " min(confidence), max(confidence) FROM flywheel.calibrated_verdicts WHERE validator = %s",
        (judge,)).fetchone()
    assert verdicts is not None and verdicts[0] == 3236 and verdicts[1] == 3236 and verdicts[2] >= 2
    assert 0 < verdicts[3] <= verdicts[4] <= 1
    # A second fit on the same labels is not better than the active one: stored, not activated.
    again = db.execute("SELECT version, activated FROM flywheel.calibrate(%s)", (judge,)).fetchone()
    assert again == (2, False)
    assert db.execute("SELECT version FROM flywheel.calibrations WHERE validator = %s AND active",
                      (judge,)).fetchone() == (1,)


def test_an_unknown_judge_is_a_one_line_error(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no pairwise LLM verdicts"):
        db.execute("SELECT * FROM flywheel.calibrate('no-such-judge')")
    db.rollback()


def test_too_few_labels_leave_the_raw_verdict_and_write_nothing(db: psycopg.Connection,
                                                                llmfao: tuple[str, str]) -> None:
    # gpt35's verdicts on 5 pairs only, as another judge: too few labels.
    app, prefix = llmfao
    db.execute(
        "INSERT INTO flywheel.preferences (trace_a, trace_b, winner, judged_by, validator)"
        " SELECT trace_a, trace_b, winner, 'llm', 'calibration-few' FROM flywheel.preferences"
        " WHERE validator = %s ORDER BY id LIMIT 5", (f"{prefix}_gpt35",))
    db.commit()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="fewer than the 30") as info:
        db.execute("SELECT * FROM flywheel.calibrate('calibration-few')")
    db.rollback()
    assert info.value.diag.message_hint == "the raw verdict stands"
    assert db.execute("SELECT count(*) FROM flywheel.calibrations WHERE validator = 'calibration-few'"
                      ).fetchone() == (0,)
    raw = db.execute("SELECT count(*) FILTER (WHERE raw_verdict = calibrated_verdict), count(*)"
                     " FROM flywheel.calibrated_verdicts WHERE validator = 'calibration-few'").fetchone()
    assert raw == (5, 5)


def test_people_of_one_class_leave_the_raw_verdict_and_write_nothing(db: psycopg.Connection) -> None:
    ids = [r[0] for r in db.execute(
        "INSERT INTO flywheel.traces (app, input, output) SELECT 'calib-one', 'q' || (g / 2), repeat('x', g)"
        " FROM generate_series(1, 80) g RETURNING id").fetchall()]
    pairs = list(zip(ids[0::2], ids[1::2], strict=True))
    with db.cursor() as cur:
        for i, (a, b) in enumerate(pairs):
            cur.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner, judged_by, annotator)"
                        " VALUES (%s, %s, 'a', 'human', 'p1')", (a, b))
            cur.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner, judged_by, validator)"
                        " VALUES (%s, %s, %s, 'llm', 'calib-one')", (a, b, ("a", "b", "tie")[i % 3]))
    db.commit()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="one class only") as info:
        db.execute("SELECT * FROM flywheel.calibrate('calib-one')")
    db.rollback()
    assert info.value.diag.message_hint == "the raw verdict stands"
    assert db.execute("SELECT count(*) FROM flywheel.calibrations WHERE validator = 'calib-one'").fetchone() == (0,)


def test_cli_calibrate_prints_raw_and_calibrated_kappa(dsn: str, llmfao: tuple[str, str]) -> None:
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "dbflywheel")
    ok = subprocess.run([cli, "calibrate", f"{llmfao[1]}_gpt4", "--dsn", dsn], capture_output=True, text=True,
                        timeout=180)
    assert ok.returncode == 0, ok.stderr
    assert "kappa raw 0." in ok.stdout and "calibrated" in ok.stdout and "labelled pairs" in ok.stdout
    bad = subprocess.run([cli, "calibrate", "no-such-judge", "--dsn", dsn], capture_output=True, text=True,
                         timeout=180)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "no pairwise LLM verdicts" in bad.stderr


def test_abstain_below_marks_unsure_calibrated_verdicts(db: psycopg.Connection, llmfao: tuple[str, str]) -> None:
    from psycopg.types.json import Jsonb

    judge = f"{llmfao[1]}_gpt4"
    db.execute("DELETE FROM flywheel.calibrations WHERE validator = %s", (judge,))
    db.execute("SELECT * FROM flywheel.calibrate(%s)", (judge,))
    db.execute("SELECT flywheel.create_validator(%s, 'llm_pairwise', %s, 'async', %s)",
               (judge, Jsonb({"redact_pii": False, "abstain_below": 0.6}), Jsonb({"app": "none"})))
    row = db.execute("SELECT count(*) FILTER (WHERE abstained), count(*) FILTER (WHERE abstained AND confidence >= 0.6),"
                     " count(*) FILTER (WHERE NOT abstained AND confidence < 0.6), count(*)"
                     " FROM flywheel.calibrated_verdicts WHERE validator = %s", (judge,)).fetchone()
    assert row is not None and 0 < row[0] < row[3] and row[1] == 0 and row[2] == 0
    db.rollback()
    with pytest.raises(psycopg.Error, match="abstain_below"):
        db.execute("SELECT flywheel.create_validator('calib_bad', 'llm_pairwise', %s, 'async', '{}')",
                   (Jsonb({"abstain_below": 2}),))
    db.rollback()


def test_calibrated_alignment_shows_raw_and_calibrated_kappa(db: psycopg.Connection, llmfao: tuple[str, str]) -> None:
    judge = f"{llmfao[1]}_gpt4"
    db.execute("DELETE FROM flywheel.calibrations WHERE validator = %s", (judge,))
    made = db.execute("SELECT version, kappa, raw_kappa FROM flywheel.calibrate(%s)", (judge,)).fetchone()
    row = db.execute("SELECT calibration_version, calibrated_kappa, raw_kappa FROM flywheel.calibrated_alignment"
                     " WHERE validator = %s", (judge,)).fetchone()
    assert row == made
    db.rollback()
