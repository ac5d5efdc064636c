"""The reliability suite's load: writer threads, real `dbflywheel worker` processes and metric
refreshes all at once for a set time, optionally with faults (a worker killed with -9, a
PostgreSQL restart, a provider that fails, hangs or answers nonsense, a validator that raises
or loops). Writers count what committed, not what they attempted: every trace carries a uid
and every feedback row a token made by the writer, so a transaction whose COMMIT was cut off
is looked up after reconnecting, and retried only when it is not there.

`run_load` returns the counts; `check_load` asserts that they add up in the database.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from judges_support import DBFLYWHEEL, only_these_validators
from psycopg.types.json import Jsonb
from validators_runtime import sampled

COUNTS_FILE = Path(__file__).resolve().parent / "reliability_counts.json"

# Outputs the writers pick from. Markers drive the faults: RAISE and LOOP trip the python
# validator, WRONG makes the judge say fail, FAIL:<kind>*<n> makes the fake provider misbehave
# (n = 99: it never recovers, so that job must end dead-lettered).
CLEAN_OUTPUTS = ["The answer is 4.", "Paris is the capital of France.", "WRONG: 2 + 2 = 5", "{\"ok\": true}",
                 "I cannot help with that.", ""]
FAULT_OUTPUTS = CLEAN_OUTPUTS + ["RAISE please", "LOOP forever", "a FAIL:500*1", "a FAIL:malformed*1",
                                 "a FAIL:notverdict*1", "a FAIL:timeout*1", "a FAIL:429*1", "dead FAIL:500*99"]
PYTHON_BODY = ("out = trace.get('output') or ''\n"
               "if 'RAISE' in out:\n    raise ValueError('raised on purpose')\n"
               "if 'LOOP' in out:\n    while True:\n        pass\n"
               "return len(out) < 1000")
SYNC_VALIDATORS = [
    ("length", {"max_chars": 200}),
    ("regex", {"pattern": "WRONG", "must_match": False}),
    ("sql", {"expression": "coalesce(length(output), 0) < 100"}),
    ("python", {"body": PYTHON_BODY, "time_limit_ms": 100}),
]
PAUSE = 0.02
WORKER_ARGS = ["--poll-seconds", "0.1", "--concurrency", "8", "--lease-seconds", "3"]


@dataclass
class Writer:
    """One thread of inserts and feedback over its own connection, reconnecting as needed."""

    dsn: str
    app: str
    seed: int
    outputs: list[str]
    traces: dict[str, int] = field(default_factory=dict)  # uid -> trace id, committed
    feedback: set[str] = field(default_factory=set)  # tokens, committed
    statements: int = 0
    reconnects: int = 0
    in_doubt: int = 0  # a transaction cut off at COMMIT, found committed afterwards
    retried: int = 0
    errors: list[str] = field(default_factory=list)
    _conn: psycopg.Connection | None = None

    def run(self, deadline: float, stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        try:
            while time.monotonic() < deadline and not stop.is_set():
                op = rng.random()
                if op < 0.4 or not self.traces:
                    self._insert(rng, 1)
                elif op < 0.7:
                    self._insert(rng, rng.randint(2, 10))
                else:
                    self._feedback(rng)
                time.sleep(PAUSE)  # an application's pace, so that the judges can keep up
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            if self._conn is not None:
                self._conn.close()

    def _connect(self) -> psycopg.Connection:
        while self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
            except psycopg.OperationalError:
                time.sleep(0.2)  # the server is restarting
        return self._conn

    def _transact(self, write: Any, committed: Any) -> None:
        """Runs write(conn) in a transaction until it commits; after a lost connection, asks
        committed(conn) whether the cut-off transaction made it before trying again."""
        while True:
            conn = self._connect()
            try:
                with conn.transaction():
                    write(conn)
                self.statements += 1
                return
            except psycopg.OperationalError:
                self.reconnects += 1
                conn.close()
                if committed(self._connect()):
                    self.in_doubt += 1
                    return
                self.retried += 1

    def _insert(self, rng: random.Random, n: int) -> None:
        rows = [(str(uuid.uuid4()), f"question {rng.randint(0, 10**6)}", rng.choice(self.outputs)) for _ in range(n)]
        uids = [r[0] for r in rows]
        got: dict[str, int] = {}

        def write(conn: psycopg.Connection) -> None:
            got.clear()
            if n == 1:
                cur = conn.execute("INSERT INTO flywheel.traces (uid, app, input, output, model) VALUES (%s, %s, %s, %s, 'm')"
                                   " RETURNING uid::text, id", (rows[0][0], self.app, rows[0][1], rows[0][2]))
            else:
                cur = conn.execute(
                    "INSERT INTO flywheel.traces (uid, app, input, output, model)"
                    " SELECT u, %s, i, o, 'm' FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS x(u, i, o)"
                    " RETURNING uid::text, id", (self.app, uids, [r[1] for r in rows], [r[2] for r in rows]))
            got.update(dict(cur.fetchall()))

        def committed(conn: psycopg.Connection) -> bool:
            found = dict(conn.execute("SELECT uid::text, id FROM flywheel.traces WHERE uid = ANY(%s::uuid[])",
                                      (uids,)).fetchall())
            assert len(found) in (0, n), "a batch committed in part"
            got.clear()
            got.update(found)
            return bool(found)

        self._transact(write, committed)
        assert set(got) == set(uids)
        self.traces.update(got)

    def _feedback(self, rng: random.Random) -> None:
        trace_id = rng.choice(list(self.traces.values()))
        token = uuid.uuid4().hex
        kind, value = rng.choice([("thumbs", 1.0), ("thumbs", -1.0), ("rating", float(rng.randint(1, 5))),
                                  ("comment", None)])

        def write(conn: psycopg.Connection) -> None:
            if rng.random() < 0.5:
                conn.execute("INSERT INTO flywheel.feedback (trace_id, kind, value, comment) VALUES (%s, %s, %s, %s)",
                             (trace_id, kind, value, token))
            else:
                conn.execute("SELECT flywheel.record_feedback(%s::bigint, %s, %s, comment => %s)",
                             (trace_id, kind, value, token))

        def committed(conn: psycopg.Connection) -> bool:
            return conn.execute("SELECT count(*) FROM flywheel.feedback WHERE comment = %s", (token,)).fetchone() == (1,)

        self._transact(write, committed)
        self.feedback.add(token)


def _refresher(dsn: str, metrics: list[str], deadline: float, stop: threading.Event, out: dict[str, Any]) -> None:
    conn: psycopg.Connection | None = None
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
            for name in metrics:
                conn.execute("CALL flywheel.refresh(%s)", (name,))
                out["refreshes"] += 1
        except psycopg.OperationalError:
            out["refresh_reconnects"] += 1
            if conn is not None:
                conn.close()
            time.sleep(0.2)
        except psycopg.Error as e:
            out["errors"].append(f"refresh: {type(e).__name__}: {e}")
            return
        time.sleep(0.3)
    if conn is not None:
        conn.close()


def setup_validators(db: psycopg.Connection, app: str, judge: dict[str, Any]) -> dict[str, Any]:
    """This load's validators (applying to its app only); every other validator paused."""
    paused = [r[0] for r in db.execute("SELECT name FROM flywheel.validators WHERE enabled")]
    for name in paused:
        db.execute("SELECT flywheel.set_validator_enabled(%s, false)", (name,))
    tag = uuid.uuid4().hex[:8]
    sync = {}
    for kind, config in SYNC_VALIDATORS:
        name = f"rel_{kind}_{tag}"
        sync[name] = db.execute("SELECT flywheel.create_validator(%s, %s, %s, 'sync', %s)",
                                (name, kind, Jsonb(config), Jsonb({"app": app}))).fetchone()[0]  # type: ignore[index]
    judge_name = f"rel_judge_{tag}"
    judge_id = db.execute(
        "SELECT flywheel.create_validator(%s, 'llm_judge', %s, 'async', %s, 0.5)",
        (judge_name, Jsonb({"criterion": "The answer is correct.", "redact_pii": False, **judge}), Jsonb({"app": app})),
    ).fetchone()[0]  # type: ignore[index]
    only_these_validators(db, [judge_id])  # workers drain the whole queue: only this load's jobs
    return {"paused": paused, "sync": sync, "judge": judge_id, "names": [*sync, judge_name]}


def teardown_validators(db: psycopg.Connection, made: dict[str, Any]) -> None:
    for name in made["names"]:
        db.execute("SELECT flywheel.set_validator_enabled(%s, false)", (name,))
    for name in made["paused"]:
        db.execute("SELECT flywheel.set_validator_enabled(%s, true)", (name,))


def run_load(dsn: str, app: str, *, seconds: float, writers: int = 4, workers: int = 2, faults: bool = False,
             cluster: Any = None, judge: dict[str, Any] | None = None, fault_every: float = 0) -> dict[str, Any]:
    """Runs the load; returns what happened (committed uids and tokens, counts of faults)."""
    with psycopg.connect(dsn, autocommit=True) as db:
        made = setup_validators(db, app, judge or {})
        metrics = [r[0] for r in db.execute("SELECT name FROM flywheel.metrics WHERE kind <> 'view' ORDER BY name")]
        started_at = db.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    out: dict[str, Any] = {"refreshes": 0, "refresh_reconnects": 0, "errors": [], "worker_kills": 0,
                           "restarts": 0, "metrics": metrics, "started_at": started_at}
    stop = threading.Event()
    began = time.monotonic()
    deadline = began + seconds
    team = [Writer(dsn, app, seed, FAULT_OUTPUTS if faults else CLEAN_OUTPUTS) for seed in range(writers)]
    threads = [threading.Thread(target=w.run, args=(deadline, stop)) for w in team]
    threads.append(threading.Thread(target=_refresher, args=(dsn, metrics, deadline, stop, out)))
    allow = ["--allow-base-url", judge["base_url"]] if judge and judge.get("base_url") else []
    procs = [start_worker(dsn, *allow) for _ in range(workers)]
    try:
        for t in threads:
            t.start()
        if faults:
            _inject_faults(dsn, procs, cluster, began, seconds, out, fault_every or seconds / 3)
        for t in threads:
            t.join(timeout=seconds + 120)
            assert not t.is_alive(), "a writer or the refresher hung (deadlock?)"
    finally:
        stop.set()
    out["load_seconds"] = round(time.monotonic() - began, 1)
    # Drain: the workers carry on until the queue is empty (dead letters count as done).
    drained = _wait(lambda: _pending(dsn, made["judge"]) == 0, max(180, 2 * seconds))
    out["drain_seconds"] = round(max(0.0, time.monotonic() - began - out["load_seconds"]), 1)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    out["worker_exits"] = [p.wait(timeout=60) for p in procs]
    out["worker_stderr"] = [_log_of(p) for p in procs]
    out["drained"] = drained
    out["writers"] = team
    out["made"] = made
    out["errors"] += [e for w in team for e in w.errors]
    with psycopg.connect(dsn, autocommit=True) as db:
        teardown_validators(db, made)
    return out


def _inject_faults(dsn: str, procs: list[subprocess.Popen[str]], cluster: Any, began: float, seconds: float,
                   out: dict[str, Any], period: float) -> None:
    """Every `period` seconds, in turn: kill -9 a worker while jobs are leased (and start
    another), then restart PostgreSQL (the throw-away cluster only)."""
    at = began + period
    turn = 0
    while at < began + seconds - period / 2:
        time.sleep(max(0.0, at - time.monotonic()))
        if turn % 2 == 0 or cluster is None:
            _wait(lambda: _leased(dsn) > 0, 5)
            victim = next(p for p in procs if p.poll() is None)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            out["worker_kills"] += 1
            procs.append(start_worker(dsn, *victim.extra_args))  # type: ignore[attr-defined]
        else:
            cluster.restart()
            out["restarts"] += 1
        turn += 1
        at += period


def start_worker(dsn: str, *args: str) -> subprocess.Popen[str]:
    """A real worker whose output goes to a file (a pipe nobody reads would fill and block it);
    args: more options (the allowlist of the judge's fake provider)."""
    log = open(f"/tmp/reliability-worker-{os.getpid()}-{uuid.uuid4().hex[:6]}.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen([DBFLYWHEEL, "worker", "--dsn", dsn, *WORKER_ARGS, *args], stdout=log, stderr=subprocess.STDOUT,
                            text=True)
    proc.stdout_log = log  # type: ignore[attr-defined]
    proc.extra_args = args  # type: ignore[attr-defined]
    return proc


def _log_of(p: subprocess.Popen[str]) -> str:
    log = p.stdout_log  # type: ignore[attr-defined]
    log.seek(0)
    text = log.read()
    log.close()
    os.unlink(log.name)
    return text[-2000:]


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except psycopg.OperationalError:
            pass
        time.sleep(0.2)
    return False


def _scalar(dsn: str, query: str, *params: object) -> int:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
        return int(conn.execute(query, params).fetchone()[0])  # type: ignore[index]


def _pending(dsn: str, judge_id: int) -> int:
    return _scalar(dsn, "SELECT count(*) FROM flywheel.judge_jobs WHERE validator_id = %s", judge_id)


def _leased(dsn: str) -> int:
    return _scalar(dsn, "SELECT count(*) FROM flywheel.judge_jobs WHERE status = 'leased'")


def check_load(db: psycopg.Connection, app: str, out: dict[str, Any], *, dead_marker: str | None = None) -> dict[str, Any]:
    """Asserts that the counts add up; returns them for BENCHMARKS.md."""
    assert out["errors"] == [], out["errors"]
    assert out["drained"], f"the judge queue did not drain: {out['worker_stderr']}"
    writers: list[Writer] = out["writers"]
    made = out["made"]
    committed = {uid: tid for w in writers for uid, tid in w.traces.items()}
    tokens = set().union(*(w.feedback for w in writers))
    stored = dict(db.execute("SELECT uid::text, id FROM flywheel.traces WHERE app = %s", (app,)).fetchall())
    assert stored == committed, "traces lost or doubled"  # same uids, same ids: none lost, none extra
    rows = db.execute("SELECT comment, count(*) FROM flywheel.feedback WHERE app = %s GROUP BY 1", (app,)).fetchall()
    assert {c for c, _ in rows} == tokens and all(n == 1 for _, n in rows), "feedback lost or doubled"
    ids = list(stored.values())
    # Exactly one result per trace and sync validator (its one version), and nothing else.
    per = db.execute(
        "SELECT validator_id, count(*), count(DISTINCT trace_id), count(*) FILTER (WHERE status = 'error')"
        " FROM flywheel.validation_results WHERE trace_id = ANY(%s) GROUP BY 1", (ids,)).fetchall()
    by_validator = {v: (n, distinct, errors) for v, n, distinct, errors in per}
    for name, vid in made["sync"].items():
        n, distinct, _ = by_validator.get(vid, (0, 0, 0))
        assert n == distinct == len(ids), f"{name}: {n} results for {distinct} of {len(ids)} traces"
    judge = made["judge"]
    outputs = dict(db.execute("SELECT id, output FROM flywheel.traces WHERE app = %s", (app,)).fetchall())
    sampled_ids = {t for t in ids if sampled(t, judge, 0.5)}
    verdicts = dict(db.execute("SELECT trace_id, count(*) FROM flywheel.validation_results"
                               " WHERE validator_id = %s AND trace_id = ANY(%s) GROUP BY 1", (judge, ids)).fetchall())
    dead = {r[0] for r in db.execute("SELECT trace_id FROM flywheel.judge_dead_letters WHERE validator_id = %s", (judge,))}
    assert all(n == 1 for n in verdicts.values()), "a judge verdict written twice"
    assert not set(verdicts) & dead, "a trace both judged and dead-lettered"
    assert set(verdicts) | dead == sampled_ids, "a sampled trace has no verdict and is not dead-lettered"
    expected_dead = {t for t in sampled_ids if dead_marker and dead_marker in (outputs[t] or "")}
    assert dead == expected_dead, "dead letters other than the jobs whose provider never recovers"
    assert db.execute("SELECT count(*) FROM flywheel.judge_jobs WHERE validator_id = %s", (judge,)).fetchone() == (0,)
    python_id = next(v for n, v in made["sync"].items() if n.startswith("rel_python_"))
    python_errors = by_validator.get(python_id, (0, 0, 0))[2]
    expected_errors = sum(1 for t in ids if any(m in (outputs[t] or "") for m in ("RAISE", "LOOP")))
    assert python_errors == expected_errors, "the raising/looping validator's errors do not match its inputs"
    missing = db.execute("SELECT count(*) FROM flywheel.traces t WHERE t.app = %s AND NOT EXISTS"
                         " (SELECT 1 FROM flywheel.embeddings e WHERE e.trace_id = t.id)", (app,)).fetchone()
    assert missing == (0,), f"{missing[0]} traces without an embedding"  # type: ignore[index]
    refresh_errors = db.execute("SELECT count(*) FROM flywheel.refresh_log WHERE started_at >= %s AND error IS NOT NULL",
                                (out["started_at"],)).fetchone()
    assert refresh_errors == (0,), "a metric refresh failed under load"
    assert out["refreshes"] > 0
    return {
        "seconds": out["load_seconds"], "drain_seconds": out["drain_seconds"],
        "writers": len(writers), "workers": len(out["worker_exits"]),
        "traces": len(ids), "feedback": len(tokens),
        "transactions": sum(w.statements for w in writers) + sum(w.in_doubt for w in writers),
        "sync_results": sum(by_validator.get(v, (0,))[0] for v in made["sync"].values()),
        "judge_jobs": len(sampled_ids), "judge_verdicts": len(verdicts), "dead_letters": len(dead),
        "validator_errors": python_errors, "metric_refreshes": out["refreshes"],
        "worker_kills": out["worker_kills"], "postgres_restarts": out["restarts"],
        "writer_reconnects": sum(w.reconnects for w in writers), "in_doubt_commits": sum(w.in_doubt for w in writers),
        "retried_transactions": sum(w.retried for w in writers),
    }


def record(section: str, counts: dict[str, Any]) -> None:
    """Keeps the latest counts of each test in tests/reliability_counts.json (BENCHMARKS.md is
    rendered from it by scripts/reliability_report.py)."""
    data = json.loads(COUNTS_FILE.read_text()) if COUNTS_FILE.exists() else {}
    data[section] = counts
    COUNTS_FILE.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
