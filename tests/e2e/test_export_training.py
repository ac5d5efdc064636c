"""`dbflywheel export-training`: files the trainers' own loaders read, identical on re-export, no leaks."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from test_cli import assert_one_line_error, run

datasets = pytest.importorskip("datasets")


def _trace(db: psycopg.Connection, app: str, input: str, output: str) -> int:
    row = db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, %s, %s) RETURNING id",
                     (app, input, output)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def sets(db: psycopg.Connection, app_name: str) -> dict[str, object]:
    """An sft set (5 corrections, one of them golden) and a preference set (3 pairs, one on a golden input)."""
    for i in range(5):
        t = _trace(db, app_name, f"question {i}", f"draft {i}")
        db.execute("SELECT flywheel.record_feedback(%s, 'correction', NULL, %s)", (t, f"answer {i}"))
        if i == 0:
            db.execute("SELECT flywheel.promote_to_golden(%s, %s, NULL, 'answer 0')", (t, f"g-{app_name}"))
    pairs = []
    for i in range(3):
        a, b = _trace(db, app_name, f"question {i}", f"good {i}"), _trace(db, app_name, f"question {i}", f"bad {i}")
        db.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, app, winner, annotator) VALUES"
                   " (%s, %s, %s, 'b', 'x'), (%s, %s, %s, 'a', 'y'), (%s, %s, %s, 'a', 'z')",
                   (b, a, app_name, a, b, app_name, a, b, app_name))
        pairs.append((a, b))
    golden_ids = {r[0] for r in db.execute("SELECT trace_id FROM flywheel.golden_set_items WHERE set_name = %s",
                                           (f"g-{app_name}",))}
    filter = json.dumps({"apps": [app_name]})
    sft = db.execute("SELECT * FROM flywheel.create_training_set(%s, 'sft', %s::jsonb)",
                     (f"sft-{app_name}", filter)).fetchone()
    pref = db.execute("SELECT * FROM flywheel.create_training_set(%s, 'preference', %s::jsonb)",
                      (f"dpo-{app_name}", filter)).fetchone()
    return {"sft": sft, "pref": pref, "golden": golden_ids, "pairs": pairs}


def _export(dsn: str, name: str, fmt: str, out: Path, *more: str) -> list[dict[str, object]]:
    proc = run("export-training", name, "--format", fmt, "-o", str(out), "--dsn", dsn, *more)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def _check_openai_chat(record: dict[str, object]) -> None:
    """OpenAI's rules for chat fine-tuning lines: messages with known roles, non-empty string content,
    an assistant message last, user and assistant alternating after an optional system message."""
    messages = record["messages"]
    assert isinstance(messages, list) and messages
    roles = [m["role"] for m in messages]
    assert set(roles) <= {"system", "user", "assistant"}
    body = roles[1:] if roles[0] == "system" else roles
    assert body[-1] == "assistant"
    assert all(r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(body))
    assert all(isinstance(m["content"], str) and m["content"].strip() for m in messages)


def test_exports_load_in_datasets_with_the_expected_columns(dsn: str, sets: dict, app_name: str, tmp_path: Path) -> None:
    assert sets["sft"][1] == 4 and sets["sft"][2] == {"golden": 1}
    assert sets["pref"][1] == 2 and sets["pref"][2] == {"golden_input": 1}
    cases = [(f"sft-{app_name}", "openai", ["messages"], 4), (f"sft-{app_name}", "jsonl", ["input", "output"], 4),
             (f"sft-{app_name}", "trl", ["prompt", "completion"], 4),
             (f"dpo-{app_name}", "trl", ["prompt", "chosen", "rejected"], 2),
             (f"dpo-{app_name}", "openai", ["input", "preferred_output", "non_preferred_output"], 2)]
    for name, fmt, columns, n in cases:
        out = tmp_path / f"{name}.{fmt}.jsonl"
        records = _export(dsn, name, fmt, out)
        loaded = datasets.load_dataset("json", data_files=str(out), split="train")
        assert loaded.column_names == columns and loaded.num_rows == n, (name, fmt)
        if name.startswith("sft") and fmt == "openai":
            for r in records:
                _check_openai_chat(r)
    trl = [json.loads(line) for line in (tmp_path / f"dpo-{app_name}.trl.jsonl").read_text().splitlines()]
    assert all(r["chosen"].startswith("good") and r["rejected"].startswith("bad") for r in trl)
    assert {r["prompt"] for r in trl} == {"question 1", "question 2"}  # question 0 is a golden input


def test_no_golden_trace_or_input_leaks_and_a_reexport_is_identical(db: psycopg.Connection, dsn: str, sets: dict,
                                                                    app_name: str, tmp_path: Path) -> None:
    rows = db.execute("SELECT trace_id, trace_b, input FROM flywheel.training_set_rows(%s)"
                      " UNION ALL SELECT trace_id, trace_b, input FROM flywheel.training_set_rows(%s)",
                      (f"sft-{app_name}", f"dpo-{app_name}")).fetchall()
    golden_inputs = {r[0] for r in db.execute(
        "SELECT t.input FROM flywheel.golden_set_items i JOIN flywheel.traces t ON t.id = i.trace_id")}
    assert rows and not {r[0] for r in rows} & sets["golden"] and not {r[2] for r in rows} & golden_inputs
    first = tmp_path / "a.jsonl"
    again = tmp_path / "b.jsonl"
    _export(dsn, f"sft-{app_name}", "openai", first)
    db.execute("SELECT flywheel.record_feedback(t.id, 'correction', NULL, 'changed later') FROM flywheel.traces t"
               " WHERE t.app = %s AND t.input = 'question 3'", (app_name,))
    _export(dsn, f"sft-{app_name}", "openai", again, "--version", "1")
    assert first.read_bytes() == again.read_bytes()


def test_bad_requests_say_why_in_one_line(dsn: str, sets: dict, app_name: str, tmp_path: Path) -> None:
    assert_one_line_error(run("export-training", "no-such-set", "-o", str(tmp_path / "x"), "--dsn", dsn),
                          "no training set named 'no-such-set'")
    assert_one_line_error(run("export-training", f"sft-{app_name}", "--version", "9", "-o", str(tmp_path / "x"),
                              "--dsn", dsn), "has no version 9")
    assert_one_line_error(run("export-training", f"dpo-{app_name}", "--format", "jsonl", "-o", str(tmp_path / "x"),
                              "--dsn", dsn), "format jsonl holds sft sets")
    assert not (tmp_path / "x").exists()
    assert not list(tmp_path.iterdir())  # no half-written temporary file either
