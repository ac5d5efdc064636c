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

# The contract of flywheel.validate_traces (built by the validators work): run validators now and
# return one row per (trace, validator). Until that is installed, this stand-in returns the
# latest stored result, so the gate's own logic is tested against a real database either way.
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
def golden_set(db: psycopg.Connection, app_name: str) -> Iterator[tuple[str, list[int]]]:
    """A set of 10 traces expected to pass validator ev_len, whose stored results pass 9."""
    if has_validate_traces(db):
        pytest.skip("the real flywheel.validate_traces is installed: the stand-in's stored results do not apply")
    db.execute(STAND_IN)
    name = f"release-{uuid.uuid4().hex[:8]}"
    validator_id = db.execute(
        "INSERT INTO flywheel.validators (name, kind) VALUES ('ev_len', 'length')"
        " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind RETURNING id").fetchone()[0]  # type: ignore[index]
    ids = [r[0] for r in db.execute(
        "INSERT INTO flywheel.traces (app, input, output) SELECT %s, 'q' || g, 'a' || g FROM generate_series(1, 10) g"
        " RETURNING id", (app_name,)).fetchall()]
    for i, trace_id in enumerate(ids):
        db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status)"
                   " VALUES (%s, %s, 1, %s)", (trace_id, validator_id, "fail" if i == 0 else "pass"))
        db.execute("SELECT flywheel.promote_to_golden(%s, %s, '{\"ev_len\": \"pass\"}')", (trace_id, name))
    try:
        yield name, ids
    finally:
        db.execute("DROP FUNCTION flywheel.validate_traces(bigint[], text[])")


def test_eval_passes_above_the_threshold_and_fails_below(dsn: str, golden_set: tuple[str, list[int]]) -> None:
    name, ids = golden_set
    ok = run("eval", "--dsn", dsn, "--golden", name, "--min-pass-rate", "0.85")
    assert ok.returncode == 0, ok.stderr
    assert f"golden set {name} v10: 10 trace(s)" in ok.stdout
    row = next(line for line in ok.stdout.splitlines() if line.startswith("ev_len"))
    assert row.split() == ["ev_len", "10", "9", "0", "0", "0.900", "ok"]
    strict = run("eval", "--dsn", dsn, "--golden", name, "--min-pass-rate", "0.95")
    assert strict.returncode == 1
    assert "FAIL" in strict.stdout and f"failing traces: {ids[0]}" in strict.stdout
    # An older version of the set (only the first, failing, trace) fails even a lax gate.
    old = run("eval", "--dsn", dsn, "--golden", name, "--version", "1", "--min-pass-rate", "0.5")
    assert old.returncode == 1 and "v1: 1 trace(s)" in old.stdout


def test_eval_expects_pass_from_every_validator_when_no_verdict_was_given(
    db: psycopg.Connection, dsn: str, golden_set: tuple[str, list[int]]
) -> None:
    name, ids = golden_set
    db.execute("SELECT flywheel.promote_to_golden(%s, %s, '{}', 'the right answer')", (ids[0], name))
    out = run("eval", "--dsn", dsn, "--golden", name, "--min-pass-rate", "0.85")
    row = next(line for line in out.stdout.splitlines() if line.startswith("ev_len"))
    assert row.split()[:3] == ["ev_len", "10", "9"]  # the failing result still fails: expected pass


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


def test_eval_runs_the_real_validators(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    """With the validators work installed: a length validator over a golden set, for real."""
    if not has_validate_traces(db) or not db.execute(
        "SELECT to_regproc('flywheel.create_validator') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
        pytest.skip("flywheel.validate_traces / create_validator are not installed here")
    validator = f"ev_{uuid.uuid4().hex[:8]}"
    db.execute("SELECT flywheel.create_validator(%s, 'length', '{\"max_chars\": 5}', applies_to => %s)",
               (validator, psycopg.types.json.Jsonb({"app": app_name})))
    outputs = ["ok"] * 9 + ["far too long an answer"]
    ids = [r[0] for r in db.execute(
        "INSERT INTO flywheel.traces (app, input, output) SELECT %s, 'q', o FROM unnest(%s::text[]) o RETURNING id",
        (app_name, outputs)).fetchall()]
    name = f"release-{uuid.uuid4().hex[:8]}"
    for trace_id in ids:
        db.execute("SELECT flywheel.promote_to_golden(%s, %s, %s)",
                   (trace_id, name, psycopg.types.json.Jsonb({validator: "pass"})))
    ok = run("eval", "--dsn", dsn, "--golden", name, "--min-pass-rate", "0.85")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    row = next(line for line in ok.stdout.splitlines() if line.startswith(validator))
    assert row.split()[:3] == [validator, "10", "9"]
    strict = run("eval", "--dsn", dsn, "--golden", name, "--min-pass-rate", "0.95")
    assert strict.returncode == 1 and f"failing traces: {ids[-1]}" in strict.stdout
