"""Attack tests (issue 12) in the database: a cancelled statement is never committed by the
validators, their work is capped, a JSON Schema never makes the server fetch a URL, and a bad
config is refused in one line."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

# pii's cap on findings per field (plpython/validators_pii.py MAX_FINDINGS; README documents it)
MAX_FINDINGS = 1000


@pytest.fixture
def validator_name(db: psycopg.Connection) -> Iterator[str]:
    name = f"lim_{uuid.uuid4().hex[:10]}"
    yield name
    db.execute("DELETE FROM flywheel.validators WHERE name = %s", (name,))


def _stored(db: psycopg.Connection, app: str) -> int:
    return db.execute("SELECT count(*) FROM flywheel.traces WHERE app = %s", (app,)).fetchone()[0]  # type: ignore[index]


def test_a_statement_timeout_inside_a_validator_cancels_the_insert(
        db: psycopg.Connection, app_name: str, validator_name: str) -> None:
    # A stable expression that takes seconds: the timeout fires inside the validator's query. It
    # used to come back as an `error` result (and a retry that ran the whole query again), and the
    # INSERT committed.
    db.execute("SELECT flywheel.create_validator(%s, 'sql', %s, applies_to => %s)",
               (validator_name, Jsonb({"expression": "(SELECT count(*) FROM generate_series(1, 300000000)) > 0"}),
                Jsonb({"app": app_name})))
    with db.transaction():
        db.execute("SET LOCAL statement_timeout = '200ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'q', 'a')", (app_name,))
    assert _stored(db, app_name) == 0


def test_a_cancel_is_not_swallowed_by_a_python_validator(
        db: psycopg.Connection, app_name: str, validator_name: str) -> None:
    db.execute("SELECT flywheel.create_validator(%s, 'python', %s, applies_to => %s)",
               (validator_name, Jsonb({"body": "plpy.execute('SELECT count(*) FROM generate_series(1, 300000000)')"
                                               "\nreturn True"}), Jsonb({"app": app_name})))
    with db.transaction():
        db.execute("SET LOCAL statement_timeout = '200ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'q', 'a')", (app_name,))
    assert _stored(db, app_name) == 0


@pytest.mark.timeout(120)
def test_dense_personal_data_is_capped_or_cancelled(db: psycopg.Connection, app_name: str) -> None:
    # The audit's payload: 24000 findings, quadratic (32.6 s), and the INSERT committed anyway.
    text = "10.10.10.10 " * 24000
    committed = True
    with db.transaction():
        db.execute("SET LOCAL statement_timeout = '2s'")
        try:
            trace = db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, %s, 'a') RETURNING id",
                               (app_name, text)).fetchone()[0]  # type: ignore[index]
        except psycopg.errors.QueryCanceled:
            committed = False
    if not committed:
        assert _stored(db, app_name) == 0
        return
    score, details = db.execute(
        "SELECT r.score, r.details FROM flywheel.validation_results r JOIN flywheel.validators v"
        " ON v.id = r.validator_id WHERE r.trace_id = %s AND v.name = 'pii'", (trace,)).fetchone()  # type: ignore[misc]
    assert score == MAX_FINDINGS and details["truncated"] == ["input"]


# --- JSON Schema $ref: no network ------------------------------------------------------------------

@pytest.fixture
def http_hits() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request (and serves a schema, should it be asked)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            body = b'{"type": "object"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def _schemas(base: str) -> list[dict[str, object]]:
    return [
        {"$ref": f"{base}/s.json"},
        {"type": "object", "properties": {"a": {"$ref": f"{base}/a.json#/x"}}},
        {"$id": f"{base}/root/", "items": {"$ref": "other.json"}},
        {"$dynamicRef": f"{base}/d.json"},
        {"$schema": f"{base}/meta.json", "type": "object"},
        {"allOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"$ref": f"{base}/deep.json"}}},
    ]


def test_create_validator_refuses_a_remote_ref_and_fetches_nothing(
        db: psycopg.Connection, validator_name: str, http_hits: tuple[str, list[str]]) -> None:
    base, hits = http_hits
    for schema in _schemas(base):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            db.execute("SELECT flywheel.create_validator(%s, 'json', %s)", (validator_name, Jsonb({"schema": schema})))
        message = str(refused.value).splitlines()[0]
        assert message.startswith("create_validator: json:") and "Traceback" not in message, message
    assert hits == []


def test_a_stored_remote_ref_never_fetches_during_an_insert(
        db: psycopg.Connection, app_name: str, validator_name: str, http_hits: tuple[str, list[str]]) -> None:
    # A config written before the check existed (or straight into the table by its owner).
    base, hits = http_hits
    db.execute("SELECT flywheel.create_validator(%s, 'json', %s, applies_to => %s)",
               (validator_name, Jsonb({"schema": {"type": "object"}}), Jsonb({"app": app_name})))
    for schema in _schemas(base):
        db.execute("UPDATE flywheel.validators SET config = %s, version = version + 1 WHERE name = %s",
                   (Jsonb({"schema": schema}), validator_name))
        trace = db.execute("INSERT INTO flywheel.traces (app, input, output) VALUES (%s, 'q', '{\"a\": 1}')"
                           " RETURNING id", (app_name,)).fetchone()[0]  # type: ignore[index]
        status = db.execute(
            "SELECT r.status FROM flywheel.validation_results r JOIN flywheel.validators v ON v.id = r.validator_id"
            " WHERE r.trace_id = %s AND v.name = %s", (trace, validator_name)).fetchone()
        assert status is not None and status[0] in ("error", "fail", "pass"), (schema, status)
    assert hits == []


# --- bad shapes ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "config"), [
    ("pii", {"fields": [[]]}), ("pii", {"categories": [{}]}), ("anomaly", {"metrics": [[]]}),
    ("regex", {"pattern": "a", "label": {}}), ("refusal", {"count_dont_know": []}),
])
def test_a_config_of_the_wrong_shape_is_refused_in_one_line(
        db: psycopg.Connection, validator_name: str, kind: str, config: dict[str, object]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
        db.execute("SELECT flywheel.create_validator(%s, %s, %s)", (validator_name, kind, Jsonb(config)))
    message = refused.value.diag.message_primary or ""
    assert message.startswith(f"create_validator: {kind}:") and "\n" not in message, message
    assert "Traceback" not in str(refused.value) and "TypeError" not in str(refused.value), str(refused.value)
