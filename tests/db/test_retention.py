"""Retention (old partitions dropped with everything keyed by their traces) and forget_user
(a user's traces and every row naming them, in every flywheel table, audited by counts)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from metrics_helpers import add_result, add_trace, make_validator

pytestmark = pytest.mark.usefixtures("only_the_test_validators")


def test_retention_drops_old_partitions_and_old_default_rows_with_their_dependents(db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_validator(db)
    db.execute("SELECT flywheel.ensure_trace_partitions('2019-01-01', '2019-02-01')")
    old = [add_trace(db, app_name, created_at=at) for at in ("2019-01-10", "2019-02-10", "2019-05-10")]  # May: default partition
    kept = [add_trace(db, app_name, created_at=at) for at in ("2019-06-20", "2019-07-01")]
    for tid in old + kept:
        add_result(db, tid, vid, "pass")
        db.execute("INSERT INTO flywheel.feedback (trace_id, kind, value) VALUES (%s, 'thumbs', 1)", (tid,))
    db.execute("INSERT INTO flywheel.judge_jobs (trace_id, validator_id, validator_version) VALUES (%s, %s, 1)", (old[0], vid))
    try:
        db.execute("SELECT flywheel.set_retention(now() - '2019-06-01'::timestamptz)")
        counts = db.execute("SELECT flywheel.apply_retention()").fetchone()[0]  # type: ignore[index]
    finally:
        db.execute("SELECT flywheel.set_retention(NULL)")
    assert counts["traces"] == 3
    assert sorted(counts["dropped_partitions"]) == ["_traces_2019_01", "_traces_2019_02"]
    assert counts["validation_results.trace_id"] == 3 and counts["feedback.trace_id"] == 3
    assert counts["judge_jobs.trace_id"] == 1
    assert db.execute("SELECT to_regclass('flywheel._traces_2019_01')").fetchone() == (None,)
    left = db.execute("SELECT id FROM flywheel.traces WHERE app = %s ORDER BY id", (app_name,)).fetchall()
    assert [r[0] for r in left] == kept
    assert db.execute("SELECT count(*) FROM flywheel.validation_results WHERE trace_id = ANY(%s)", (old,)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM flywheel.feedback WHERE trace_id = ANY(%s)", (kept,)).fetchone() == (2,)
    audit = db.execute("SELECT reason, counts->'traces', cutoff IS NOT NULL FROM flywheel.deletion_audit ORDER BY id DESC LIMIT 1").fetchone()
    assert audit == ("retention", 3, True)
    # Keeping everything is the default, and nothing happens then.
    assert db.execute("SELECT flywheel.apply_retention()").fetchone() == ({"retention": "keep forever"},)


def test_retention_is_scheduled(db: psycopg.Connection) -> None:
    row = db.execute("SELECT schedule, command FROM cron.job WHERE jobname = 'flywheel_retention'").fetchone()
    assert row == ("17 3 * * *", "SELECT flywheel.apply_retention()")


def test_forget_user_deletes_everything_keyed_by_their_traces_in_every_table(db: psycopg.Connection, app_name: str) -> None:
    user, other = f"user-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}"
    vid, vname = make_validator(db)
    mine = [add_trace(db, app_name, user_id=user, created_at="2023-03-03 10:00+00") for _ in range(3)]
    theirs = add_trace(db, app_name, user_id=other, created_at="2023-03-03 10:00+00")
    for tid in [*mine, theirs]:
        add_result(db, tid, vid, "pass")
        db.execute("INSERT INTO flywheel.labels (trace_id, validator, verdict) VALUES (%s, %s, 'pass')", (tid, vname))
    db.execute("INSERT INTO flywheel.feedback (trace_id, kind, value) VALUES (%s, 'thumbs', 1)", (mine[0],))
    # feedback the user gave on someone else's trace carries their user_id
    db.execute("INSERT INTO flywheel.feedback (trace_id, kind, value, user_id) VALUES (%s, 'thumbs', -1, %s)", (theirs, user))
    db.execute("INSERT INTO flywheel.judge_jobs (trace_id, validator_id, validator_version, pair_trace_id)"
               " VALUES (%s, %s, 1, %s), (%s, %s, 1, NULL)", (theirs, vid, mine[1], theirs, vid))
    # Tables other parts of the flywheel add later are found through the catalog.
    prefs, emb = f"t_prefs_{uuid.uuid4().hex[:6]}", f"t_emb_{uuid.uuid4().hex[:6]}"
    db.execute(f"CREATE TABLE flywheel.{prefs} (trace_a bigint, trace_b bigint, winner text)")
    db.execute(f"CREATE TABLE flywheel.{emb} (trace_id bigint PRIMARY KEY, embedding vector(2))")
    for table in (prefs, emb):  # as the install does for every table of the schema
        db.execute(f"ALTER TABLE flywheel.{table} OWNER TO flywheel_owner")
    try:
        db.execute(f"INSERT INTO flywheel.{prefs} VALUES (%s, %s, 'a'), (%s, %s, 'b')", (theirs, mine[2], theirs, theirs))
        db.execute(f"INSERT INTO flywheel.{emb} VALUES (%s, '[1,2]'), (%s, '[3,4]')", (mine[0], theirs))
        db.execute("CALL flywheel.refresh('pass_rate')")
        counts = db.execute("SELECT flywheel.forget_user(%s)", (user,)).fetchone()[0]  # type: ignore[index]
        assert counts == {
            "traces": 3, "validation_results.trace_id": 3, "labels.trace_id": 3, "feedback.trace_id": 1,
            "feedback.user_id": 1, "judge_jobs.pair_trace_id": 1, f"{prefs}.trace_b": 1, f"{emb}.trace_id": 1,
        }
        assert db.execute("SELECT count(*) FROM flywheel.traces WHERE user_id = %s", (user,)).fetchone() == (0,)
        assert db.execute(f"SELECT count(*) FROM flywheel.{prefs}").fetchone() == (1,)
        assert db.execute(f"SELECT trace_id FROM flywheel.{emb}").fetchall() == [(theirs,)]
        assert db.execute("SELECT count(*) FROM flywheel.feedback WHERE trace_id = %s", (theirs,)).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM flywheel.labels WHERE trace_id = %s", (theirs,)).fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM flywheel.judge_jobs WHERE trace_id = %s", (theirs,)).fetchone() == (1,)
    finally:
        db.execute(f"DROP TABLE flywheel.{prefs}, flywheel.{emb}")
    audit = db.execute("SELECT reason, subject_hash, counts->'traces' FROM flywheel.deletion_audit ORDER BY id DESC LIMIT 1").fetchone()
    import hashlib

    assert audit == ("forget_user", hashlib.sha256(user.encode()).hexdigest(), 3)
    assert user not in str(db.execute("SELECT * FROM flywheel.deletion_audit").fetchall())
    # The rollup forgets them at its next refresh.
    db.execute("CALL flywheel.refresh('pass_rate')")
    assert db.execute("SELECT results FROM flywheel.metric_pass_rate WHERE app = %s", (app_name,)).fetchall() == [(1,)]


def test_forget_user_needs_a_user(db: psycopg.Connection) -> None:
    import pytest

    with pytest.raises(psycopg.errors.RaiseException, match="user_id must be given"):
        db.execute("SELECT flywheel.forget_user('')")
