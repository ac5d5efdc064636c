"""The hand-written copies that stay (ARCHITECTURE.md, "Libraries instead of copies") against the
libraries that could replace them, on the same inputs: where they differ, which one is right."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import evalica
import metrics_cron
import pytest
from croniter import croniter
from judges_ranking import bradley_terry


def _random_field(rng: random.Random, low: int, high: int) -> str:
    r = rng.random()
    if r < 0.3:
        return "*"
    if r < 0.45:
        return f"*/{rng.randint(2, 5)}"
    if r < 0.6:
        a = rng.randint(low, high)
        return f"{a}-{rng.randint(a, high)}"
    if r < 0.75:
        return ",".join(str(rng.randint(low, high)) for _ in range(2))
    return str(rng.randint(low, high))


def _schedules(seed: int, n: int) -> list[tuple[str, datetime]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        fields = [_random_field(rng, lo, hi) for lo, hi in [(0, 59), (0, 23), (1, 28), (1, 12), (0, 6)]]
        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 1440 * 700), seconds=7)
        out.append((" ".join(fields), at))
    return out


def _pg_cron_day(schedule: str, day: datetime) -> bool:
    """pg_cron's day rule (src/entry.c and cron.c of vixie cron): a day field that starts with '*'
    is unrestricted; when both are restricted, either may match."""
    _, fields, dom_restricted, dow_restricted = metrics_cron.parse(schedule)
    dom, dow = day.day in fields[2], (day.isoweekday() % 7) in fields[4]
    return day.month in fields[3] and ((dom or dow) if dom_restricted and dow_restricted else (dom and dow))


def _pg_cron_fires(schedule: str, minute: datetime) -> bool:
    _, fields, _, _ = metrics_cron.parse(schedule)
    return minute.minute in fields[0] and minute.hour in fields[1] and _pg_cron_day(schedule, minute)


def _oracle_previous_fire(schedule: str, at: datetime) -> datetime:
    """Walks back minute by minute (a whole day at once where the day does not fire)."""
    minute = at.replace(second=0, microsecond=0)
    while not _pg_cron_fires(schedule, minute):
        if _pg_cron_day(schedule, minute):
            minute -= timedelta(minutes=1)
        else:
            minute = minute.replace(hour=0, minute=0) - timedelta(minutes=1)
    return minute


def test_the_cron_copy_is_pg_crons_rule() -> None:
    for schedule, at in _schedules(18, 150):
        assert metrics_cron.previous_fire(schedule, at) == _oracle_previous_fire(schedule, at), schedule


def test_a_day_field_starting_with_a_star_is_unrestricted_as_in_pg_cron() -> None:
    # 13th of the month AND a Sunday, Wednesday or Saturday: '*/3' counts as '*' for the day rule.
    at = datetime(2026, 4, 24, 4, 4, 50, tzinfo=UTC)
    assert metrics_cron.previous_fire("44 * 13 * */3", at) == datetime(2025, 12, 13, 23, 44, tzinfo=UTC)


def test_where_croniter_and_the_copy_differ_the_copy_is_right() -> None:
    """The same schedules and times through both: they agree on most, and on every one where they
    do not, the copy's firing is pg_cron's and croniter's is not (ARCHITECTURE.md has the count)."""
    cases = _schedules(5, 300)
    differ = 0
    for schedule, at in cases:
        ours = metrics_cron.previous_fire(schedule, at)
        theirs = croniter(schedule, at, implement_cron_bug=True).get_prev(datetime)
        if theirs != ours:
            differ += 1
            assert ours == _oracle_previous_fire(schedule, at), schedule
    assert 0 < differ < len(cases) / 2


@pytest.mark.parametrize(("schedule", "at"), [
    ("* 5 10 */3 5-5", datetime(2026, 5, 22, 2, 32, 58, tzinfo=UTC)),
    ("47-51 13-13 */4 5-7 0-5", datetime(2027, 4, 28, 21, 4, 43, tzinfo=UTC)),
])
def test_croniter_misses_where_the_copy_is_right(schedule: str, at: datetime) -> None:
    """Why the copy stays: croniter 7.0.0's get_prev answers a time that never fires (a Thursday for
    `5-5`, 23:51 for hour 13). If a croniter release fixes these, reconsider."""
    ours = metrics_cron.previous_fire(schedule, at)
    assert ours == _oracle_previous_fire(schedule, at)
    theirs = croniter(schedule, at, implement_cron_bug=True).get_prev(datetime)
    assert theirs != ours and not _pg_cron_fires(schedule, theirs)


def test_bradley_terry_copy_matches_evalica() -> None:
    rng = random.Random(18)
    strength = {"m1": 4.0, "m2": 2.0, "m3": 1.0, "m4": 0.5, "m5": 0.25}
    xs, ys, winners, comparisons = [], [], [], []
    for _ in range(600):
        x, y = rng.sample(sorted(strength), 2)
        r = rng.random()
        p = strength[x] / (strength[x] + strength[y])
        w = "tie" if r < 0.1 else ("a" if r < 0.1 + 0.9 * p else "b")
        comparisons.append((x, y, w))
        xs.append(x)
        ys.append(y)
        winners.append({"a": evalica.Winner.X, "b": evalica.Winner.Y, "tie": evalica.Winner.Draw}[w])
    ours = bradley_terry(comparisons)
    result = evalica.bradley_terry(xs, ys, winners, tolerance=1e-12, limit=100_000)
    theirs = (result.scores / result.scores.sum()).to_dict()
    assert set(theirs) == set(ours)
    for name in ours:
        assert ours[name] == pytest.approx(theirs[name], rel=1e-6), name
