"""`dbflywheel eval`: the release gate over a golden set, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

CLI = [str(Path(sys.executable).parent / "dbflywheel")]

# The contract of flywheel.validate_traces (the validators work): run validators now, one row per
# (trace, validator). Where it is not installed, this stand-in returns the latest stored result,
# so the gate's own logic is tested against a real database either way.
STAND_IN = """
CREATE FUNCTION flywheel.validate_traces(trace_ids bigint[], validators text[] DEFAULT NULL)
RETURNS TABLE (trace_id bigint, validator text, validator_version integer, status text,
               score double precision, label text, details jsonb)
LANGUAGE sql AS $$
    SELECT DISTINCT ON (r.trace_id, v.name) r.trace_id, v.name, r.validator_version, r.status, r.score, r.label, r.details
    FROM flywheel.validation_results r JOIN flywheel.validators v ON v.id = r.validator_id
    WHERE r.trace_id = ANY (trace_ids) AND (validators IS NULL OR v.name = ANY (validators))
    ORDER BY r.trace_id, v.name, r.validator_version DESC, r.id DESC
$$
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def has_validate_traces(db: psycopg.Connection) -> bool:
    row = db.execute("SELECT to_regprocedure('flywheel.validate_traces(bigint[], text[])') IS NOT NULL").fetchone()
    return bool(row and row[0])


@pytest.fixture
def golden_set(db: psycopg.Connection, app_name: str) -> Iterator[tuple[str, str, list[int]]]:
    """A set of 10 traces expected to pass one validator, which passes 9 of them (not the first):
    a real `length` validator where the validators work is installed, else stored results
    behind the stand-in."""
    real = has_validate_traces(db)
    validator = f"ev_{uuid.uuid4().hex[:8]}"
    if real:
        db.execute("SELECT flywheel.create_validator(%s, 'length', '{\"max_chars\": 5}', applies_to => %s)",
                   (validator, psycopg.types.json.Jsonb({"app": app_name})))
    else:
        db.execute(STAND_IN)
        db.execute("INSERT INTO flywheel.validators (name, kind, enabled) VALUES (%s, 'length', false)", (validator,))
    outputs = ["far too long an answer"] + ["ok"] * 9
    ids = [r[0] for r in db.execute(
        "INSERT INTO flywheel.traces (app, input, output) SELECT %s, 'q', o FROM unnest(%s::text[]) o RETURNING id",
        (app_name, outputs)).fetchall()]
    name = f"release-{uuid.uuid4().hex[:8]}"
    for i, trace_id in enumerate(ids):
        if not real:
            db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status)"
                       " SELECT %s, id, 1, %s FROM flywheel.validators WHERE name = %s",
                       (trace_id, "fail" if i == 0 else "pass", validator))
        db.execute("SELECT flywheel.promote_to_golden(%s, %s, %s)",
                   (trace_id, name, psycopg.types.json.Jsonb({validator: "pass"})))
    try:
        yield name, validator, ids
    finally:
        if real:
            db.execute("UPDATE flywheel.validators SET enabled = false WHERE name = %s", (validator,))
        else:
            db.execute("DROP FUNCTION flywheel.validate_traces(bigint[], text[])")


def test_eval_passes_above_the_threshold_and_fails_below(dsn: str, golden_set: tuple[str, str, list[int]]) -> None:
    name, validator, ids = golden_set
    ok = run("eval", "--dsn", dsn, "--golden", name, "--min-pass-rate", "0.85")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"golden set {name} v10: 10 trace(s)" in ok.stdout
    row = next(line for line in ok.stdout.splitlines() if line.startswith(validator))
    assert row.split() == [validator, "10", "9", "0", "0", "0.900", "ok"]
    strict = run("eval", "--dsn", dsn, "--golden", name, "--min-pass-rate", "0.95")
    assert strict.returncode == 1
    assert "FAIL" in strict.stdout and f"failing traces: {ids[0]}" in strict.stdout
    # An older version of the set (only the first, failing, trace) fails even a lax gate.
    old = run("eval", "--dsn", dsn, "--golden", name, "--version", "1", "--min-pass-rate", "0.5")
    assert old.returncode == 1 and "v1: 1 trace(s)" in old.stdout


def test_eval_expects_pass_from_every_validator_when_no_verdict_was_given(
    db: psycopg.Connection, dsn: str, golden_set: tuple[str, str, list[int]]
) -> None:
    name, validator, ids = golden_set
    db.execute("SELECT flywheel.promote_to_golden(%s, %s, '{}', 'the right answer')", (ids[0], name))
    out = run("eval", "--dsn", dsn, "--golden", name, "--min-pass-rate", "0.85")
    row = next(line for line in out.stdout.splitlines() if line.startswith(validator))
    assert row.split()[:3] == [validator, "10", "9"]  # the failing result still fails: expected pass


def test_eval_errors_are_one_line(db: psycopg.Connection, dsn: str) -> None:
    missing = run("eval", "--dsn", dsn, "--golden", "no-such-set")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1
    if has_validate_traces(db):
        assert "no golden set named 'no-such-set'" in lines[0]
    else:
        assert "no flywheel.validate_traces()" in lines[0]
    bad = run("eval", "--dsn", dsn, "--golden", "x", "--min-pass-rate", "85")
    assert bad.returncode == 1 and "between 0 and 1" in bad.stderr


def test_embed_command_fills_in_failed_embeddings(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    db.execute("ALTER TABLE flywheel.embeddings ADD CONSTRAINT test_cli_broken CHECK (trace_id < 0) NOT VALID")
    try:
        (trace_id,) = db.execute("INSERT INTO flywheel.traces (app, input) VALUES (%s, 'embed me later') RETURNING id",
                                 (app_name,)).fetchone()  # type: ignore[misc]
    finally:
        db.execute("ALTER TABLE flywheel.embeddings DROP CONSTRAINT test_cli_broken")
    out = run("embed", "--dsn", dsn, "--until-done")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("embedded ") and int(out.stdout.split()[1]) >= 1
    assert db.execute("SELECT count(*) FROM flywheel.embeddings WHERE trace_id = %s", (trace_id,)).fetchone() == (1,)
