"""`dbflywheel worker`: drains the judge queue. Claims jobs with a lease, calls the judge with
no transaction open, writes each verdict once, retries, survives database restarts."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dbflywheel.errors import FlywheelError
from dbflywheel.install import _first_line, _redact
from dbflywheel.providers import MAX_ERROR_CHARS, Allowlist, Job, ProviderError, Providers, clean_text

log = logging.getLogger("dbflywheel.worker")

CHANNEL = "flywheel_judge_jobs"

# The next moment a job may become claimable: a pending job's run_after (budgets aside) or
# the lease end of a job another worker holds (it becomes claimable if that worker died).
NEXT_DUE = """
SELECT least(
    (SELECT min(q.first_due)
     FROM (SELECT j.validator_id, min(j.run_after) AS first_due FROM flywheel.judge_jobs j
           WHERE j.status = 'pending' GROUP BY j.validator_id) q
     WHERE coalesce((SELECT b.remaining FROM flywheel._judge_budget(q.validator_id) b), 1) > 0),
    (SELECT min(j.lease_until) FROM flywheel.judge_jobs j WHERE j.status = 'leased' AND j.leased_by <> %s)) AS due
"""


@dataclass
class Stats:
    done: int = 0
    failed: int = 0
    dead: int = 0

    def describe(self) -> str:
        return f"{self.done} verdict(s) written, {self.failed} failed call(s) ({self.dead} dead-lettered)"


class Worker:
    def __init__(
        self, dsn: str, *, concurrency: int = 8, once: bool = False, lease_seconds: float = 60.0,
        poll_seconds: float = 2.0, agreement_check_seconds: float = 60.0, allowlist: Allowlist | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.dsn = dsn
        # Where judges may send the worker's keys: the operator's rules, never the judge configs'.
        self.allowlist = allowlist if allowlist is not None else Allowlist.from_options()
        self.concurrency = concurrency
        self.once = once
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = max(0.2, lease_seconds / 3)
        self.agreement_check_seconds = agreement_check_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = Stats()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._reconnect_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_hand: set[int] = set()  # the job ids being processed: only their leases are extended
        self._wake = asyncio.Event()
        self._stopping = False

    # -- the database, with reconnection ------------------------------------------------
    async def _execute(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """Runs one autocommit statement, reconnecting (with backoff) while the server is away.
        Every statement a worker runs is safe to repeat."""
        delay, started = 0.1, time.monotonic()
        while True:
            conn = self._conn
            try:
                if conn is None or conn.closed:
                    conn = await self._reconnect(conn)
                cur = await conn.execute(query, params)
                return await cur.fetchall() if cur.description else []
            except psycopg.errors.QueryCanceled:
                raise  # a statement timeout or a cancel: the caller's to handle, not a lost server
            except psycopg.OperationalError as e:
                if self._stopping and time.monotonic() - started > 30:
                    raise  # stopping, and the server stays away: the leases expire, nothing is lost
                log.warning("database unavailable (%s); retrying in %.1f s", str(e).strip().splitlines()[0], delay)
                if conn is not None:
                    await conn.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _reconnect(self, stale: psycopg.AsyncConnection[Any] | None) -> psycopg.AsyncConnection[Any]:
        async with self._reconnect_lock:
            if self._conn is not stale and self._conn is not None and not self._conn.closed:
                return self._conn  # another task reconnected meanwhile
            self._conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, row_factory=dict_row, application_name="dbflywheel worker"
            )
            return self._conn

    # -- the loop -------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the jobs in hand, claim no more, exit (SIGTERM, SIGINT)."""
        if not self._stopping:
            log.info("stopping: finishing %d job(s) in hand", len(self._tasks))
        self._stopping = True
        self._wake.set()

    async def run(self) -> Stats:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        # No redirects: a key sent to an allowed endpoint must not follow a redirect elsewhere.
        async with httpx.AsyncClient(limits=limits, follow_redirects=False, timeout=30.0) as client:
            self.providers = Providers(client, self.allowlist)
            try:  # the first connection fails in one clear line; later ones are retried
                await self._reconnect(None)
            except psycopg.OperationalError as e:
                raise FlywheelError(f"cannot connect to {_redact(self.dsn)}: {_first_line(e)}") from e
            background = [asyncio.create_task(self._heartbeat_loop()), asyncio.create_task(self._listen_loop())]
            log.info("worker %s: concurrency %d; %s", self.worker_id, self.concurrency, self.allowlist.describe())
            try:
                await self._main_loop()
                if self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                try:
                    await self._execute("DELETE FROM flywheel.judge_workers WHERE worker_id = %s", (self.worker_id,))
                except psycopg.Error:
                    pass
                if self._conn is not None:
                    await self._conn.close()
        return self.stats

    async def _main_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._tasks)
            claimed = await self._claim(free) if free > 0 else 0
            if claimed:
                continue
            timeout = self.poll_seconds
            if not self._tasks:
                # Idle: take back the jobs of dead workers now rather than at the next heartbeat.
                released = await self._execute("SELECT flywheel._release_expired_leases() AS n")
                if released and released[0]["n"]:
                    continue
                rows = await self._execute(NEXT_DUE, (self.worker_id,))
                due = rows[0]["due"] if rows else None
                if due is None and self.once:
                    return  # --once: the queue is drained
                if due is not None:
                    now = (await self._execute("SELECT now() AS now"))[0]["now"]
                    timeout = min(timeout, max(0.01, (due - now).total_seconds()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _claim(self, free: int) -> int:
        rows = await self._execute(
            "SELECT * FROM flywheel._claim_judge_jobs(%s, %s, %s)", (self.worker_id, free, self.lease)
        )
        for row in rows:
            job = Job(
                job_id=row["job_id"], trace_id=row["trace_id"], validator_id=row["validator_id"],
                validator=row["validator"], validator_version=row["validator_version"], kind=row["kind"],
                config=row["config"] or {}, attempts=row["attempts"], input=row["input"], output=row["output"],
                expected=row["expected"], pair_trace_id=row["pair_trace_id"], pair_input=row["pair_input"],
                pair_output=row["pair_output"], examples=row["examples"] or [],
            )
            self._in_hand.add(job.job_id)
            task = asyncio.create_task(self._process(job))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        return len(rows)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job task crashed: %r", task.exception())

    async def _process(self, job: Job) -> None:
        """One job, whatever the provider answers: a verdict, a retry or a dead letter. Any
        error is recorded against the job (its lease released), never left to kill the task."""
        try:
            try:
                verdict, latency_ms = await self.providers.judge(job)
            except ProviderError as e:
                await self._fail(job, str(e), e.retry_after, final=e.final)
                return
            except Exception as e:  # a bug in a provider must not kill the worker or lose the job
                await self._fail(job, f"{type(e).__name__}: {e}", None)
                return
            try:
                await self._complete(job, verdict, latency_ms)
            except Exception as e:  # e.g. an answer PostgreSQL refuses: the job fails with why
                if isinstance(e, psycopg.OperationalError) and not isinstance(e, psycopg.errors.QueryCanceled):
                    raise  # the server stays away while stopping: the lease expires, a retry follows
                await self._fail(job, f"cannot record the verdict: {type(e).__name__}: {e}", None)
        except Exception as e:
            log.error("job %d: cannot record its outcome (%s); its lease expires and it is retried",
                      job.job_id, clean_text(f"{type(e).__name__}: {e}", MAX_ERROR_CHARS, one_line=True))
        finally:
            self._in_hand.discard(job.job_id)  # no longer extended by the heartbeat, whatever happened

    async def _complete(self, job: Job, verdict: Any, latency_ms: float) -> None:
        details: dict[str, Any] = {"reason": verdict.reason, "provider": job.config.get("provider", "offline")}
        if job.config.get("model"):
            details["model"] = job.config["model"]
        if job.pair_trace_id is not None:
            details["pair_trace_id"] = job.pair_trace_id
        await self._execute(
            "SELECT flywheel._complete_judge_job(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (job.job_id, self.worker_id, job.validator_id, verdict.status, verdict.score, verdict.label,
             Jsonb(details), verdict.tokens_in, verdict.tokens_out, latency_ms),
        )
        self.stats.done += 1

    async def _fail(self, job: Job, error: str, retry_after: float | None, *, final: bool = False) -> None:
        self.stats.failed += 1
        error = clean_text(f"attempt {job.attempts}: {error}", MAX_ERROR_CHARS, one_line=True)
        rows = await self._execute(
            "SELECT flywheel._fail_judge_job(%s, %s, %s, %s, %s, %s) AS outcome",
            (job.job_id, self.worker_id, job.validator_id, error, retry_after, final),
        )
        outcome = rows[0]["outcome"] if rows else "gone"
        if outcome == "dead":
            self.stats.dead += 1
        log.warning("job %d (%s, trace %d): %s -> %s", job.job_id, clean_text(job.validator, 200, one_line=True),
                    job.trace_id, error, outcome)

    async def _heartbeat_loop(self) -> None:
        last_check = 0.0
        while True:
            try:
                await self._execute(
                    "SELECT flywheel._judge_heartbeat(%s, %s, %s, %s, %s, %s, %s, %s, %s::bigint[])",
                    (self.worker_id, socket.gethostname(), os.getpid(), self.concurrency, len(self._tasks),
                     self.stats.done, self.stats.failed, self.lease, sorted(self._in_hand)),
                )
                if time.monotonic() - last_check >= self.agreement_check_seconds:
                    last_check = time.monotonic()
                    for alert in await self._execute("SELECT * FROM flywheel.check_judge_agreement()"):
                        log.warning("alert: judge %s agreement %.3f below its floor", alert["validator"],
                                    alert["agreement"])
            except psycopg.Error as e:
                log.warning("heartbeat failed: %s", e)
            await asyncio.sleep(self.heartbeat_seconds)

    async def _listen_loop(self) -> None:
        """Wakes the main loop when the insert trigger NOTIFYs; polling covers missed ones."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error:
                await asyncio.sleep(1.0)


def run_worker(dsn: str, **options: Any) -> Stats:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return asyncio.run(Worker(dsn, **options).run())
