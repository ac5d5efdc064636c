"""The queue functions the worker's safety rests on: a refused job is dead-lettered at once,
and a heartbeat extends only the leases of the jobs its worker still processes."""

from __future__ import annotations

import psycopg
from judges_support import add_traces, enqueue, make_judge, only_these_validators
from psycopg.rows import dict_row


def _claim(db: psycopg.Connection, worker: str, lease: str) -> list[dict]:
    cur = db.cursor(row_factory=dict_row)
    return cur.execute("SELECT * FROM flywheel._claim_judge_jobs(%s, 10, %s::interval)", (worker, lease)).fetchall()


def test_a_final_failure_is_dead_lettered_at_the_first_attempt(db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_judge(db, app=app_name, max_attempts=5)
    traces = add_traces(db, app_name, [{"input": "q", "output": "a"}])
    enqueue(db, vid, traces)
    only_these_validators(db, [vid])
    [job] = _claim(db, "w1", "60 seconds")
    long_error = "attempt 1: base_url 'http://evil' is not allowed by this worker " + "x" * 5000
    assert db.execute("SELECT flywheel._fail_judge_job(%s, 'w1', %s, %s, NULL, true)",
                      (job["job_id"], vid, long_error)).fetchone() == ("dead",)
    attempts, error = db.execute("SELECT attempts, error FROM flywheel.judge_dead_letters WHERE validator_id = %s",
                                 (vid,)).fetchone() or (None, "")
    assert attempts == 1 and error.startswith("attempt 1: base_url") and len(error) == 2000
    assert db.execute("SELECT count(*) FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,)).fetchone() == (0,)


def test_a_heartbeat_extends_only_the_jobs_in_hand(db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_judge(db, app=app_name)
    traces = add_traces(db, app_name, [{"input": f"q{i}", "output": "a"} for i in range(2)])
    enqueue(db, vid, traces)
    only_these_validators(db, [vid])
    held, dropped = _claim(db, "w1", "0 seconds")  # leases that expire at once
    db.execute("SELECT flywheel._judge_heartbeat('w1', 'host', 1, 4, 1, 0, 0, '60 seconds', %s)", ([held["job_id"]],))
    rows = db.execute("SELECT id, status, leased_by FROM flywheel.judge_jobs WHERE validator_id = %s ORDER BY id",
                      (vid,)).fetchall()
    # The job whose processing ended without an outcome is released (and retried), not held forever.
    assert rows == sorted([(held["job_id"], "leased", "w1"), (dropped["job_id"], "pending", None)])
    # Older workers send no list: all their leases are extended, as before.
    db.execute("SELECT flywheel._judge_heartbeat('w1', 'host', 1, 4, 1, 0, 0, '60 seconds')")
    db.execute("DELETE FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,))
