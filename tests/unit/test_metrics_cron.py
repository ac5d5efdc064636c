"""plpython/metrics_cron.py: when a pg_cron schedule last fired (refresh status and the loop)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import metrics_cron as mc
import pytest

AT = datetime(2026, 3, 18, 14, 37, 25, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("* * * * *", datetime(2026, 3, 18, 14, 37, tzinfo=UTC)),
        ("*/5 * * * *", datetime(2026, 3, 18, 14, 35, tzinfo=UTC)),
        ("0 * * * *", datetime(2026, 3, 18, 14, 0, tzinfo=UTC)),
        ("@hourly", datetime(2026, 3, 18, 14, 0, tzinfo=UTC)),
        ("45 * * * *", datetime(2026, 3, 18, 13, 45, tzinfo=UTC)),
        ("17 3 * * *", datetime(2026, 3, 18, 3, 17, tzinfo=UTC)),
        ("0 15 * * *", datetime(2026, 3, 17, 15, 0, tzinfo=UTC)),
        ("0 0 * * 0", datetime(2026, 3, 15, 0, 0, tzinfo=UTC)),  # Sunday
        ("0 0 * * 7", datetime(2026, 3, 15, 0, 0, tzinfo=UTC)),  # 7 is Sunday too
        ("@monthly", datetime(2026, 3, 1, 0, 0, tzinfo=UTC)),
        ("30 9 1,15 * *", datetime(2026, 3, 15, 9, 30, tzinfo=UTC)),
        ("0 9-17/4 * * 1-5", datetime(2026, 3, 18, 13, 0, tzinfo=UTC)),
        ("0 0 29 2 *", datetime(2024, 2, 29, 0, 0, tzinfo=UTC)),
        # day of month and day of week both restricted: either matches (cron's rule)
        ("0 0 1 * 1", datetime(2026, 3, 16, 0, 0, tzinfo=UTC)),
        ("30 seconds", datetime(2026, 3, 18, 14, 37, 0, tzinfo=UTC)),
        ("37 14 18 3 *", datetime(2026, 3, 18, 14, 37, tzinfo=UTC)),  # fires this very minute
    ],
)
def test_previous_fire(schedule: str, expected: datetime) -> None:
    assert mc.previous_fire(schedule, AT) == expected


@pytest.mark.parametrize("schedule", ["", "* * * *", "61 * * * *", "*/0 * * * *", "a b c d e", "5-1 * * * *", "0 0 31 2 *"])
def test_invalid_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(mc.ScheduleError):
        mc.previous_fire(schedule, AT)


def test_period() -> None:
    assert mc.period("*/5 * * * *", AT) == timedelta(minutes=5)
    assert mc.period("@daily", AT) == timedelta(days=1)
    assert mc.period("10 seconds", AT) == timedelta(seconds=10)


def test_sql_entry_points_take_and_return_epoch_seconds() -> None:
    from plpy_stub import StubPlpy

    plpy = StubPlpy()
    assert mc.sql_previous_fire(plpy, "0 * * * *", AT.timestamp()) == datetime(2026, 3, 18, 14, tzinfo=UTC).timestamp()
    assert mc.sql_period(plpy, "@hourly", AT.timestamp()) == 3600
    with pytest.raises(plpy.SPIError, match="invalid schedule"):
        mc.sql_previous_fire(plpy, "nope", AT.timestamp())
