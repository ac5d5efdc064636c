"""Alerts reach a real HTTP webhook (Slack-compatible JSON), with retries after failures."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import psycopg
import pytest

from dbflywheel import webhooks


class Hook(BaseHTTPRequestHandler):
    failures_left = 1
    received: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if Hook.failures_left > 0:
            Hook.failures_left -= 1
            self.send_response(500)
        else:
            Hook.received.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_an_alert_is_posted_and_retried_until_it_is_sent(db: psycopg.Connection, hook_url: str) -> None:
    name = f"hook_{uuid.uuid4().hex[:8]}"
    db.execute("UPDATE flywheel.alert_webhooks SET enabled = false")
    db.execute("SELECT flywheel.set_alert_webhook(%s, %s)", (name, hook_url))
    alert = db.execute("INSERT INTO flywheel.alerts (kind, subject, message) VALUES ('drift', 'latency', 'p < 0.001')"
                       " RETURNING id").fetchone()[0]  # type: ignore[index]
    Hook.failures_left, Hook.received = 1, []
    with httpx.Client(timeout=5) as client:
        assert webhooks.send_due(db, client) == {"sent": 0, "pending": 1, "failed": 0}
        assert webhooks.send_due(db, client) == {"sent": 0, "pending": 0, "failed": 0}  # not due yet: backoff
        db.execute("UPDATE flywheel.alert_deliveries SET next_try = now() WHERE alert_id = %s", (alert,))
        assert webhooks.send_due(db, client) == {"sent": 1, "pending": 0, "failed": 0}
    assert Hook.received == [{"text": "[dbflywheel] drift · latency: p < 0.001"}]
    assert db.execute("SELECT status, attempts, last_error FROM flywheel.alert_deliveries WHERE alert_id = %s",
                      (alert,)).fetchone() == ("sent", 2, None)


def test_a_webhook_that_never_answers_is_given_up(db: psycopg.Connection) -> None:
    name = f"dead_{uuid.uuid4().hex[:8]}"
    db.execute("UPDATE flywheel.alert_webhooks SET enabled = false")
    db.execute("SELECT flywheel.set_alert_webhook(%s, 'http://127.0.0.1:9/nothing-listens')", (name,))
    alert = db.execute("INSERT INTO flywheel.alerts (kind, subject, message) VALUES ('x', 'y', 'z') RETURNING id").fetchone()[0]  # type: ignore[index]
    with httpx.Client(timeout=2) as client:
        for _ in range(8):
            db.execute("UPDATE flywheel.alert_deliveries SET next_try = now() WHERE alert_id = %s", (alert,))
            webhooks.send_due(db, client)
    status, attempts, error = db.execute("SELECT status, attempts, last_error FROM flywheel.alert_deliveries"
                                         " WHERE alert_id = %s", (alert,)).fetchone()  # type: ignore[misc]
    assert (status, attempts) == ("failed", 8) and "ConnectError" in error


def test_a_bad_webhook_url_is_refused_in_one_line(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="must start with http"):
        db.execute("SELECT flywheel.set_alert_webhook('bad', 'file:///etc/passwd')")
