"""Posts the database's alerts to their webhooks (sql/640-alert-webhooks.sql), with retries.

The payload is Slack's incoming-webhook JSON ({"text": ...}), which Mattermost, Discord's
/slack endpoint, Teams workflows and most chat tools also take."""

from __future__ import annotations

import time

import httpx
import psycopg


def payload(kind: str, subject: str, message: str) -> dict[str, str]:
    return {"text": f"[dbflywheel] {kind} · {subject}: {message}"}


def send_due(conn: psycopg.Connection, client: httpx.Client, batch: int = 50) -> dict[str, int]:
    """One pass: posts every due delivery once and records the outcome. Returns counts by new status."""
    counts = {"sent": 0, "pending": 0, "failed": 0}
    with conn.transaction():
        due = conn.execute("SELECT alert_id, webhook, url, kind, subject, message"
                           " FROM flywheel.due_alert_deliveries(%s)", (batch,)).fetchall()
        for alert_id, webhook, url, kind, subject, message in due:
            error = None
            try:
                response = client.post(url, json=payload(kind, subject, message))
                if response.status_code >= 300:
                    error = f"HTTP {response.status_code}"
            except httpx.HTTPError as e:
                error = f"{type(e).__name__}: {e}"
            status = conn.execute("SELECT flywheel.record_alert_delivery(%s, %s, %s, %s)",
                                  (alert_id, webhook, error is None, error)).fetchone()[0]  # type: ignore[index]
            counts[status] += 1
    return counts


def run(dsn: str, *, watch: float | None = None) -> dict[str, int]:
    """Sends what is due; with `watch`, keeps going every `watch` seconds until interrupted."""
    total = {"sent": 0, "pending": 0, "failed": 0}
    with psycopg.connect(dsn, autocommit=True, application_name="dbflywheel send-alerts") as conn, \
            httpx.Client(timeout=10, follow_redirects=False) as client:
        while True:
            for k, v in send_due(conn, client).items():
                total[k] += v
            if watch is None:
                return total
            time.sleep(watch)
