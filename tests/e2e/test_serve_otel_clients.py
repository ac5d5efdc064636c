"""Real clients against a real `dbflywheel serve`: the openai SDK calling the tests' OpenAI-protocol server,
instrumented by OpenInference and (separately) by OpenTelemetry's openai instrumentation, exported by the
OTel SDK's OTLP/HTTP exporter; and the Langfuse SDK with its host pointed at the server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from fake_openai import FakeOpenAI
from serve_support import Served, new_key, serving


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[Served]:
    with serving(dsn) as s:
        yield s


def wait_rows(db: psycopg.Connection, app: str, n: int) -> list[tuple]:
    deadline = time.monotonic() + 20
    while True:
        rows = db.execute("SELECT node, node_type, model, input, output, tokens_in, tokens_out, latency_ms, run_id,"
                          " parent_id, id FROM flywheel.traces WHERE app = %s ORDER BY id", (app,)).fetchall()
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _provider(server: Served, token: str):  # type: ignore[no-untyped-def]
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=server.url + "/v1/traces", headers={"Authorization": f"Bearer {token}"})))
    return provider


def _chain_of_calls(provider, fake: FakeOpenAI) -> str:  # type: ignore[no-untyped-def]
    """One plain call, then two calls under one parent span; returns the parent's trace id."""
    import openai

    client = openai.OpenAI(base_url=fake.url, api_key="sk-fake")
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "single question"}])
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("pipeline") as parent:
        for q in ("first step", "second step"):
            client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": q}])
        trace_id = format(parent.get_span_context().trace_id, "032x")
    provider.force_flush()
    return trace_id


@pytest.mark.parametrize("instrumentation", ["openinference", "opentelemetry"])
def test_openai_sdk_calls_arrive_as_traces(instrumentation: str, server: Served, db: psycopg.Connection,
                                           app_name: str) -> None:
    if instrumentation == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor
    else:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor  # type: ignore[no-redef]
    _, token = new_key(db, app_name)
    provider = _provider(server, token)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with FakeOpenAI() as fake:
            run = _chain_of_calls(provider, fake)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    rows = wait_rows(db, app_name, 4)
    llm = [r for r in rows if r[0] != "pipeline"]
    assert len(rows) == 4 and len(llm) == 3, rows
    for r in llm:
        assert r[1] == "writer" and r[2] == "fake-model" and (r[5], r[6]) == (100, 20) and r[7] > 0, r
        assert '"verdict": "pass"' in r[4]
    assert "single question" in llm[0][3]
    (pipeline,) = [r for r in rows if r[0] == "pipeline"]
    steps = [r for r in rows if r[8] == run and r[0] != "pipeline"]
    assert pipeline[8] == run and len(steps) == 2 and {s[9] for s in steps} == {pipeline[10]}
    assert ["first step" in steps[0][3], "second step" in steps[1][3]] == [True, True]


def test_langfuse_sdk_observations_and_scores(server: Served, db: psycopg.Connection, app_name: str) -> None:
    from langfuse import Langfuse

    _, token = new_key(db, app_name)
    lf = Langfuse(public_key="pk-lf-dbflywheel", secret_key=token, host=server.url, tracing_enabled=True)
    with lf.start_as_current_observation(name="answer", as_type="generation", model="lf-model",
                                         input="what is 2+2?") as gen:
        gen.update(output="4", usage_details={"input": 7, "output": 1})
        trace_id = lf.get_current_trace_id()
    lf.flush()
    rows = wait_rows(db, app_name, 1)
    assert len(rows) == 1 and rows[0][:4] == ("answer", "writer", "lf-model", "what is 2+2?"), rows
    assert rows[0][4] == "4" and rows[0][5:7] == (7, 1)
    lf.create_score(trace_id=trace_id, name="user-feedback", value=1, data_type="BOOLEAN", comment="good")
    lf.flush()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        fb = db.execute("SELECT kind, value, comment, source FROM flywheel.feedback WHERE app = %s", (app_name,)).fetchall()
        if fb:
            break
        time.sleep(0.1)
    assert fb == [("thumbs", 1.0, "good", "langfuse")]
    lf.shutdown()
