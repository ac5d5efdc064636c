"""pg_cron schedules read without pg_cron: when a schedule last fired, so that staleness and
`dbflywheel refresh --loop` agree with what pg_cron would run.

Accepts what pg_cron accepts: five fields (minute hour day-of-month month day-of-week with
`*`, `a-b`, `*/n`, `a-b/n` and lists), the `@hourly`-style macros, and `N seconds`.
Times are UTC, as pg_cron's default `cron.timezone` is GMT.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_SECONDS = re.compile(r"^\s*([1-9]|[1-5][0-9])\s+seconds?\s*$", re.I)


class ScheduleError(ValueError):
    pass


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"bad step in {text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()):
                raise ScheduleError(f"bad range in {text!r}")
            start, end = int(a), int(b)
        elif part.isdigit():
            start = int(part)
            end = high if step > 1 else start
        else:
            raise ScheduleError(f"bad field {text!r}")
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ScheduleError(f"{text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def parse(schedule: str) -> tuple[int, list[set[int]], bool, bool]:
    """(seconds, fields, day-of-month restricted, day-of-week restricted); seconds > 0 for `N seconds`."""
    if m := _SECONDS.match(schedule):
        return int(m.group(1)), [], False, False
    text = _MACROS.get(schedule.strip().lower(), schedule)
    parts = text.split()
    if len(parts) != 5:
        raise ScheduleError(
            f"{schedule!r} is not a cron schedule (five fields, a macro such as @hourly, or 'N seconds')")
    fields = [_field(p, lo, hi) for p, (lo, hi) in zip(parts, _RANGES, strict=True)]
    if 7 in fields[4]:
        fields[4] = (fields[4] - {7}) | {0}
    # pg_cron (vixie cron's entry.c) calls a day field unrestricted when it starts with "*" (so
    # "*/2" too): then both day fields must match, else either one.
    return 0, fields, not parts[2].startswith("*"), not parts[4].startswith("*")


def _day_matches(day: datetime, fields: list[set[int]], dom_set: bool, dow_set: bool) -> bool:
    if day.month not in fields[3]:
        return False
    dom = day.day in fields[2]
    dow = (day.isoweekday() % 7) in fields[4]
    if dom_set and dow_set:  # cron: either restriction matches
        return dom or dow
    return dom and dow


def previous_fire(schedule: str, at: datetime) -> datetime:
    """The last time at or before `at` when the schedule fired."""
    at = at.astimezone(UTC)
    seconds, fields, dom_set, dow_set = parse(schedule)
    if seconds:
        epoch = int(at.timestamp())
        return datetime.fromtimestamp(epoch - epoch % seconds, UTC)
    minute = at.replace(second=0, microsecond=0)
    day = minute.replace(hour=0, minute=0)
    for _ in range(366 * 8 + 1):  # the sparsest schedule (29 February) fires within 8 years
        if _day_matches(day, fields, dom_set, dow_set):
            last = minute if day == minute.replace(hour=0, minute=0) else day.replace(hour=23, minute=59)
            for hour in sorted((h for h in fields[1] if h <= last.hour), reverse=True):
                limit = last.minute if hour == last.hour else 59
                minutes = [m for m in fields[0] if m <= limit]
                if minutes:
                    return day.replace(hour=hour, minute=max(minutes))
        day -= timedelta(days=1)
    raise ScheduleError(f"{schedule!r} never fires")


def period(schedule: str, at: datetime) -> timedelta:
    """The time between the last two firings before `at`: how often the schedule runs."""
    last = previous_fire(schedule, at)
    return last - previous_fire(schedule, last - timedelta(seconds=1))


def sql_previous_fire(plpy: Any, schedule: str, at_epoch: float) -> float:
    """For SQL: times cross as epoch seconds, so no text format is parsed."""
    try:
        return previous_fire(schedule, datetime.fromtimestamp(at_epoch, UTC)).timestamp()
    except ScheduleError as e:
        plpy.error(f"invalid schedule: {e}")
        raise


def sql_period(plpy: Any, schedule: str, at_epoch: float) -> float:
    try:
        return period(schedule, datetime.fromtimestamp(at_epoch, UTC)).total_seconds()
    except ScheduleError as e:
        plpy.error(f"invalid schedule: {e}")
        raise
