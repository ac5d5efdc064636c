"""`dbflywheel serve` over real HTTP: keys, OTLP (protobuf, JSON, gzip), feedback, limits, and the attacks."""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from serve_support import Served, new_key, serving


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[Served]:
    with serving(dsn) as s:
        yield s


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def otlp_json(trace_id: str, spans: list[dict]) -> dict:
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}


def span(trace_id: str, span_id: str, name: str, parent: str = "", **attrs: object) -> dict:
    def val(v: object) -> dict:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}
    return {"traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "name": name,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000250000000",
            "attributes": [{"key": k.replace("__", "."), "value": val(v)} for k, v in attrs.items()]}


def test_otlp_json_maps_genai_attributes_and_resends_are_not_doubled(server: Served, db: psycopg.Connection,
                                                                    app_name: str) -> None:
    _, token = new_key(db, app_name)
    tid = os.urandom(16).hex()
    root, child = os.urandom(8).hex(), os.urandom(8).hex()
    body = otlp_json(tid, [
        span(tid, child, "answer", root, gen_ai__operation__name="chat", gen_ai__request__model="gpt-x",
             gen_ai__usage__input_tokens=12, gen_ai__usage__output_tokens=3, input__value="hi?", output__value="hello",
             extra__thing="kept"),
        span(tid, root, "pipeline", openinference__span__kind="CHAIN"),
    ])
    for _ in range(2):  # the second send is a re-send: nothing doubles
        r = httpx.post(server.url + "/v1/traces", json=body, headers=bearer(token))
        assert r.status_code == 200, r.text
    rows = db.execute("SELECT node, node_type, model, input, output, tokens_in, tokens_out, latency_ms, run_id,"
                      " parent_id, id, metadata->>'extra.thing' FROM flywheel.traces WHERE app = %s ORDER BY id",
                      (app_name,)).fetchall()
    assert len(rows) == 2
    (pipe, ans) = rows
    assert pipe[:2] == ("pipeline", "other") and pipe[8] == tid
    assert ans[:8] == ("answer", "writer", "gpt-x", "hi?", "hello", 12, 3, 250.0)
    assert ans[9] == pipe[10] and ans[11] == "kept"


def test_protobuf_gzip_and_bad_bodies(server: Served, db: psycopg.Connection, app_name: str) -> None:
    _, token = new_key(db, app_name)
    req = ExportTraceServiceRequest()
    s = req.resource_spans.add().scope_spans.add().spans.add()
    s.trace_id, s.span_id, s.name = os.urandom(16), os.urandom(8), "pb"
    headers = {**bearer(token), "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    r = httpx.post(server.url + "/v1/traces", content=gzip.compress(req.SerializeToString()), headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    assert db.execute("SELECT node FROM flywheel.traces WHERE app = %s", (app_name,)).fetchall() == [("pb",)]
    bad = httpx.post(server.url + "/v1/traces", content=b"\xff\xfe garbage", headers={
        **bearer(token), "Content-Type": "application/x-protobuf"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("malformed protobuf")
    bad = httpx.post(server.url + "/v1/traces", content=b"{nope", headers={**bearer(token), "Content-Type": "application/json"})
    assert bad.status_code == 400 and "\n" not in bad.json()["detail"] and bad.json()["detail"].startswith("malformed JSON")
    bomb = gzip.compress(b"\0" * (9 * 1024 * 1024))
    big = httpx.post(server.url + "/v1/traces", content=bomb, headers=headers)
    assert big.status_code == 413
    big = httpx.post(server.url + "/v1/traces", content=b"x" * (9 * 1024 * 1024), headers=headers)
    assert big.status_code == 413


def test_a_batch_is_all_or_nothing(server: Served, db: psycopg.Connection, app_name: str) -> None:
    _, token = new_key(db, app_name)
    tid, root = os.urandom(16).hex(), os.urandom(8).hex()
    # the root is written first (its generation), then the child's lone surrogate fails the batch
    body = otlp_json(tid, [span(tid, root, "ok"), span(tid, os.urandom(8).hex(), "bad", root, input__value="\ud800")])
    r = httpx.post(server.url + "/v1/traces", content=json.dumps(body), headers={
        **bearer(token), "Content-Type": "application/json"})
    assert r.status_code == 400 and "surrogate" in r.json()["detail"]
    assert db.execute("SELECT count(*) FROM flywheel.traces WHERE app = %s", (app_name,)).fetchone() == (0,)
    body = otlp_json(tid, [span("00" * 16, os.urandom(8).hex(), "zero trace id")])
    assert httpx.post(server.url + "/v1/traces", json=body, headers=bearer(token)).status_code == 400


def test_feedback_by_id_otel_ids_and_founding_shape(server: Served, db: psycopg.Connection, app_name: str) -> None:
    _, token = new_key(db, app_name)
    tid, sid = os.urandom(16).hex(), os.urandom(8).hex()
    assert httpx.post(server.url + "/v1/traces", json=otlp_json(tid, [span(tid, sid, "llm")]),
                      headers=bearer(token)).status_code == 200
    r = httpx.post(server.url + "/v1/feedback", json={"otel_trace_id": tid, "otel_span_id": sid, "kind": "thumbs",
                                                        "value": 1}, headers=bearer(token))
    assert r.status_code == 201, r.text
    trace_id = r.json()["trace_id"]
    r = httpx.post(server.url + "/v1/feedback", json={"trace_id": trace_id, "kind": "comment", "comment": "nice"},
                   headers=bearer(token))
    assert r.status_code == 201
    got = httpx.get(server.url + "/v1/feedback", params={"trace_id": trace_id}, headers=bearer(token)).json()
    assert [(f["kind"], f["value"], f["comment"]) for f in got] == [("thumbs", 1.0, None), ("comment", None, "nice")]
    # the founding document's shape records a trace
    r = httpx.post(server.url + "/v1/feedback", json={"question": "2+2?", "response": "4", "rating": 5,
                                                        "comment": "right"}, headers=bearer(token))
    assert r.status_code == 201
    assert db.execute("SELECT t.input, t.output, f.kind, f.value, f.comment FROM flywheel.traces t JOIN flywheel.feedback f"
                      " ON f.trace_id = t.id WHERE t.id = %s", (r.json()["trace_id"],)).fetchone() == (
        "2+2?", "4", "rating", 5.0, "right")
    bad = httpx.post(server.url + "/v1/feedback", json={"trace_id": trace_id, "kind": "rating", "value": 9},
                     headers=bearer(token))
    assert bad.status_code == 400 and "between 1 and 5" in bad.json()["detail"]


def test_another_apps_trace_is_404_and_revoked_key_is_401(server: Served, db: psycopg.Connection, app_name: str) -> None:
    name_a, token_a = new_key(db, app_name)
    _, token_b = new_key(db, app_name + "-other")
    tid, sid = os.urandom(16).hex(), os.urandom(8).hex()
    assert httpx.post(server.url + "/v1/traces", json=otlp_json(tid, [span(tid, sid, "mine")]),
                      headers=bearer(token_a)).status_code == 200
    (trace_id,) = db.execute("SELECT id FROM flywheel.traces WHERE app = %s", (app_name,)).fetchone()  # type: ignore[misc]
    for attempt in ({"trace_id": trace_id}, {"otel_trace_id": tid}, {"trace_id": 2**62}):
        r = httpx.post(server.url + "/v1/feedback", json={**attempt, "kind": "thumbs", "value": -1}, headers=bearer(token_b))
        assert (r.status_code, r.json()) == (404, {"detail": "no such trace"})
    assert httpx.get(server.url + "/v1/feedback", params={"trace_id": trace_id}, headers=bearer(token_b)).status_code == 404
    # B re-sending A's span ids makes B's own row, never touches A's
    assert httpx.post(server.url + "/v1/traces", json=otlp_json(tid, [span(tid, sid, "theirs")]),
                      headers=bearer(token_b)).status_code == 200
    assert db.execute("SELECT node FROM flywheel.traces WHERE app = %s", (app_name,)).fetchall() == [("mine",)]
    assert db.execute("SELECT count(*) FROM flywheel.feedback WHERE trace_id = %s", (trace_id,)).fetchone() == (0,)
    assert db.execute("SELECT flywheel.revoke_api_key(%s)", (name_a,)).fetchone() == (True,)
    for headers in (bearer(token_a), {}, bearer("fwk_" + "0" * 64), {"Authorization": "Basic !!"}):
        r = httpx.post(server.url + "/v1/feedback", json={"trace_id": trace_id, "kind": "thumbs", "value": 1}, headers=headers)
        assert r.status_code == 401


def test_keys_are_stored_hashed_and_listed_without_secrets(db: psycopg.Connection, app_name: str) -> None:
    name, token = new_key(db, app_name)
    assert token.startswith("fwk_") and len(token) == 68
    cols = [c.name for c in db.execute("SELECT * FROM flywheel.api_keys LIMIT 0").description or []]
    assert not any("token" in c or "hash" in c or "secret" in c for c in cols)
    dump = json.dumps([list(map(str, r)) for r in db.execute("SELECT * FROM flywheel._api_keys").fetchall()])
    assert token not in dump
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("SELECT flywheel.create_api_key(%s, %s)", (app_name, name))


def test_rate_limits_answer_429_with_retry_after(server: Served, db: psycopg.Connection, app_name: str) -> None:
    _, token = new_key(db, app_name, requests_per_s=2, rows_per_s=5)
    codes = [httpx.get(server.url + "/v1/feedback", params={"trace_id": 1}, headers=bearer(token)) for _ in range(6)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    _, token = new_key(db, app_name, requests_per_s=100, rows_per_s=5)
    tid = os.urandom(16).hex()
    batch = otlp_json(tid, [span(tid, os.urandom(8).hex(), f"s{i}") for i in range(5)])
    assert httpx.post(server.url + "/v1/traces", json=batch, headers=bearer(token)).status_code == 200
    again = httpx.post(server.url + "/v1/traces", json=batch | {}, headers=bearer(token))
    assert again.status_code == 429 and "rows" in again.json()["detail"]


def test_langfuse_basic_auth_and_scores(server: Served, db: psycopg.Connection, app_name: str) -> None:
    _, token = new_key(db, app_name)
    basic = {"Authorization": "Basic " + base64.b64encode(f"pk-lf-any:{token}".encode()).decode()}
    tid, sid = os.urandom(16).hex(), os.urandom(8).hex()
    r = httpx.post(server.url + "/api/public/otel/v1/traces", json=otlp_json(tid, [span(
        tid, sid, "gen", langfuse__observation__type="generation", langfuse__observation__input="q",
        langfuse__observation__output="a")]), headers=basic)
    assert r.status_code == 200, r.text
    r = httpx.post(server.url + "/api/public/scores", json={"traceId": tid, "name": "user-feedback", "value": 1,
                                                              "dataType": "BOOLEAN"}, headers=basic)
    assert r.status_code == 200, r.text
    assert db.execute("SELECT t.node_type, t.input, t.output, f.kind, f.value, f.source FROM flywheel.feedback f"
                      " JOIN flywheel.traces t ON t.id = f.trace_id WHERE t.app = %s", (app_name,)).fetchall() == [
        ("writer", "q", "a", "thumbs", 1.0, "langfuse")]


def test_metrics_and_no_admin_rights(server: Served, db: psycopg.Connection, app_name: str) -> None:
    text = httpx.get(server.url + "/metrics").text
    assert "dbflywheel_http_requests_total" in text and "dbflywheel_judge_queue_depth" in text
    # the server logs in as flywheel_server, which may do nothing but authenticate and SET ROLE
    who = db.execute("SELECT usename FROM pg_stat_activity WHERE application_name = 'dbflywheel serve'").fetchall()
    assert who and {w[0] for w in who} == {"flywheel_server"}
    assert db.execute("SELECT rolsuper, rolinherit FROM pg_roles WHERE rolname = 'flywheel_server'").fetchone() == (False, False)
    granted = db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'flywheel'::regnamespace"
        " AND has_function_privilege('flywheel_server', p.oid, 'EXECUTE') ORDER BY 1").fetchall()
    # API keys (issue 14), and the review app's sign-in and alert webhooks (issue 15): nothing else
    assert [g[0] for g in granted] == ["flywheel._api_take_rows(bigint,integer)", "flywheel._authenticate_api_key(text)",
                                       "flywheel._judge_queue_depth()", "flywheel.due_alert_deliveries(integer)",
                                       "flywheel.record_alert_delivery(bigint,text,boolean,text,integer)",
                                       "flywheel.reviewer_session(text)", "flywheel.reviewer_sign_in(text,text)",
                                       "flywheel.reviewer_sign_out(text)"]
