"""dbflywheel serve: OTLP ingestion of 100-span batches against direct psycopg INSERTs of the same rows,
and POST /v1/feedback at a fixed 500 requests/s (p95 latency).

Both ingest paths write as the same app role through plain INSERT INTO flywheel.traces (the insert
path's triggers run in both), in one transaction per batch, measured in turns (median of rounds)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from dbflywheel.bench import Context

NAME = "http"
TITLE = "dbflywheel serve: OTLP ingestion and POST /v1/feedback"
SPANS = 100
FEEDBACK_RATE = 500


def _batch(i: int) -> bytes:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    tid = os.urandom(16)
    for j in range(SPANS):
        s = ss.spans.add()
        s.trace_id, s.span_id, s.name = tid, os.urandom(8), "answer"
        s.start_time_unix_nano, s.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_250_000_000
        for k, v in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o-mini"),
                     ("input.value", f"Question {i}.{j}: how do I reset my password?"),
                     ("output.value", "Open Settings, then Security, and press Reset password.")):
            a = s.attributes.add()
            a.key, a.value.string_value = k, v
    return req.SerializeToString()


def _direct_insert(conn: psycopg.Connection, role: str, i: int) -> None:
    """The same rows as one OTLP batch, by psycopg, as the app role, in one transaction."""
    tid = os.urandom(16).hex()
    with conn.transaction():
        conn.execute(f'SET LOCAL ROLE "{role}"')
        conn.execute(
            "INSERT INTO flywheel.traces (uid, run_id, node, node_type, input, output, model, latency_ms, metadata)"
            " SELECT gen_random_uuid(), %s, 'answer', 'writer', 'Question ' || %s || '.' || g"
            " || ': how do I reset my password?', 'Open Settings, then Security, and press Reset password.',"
            " 'gpt-4o-mini', 250, jsonb_build_object('otel.span_id', md5(g::text)) FROM generate_series(1, %s) g",
            (tid, i, SPANS))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _feedback_at_rate(url: str, key: str, trace_id: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    body = {"trace_id": trace_id, "kind": "click"}
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_connections=64)) as client:
        async def one() -> None:
            t = time.perf_counter()
            r = await client.post("/v1/feedback", json=body)
            latencies.append((time.perf_counter() - t) * 1000 if r.status_code == 201 else float("inf"))

        start, tasks = time.perf_counter(), []
        for n in range(int(FEEDBACK_RATE * seconds)):  # a fixed schedule, not as fast as answers come
            delay = start + n / FEEDBACK_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies


def run(ctx: Context) -> str:
    rounds, batches = (2, 5) if ctx.quick else (5, 20)
    app = f"bench-http-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ctx.dsn, autocommit=True) as db:
        (key,) = db.execute("SELECT flywheel.create_api_key(%s, %s, 100000, 10000000)",
                            (app, app)).fetchone()  # type: ignore[misc]
        (role,) = db.execute("SELECT flywheel._api_role_of(%s)", (app,)).fetchone()  # type: ignore[misc]
    port = _free_port()
    dbflywheel = str(Path(sys.executable).with_name("dbflywheel"))
    server = subprocess.Popen([dbflywheel, "serve", "--dsn", ctx.dsn, "--port", str(port), "--workers", "2",
                               "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        bodies = [_batch(i) for i in range(rounds * batches)]
        otlp_rates, direct_rates = [], []
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client, psycopg.connect(ctx.dsn) as conn:
            for r in range(rounds):
                t = time.perf_counter()
                for b in bodies[r * batches:(r + 1) * batches]:
                    client.post("/v1/traces", content=b).raise_for_status()
                otlp_rates.append(batches * SPANS / (time.perf_counter() - t))
                t = time.perf_counter()
                for i in range(batches):
                    _direct_insert(conn, role, i)
                direct_rates.append(batches * SPANS / (time.perf_counter() - t))
            trace_id = json.loads(client.post("/v1/feedback", json={"question": "q", "response": "a", "rating": 5},
                                              headers={"Content-Type": "application/json"}).text)["trace_id"]
            alone = []  # one request at a time: the latency without queueing
            for _ in range(100 if ctx.quick else 300):
                t = time.perf_counter()
                client.post("/v1/feedback", json={"trace_id": trace_id, "kind": "click"},
                            headers={"Content-Type": "application/json"}).raise_for_status()
                alone.append((time.perf_counter() - t) * 1000)
        alone.sort()
        lat = sorted(asyncio.run(_feedback_at_rate(url, key, trace_id, 2 if ctx.quick else 5)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    otlp, direct = statistics.median(otlp_rates), statistics.median(direct_rates)
    p50, p95 = lat[len(lat) // 2], lat[int(len(lat) * 0.95)]
    ratio = otlp / direct
    return "\n".join([
        f"OTLP/HTTP protobuf, {SPANS}-span batches, one client, `dbflywheel serve --workers 2`: "
        f"{otlp:,.0f} rows/s; direct psycopg INSERT of the same rows as the same app role: {direct:,.0f} rows/s; "
        f"ratio {ratio:.2f}x (target >= 0.5x: {'met' if ratio >= 0.5 else 'NOT met'}).",
        "",
        f"POST /v1/feedback at a fixed {FEEDBACK_RATE} requests/s for {len(lat) / FEEDBACK_RATE:.0f} s "
        f"({len(lat)} requests): p50 {p50:.1f} ms, p95 {p95:.1f} ms "
        f"(target p95 <= 10 ms: {'met' if p95 <= 10 else 'NOT met'}); failed: {sum(x == float('inf') for x in lat)}.",
        f"The same, one request at a time ({len(alone)}): p50 {alone[len(alone) // 2]:.1f} ms, "
        f"p95 {alone[int(len(alone) * 0.95)]:.1f} ms.",
        "",
        "Medians of rounds measured in turns in the same run; the machine (2 cores) was shared with other work.",
    ])
