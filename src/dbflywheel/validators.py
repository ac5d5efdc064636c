"""The CLI's view of the validator registry: list validators with their recent verdicts, revalidate one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg

from dbflywheel.errors import FlywheelError
from dbflywheel.install import connect

LIST_QUERY = """
SELECT v.name, v.kind, v.mode, v.version, v.enabled, v.sample_rate,
       count(r.*) AS results,
       count(r.*) FILTER (WHERE r.status = 'fail') AS failed,
       count(r.*) FILTER (WHERE r.status = 'error') AS errors
FROM flywheel.validators v
LEFT JOIN flywheel.validation_results r
       ON r.validator_id = v.id AND r.validator_version = v.version AND r.created_at > now() - interval '1 day'
GROUP BY v.id ORDER BY v.name
"""


def list_validators(dsn: str) -> list[dict[str, Any]]:
    with connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return list(cur.execute(LIST_QUERY))


def revalidate(dsn: str, name: str, since: datetime | None, progress: Callable[[str], None]) -> int:
    """Run flywheel.revalidate(), passing each progress NOTICE to `progress`; returns traces seen."""
    with connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: progress(d.message_primary or ""))
        try:
            row = conn.execute("SELECT flywheel.revalidate(%s, %s)", (name, since)).fetchone()
        except psycopg.errors.RaiseException as e:
            raise FlywheelError(e.diag.message_primary or str(e)) from None
    return int(row[0]) if row else 0
