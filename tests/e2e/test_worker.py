"""`dbflywheel worker` for real: a local OpenAI-protocol server that fails on purpose, a worker
killed with -9 in the middle of a batch, PostgreSQL restarted under running workers, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import psycopg
import pytest
from fake_openai import FakeOpenAI
from judges_support import DBFLYWHEEL, add_traces, enqueue, make_judge, only_these_validators, results, start_worker

FAST = ["--poll-seconds", "0.1"]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def count(dsn: str, query: str, *params: object) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
        return int(row[0]) if row else 0


def openai_judge(db: psycopg.Connection, app: str, server: FakeOpenAI, **config: object) -> tuple[int, str]:
    return make_judge(db, app=app, provider="openai", model="fake-judge", base_url=server.url, **config)


def test_every_injected_failure_ends_as_one_verdict_or_one_dead_letter(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    outputs = ["fine", "WRONG", "a FAIL:500*2", "a FAIL:429*1", "a FAIL:timeout*1", "a FAIL:malformed*2",
               "a FAIL:notverdict*1", "a FAIL:500*99"]
    with FakeOpenAI(slow_seconds=1.5) as server:
        vid, name = openai_judge(db, app_name, server, max_attempts=3, retry_base_seconds=0.05, timeout_seconds=0.5,
                                 api_key_env="FAKE_JUDGE_KEY")
        traces = add_traces(db, app_name, [{"input": f"q{i}", "output": o} for i, o in enumerate(outputs)])
        enqueue(db, vid, traces)
        only_these_validators(db, [vid])
        done = subprocess.run([DBFLYWHEEL, "worker", "--dsn", dsn, "--once", "--concurrency", "4", *FAST,
                               "--allow-base-url", server.url, "--allow-key-env", "FAKE_JUDGE_KEY"],
                              capture_output=True, text=True, timeout=60, env={"FAKE_JUDGE_KEY": "sk-fake", "PATH": "",
                                   **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "dbflywheel worker: 7 verdict(s) written, 10 failed call(s) (1 dead-lettered)"
        assert dict(server.failures) == {"500": 5, "429": 1, "timeout": 1, "malformed": 2, "notverdict": 1}
        assert {r["_authorization"] for r in server.requests} == {"Bearer sk-fake"}
    written = results(db, vid)
    assert written == {t: ["fail" if o == "WRONG" else "pass"] for t, o in zip(traces, outputs, strict=True) if "*99" not in o}
    dead = db.execute("SELECT trace_id, attempts, error FROM flywheel.judge_dead_letters WHERE validator_id = %s",
                      (vid,)).fetchall()
    assert len(dead) == 1 and dead[0][:2] == (traces[-1], 3)
    assert dead[0][2].startswith("attempt 3: HTTP 500 from http://127.0.0.1:") and "injected server error" in dead[0][2]
    assert db.execute("SELECT count(*) FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok), sum(tokens_in)"
                      " FROM flywheel.judge_calls WHERE validator_id = %s", (vid,)).fetchone() == (7, 10, 700)
    status = db.execute("SELECT pending, leased, done, dead FROM flywheel.queue_status WHERE validator = %s", (name,)).fetchone()
    assert status == (0, 0, 7, 1)
    details = db.execute("SELECT details FROM flywheel.validation_results WHERE trace_id = %s AND validator_id = %s",
                         (traces[1], vid)).fetchone()
    assert details is not None and details[0] == {"reason": "fake: fail", "provider": "openai", "model": "fake-judge"}


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    with FakeOpenAI(delay=0.4) as server:
        vid, _ = openai_judge(db, app_name, server)
        traces = add_traces(db, app_name, [{"input": f"q{i}", "output": f"a{i}"} for i in range(40)])
        enqueue(db, vid, traces)
        only_these_validators(db, [vid])
        victim = start_worker(dsn, "--concurrency", "8", "--lease-seconds", "1.5", *FAST, "--allow-base-url", server.url)
        try:
            wait_for(lambda: count(dsn, "SELECT count(*) FROM flywheel.validation_results WHERE validator_id = %s", vid) >= 8
                     and count(dsn, "SELECT count(*) FROM flywheel.judge_jobs WHERE status = 'leased' AND validator_id = %s", vid) > 0,
                     30, "the first verdicts while jobs are in hand")
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        orphans = count(dsn, "SELECT count(*) FROM flywheel.judge_jobs WHERE status = 'leased' AND validator_id = %s", vid)
        assert orphans > 0  # jobs the dead worker held
        survivor = subprocess.run([DBFLYWHEEL, "worker", "--dsn", dsn, "--once", "--concurrency", "16", *FAST,
                                   "--allow-base-url", server.url],
                                  capture_output=True, text=True, timeout=60)
        assert survivor.returncode == 0, survivor.stderr
    assert results(db, vid) == {t: ["pass"] for t in traces}  # every job exactly one result
    assert db.execute("SELECT count(*) FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM flywheel.judge_dead_letters WHERE validator_id = %s", (vid,)).fetchone() == (0,)


def test_workers_carry_on_through_a_postgresql_restart(db: psycopg.Connection, dsn: str, app_name: str, cluster: object) -> None:
    if cluster is None:
        pytest.skip("restarts only the throw-away cluster, not a server given by DBFLYWHEEL_TEST_DSN")
    with FakeOpenAI(delay=0.1) as server:
        vid, _ = openai_judge(db, app_name, server)
        traces = add_traces(db, app_name, [{"input": f"q{i}", "output": f"a{i}"} for i in range(80)])
        enqueue(db, vid, traces)
        only_these_validators(db, [vid])
        db.close()
        workers = [start_worker(dsn, "--concurrency", "4", "--lease-seconds", "3", *FAST, "--allow-base-url", server.url)
                   for _ in range(2)]
        try:
            wait_for(lambda: count(dsn, "SELECT count(*) FROM flywheel.validation_results WHERE validator_id = %s", vid) >= 10,
                     30, "the first verdicts")
            cluster.restart()  # type: ignore[attr-defined]
            wait_for(lambda: count(dsn, "SELECT count(*) FROM flywheel.validation_results WHERE validator_id = %s", vid) == 80,
                     60, "every verdict after the restart")
            assert count(dsn, "SELECT count(*) FROM flywheel.judge_workers WHERE pid = ANY (%s)", [w.pid for w in workers]) == 2
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            outcomes = [w.communicate(timeout=20) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outcomes
        assert any("database unavailable" in err for _, err in outcomes)  # they did see the restart
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert results(conn, vid) == {t: ["pass"] for t in traces}
        assert conn.execute("SELECT count(*) FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,)).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM flywheel.judge_workers WHERE pid = ANY (%s)",
                            ([w.pid for w in workers],)).fetchone() == (0,)  # a clean exit removes the heartbeat


def test_sigterm_finishes_the_jobs_in_hand_and_claims_no_more(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    with FakeOpenAI(delay=1.0) as server:
        vid, _ = openai_judge(db, app_name, server)
        traces = add_traces(db, app_name, [{"input": f"q{i}", "output": f"a{i}"} for i in range(10)])
        enqueue(db, vid, traces)
        only_these_validators(db, [vid])
        worker = start_worker(dsn, "--concurrency", "3", *FAST, "--allow-base-url", server.url)
        wait_for(lambda: count(dsn, "SELECT count(*) FROM flywheel.judge_jobs WHERE status = 'leased' AND validator_id = %s", vid) == 3,
                 20, "three jobs in hand")
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    assert out.strip() == "dbflywheel worker: 3 verdict(s) written, 0 failed call(s) (0 dead-lettered)"
    assert len(results(db, vid)) == 3
    assert db.execute("SELECT status, count(*) FROM flywheel.judge_jobs WHERE validator_id = %s GROUP BY 1",
                      (vid,)).fetchall() == [("pending", 7)]
    db.execute("DELETE FROM flywheel.judge_jobs WHERE validator_id = %s", (vid,))


def test_a_notify_wakes_an_idle_worker_at_once(db: psycopg.Connection, dsn: str, app_name: str) -> None:
    vid, _ = make_judge(db, app=app_name)  # the offline judge
    only_these_validators(db, [vid])
    worker = start_worker(dsn, "--poll-seconds", "60")
    try:
        time.sleep(1.0)  # idle, listening
        [trace] = add_traces(db, app_name, [{"input": "2+2?", "output": "4"}])
        enqueue(db, vid, [trace])
        db.execute("NOTIFY flywheel_judge_jobs")
        wait_for(lambda: results(db, vid) == {trace: ["pass"]}, 5, "the verdict, long before the next poll")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=20)
    assert worker.returncode == 0


def test_the_worker_command_fails_in_one_line_without_a_server() -> None:
    done = subprocess.run([DBFLYWHEEL, "worker", "--dsn", "postgresql://nobody@127.0.0.1:1/none", "--once"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("dbflywheel: cannot connect")
