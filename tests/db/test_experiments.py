"""Experiments: deterministic weighted assignment, per-variant results with tests, canaries."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from metrics_helpers import add_result, add_trace, make_validator

pytestmark = pytest.mark.usefixtures("only_the_test_validators")


def _experiment(db: psycopg.Connection, variants: str) -> str:
    name = f"exp-{uuid.uuid4().hex[:8]}"
    db.execute("SELECT flywheel.create_experiment(%s, %s)", (name, variants))
    return name


def test_assignment_is_deterministic_and_matches_the_weights(db: psycopg.Connection) -> None:
    name = _experiment(db, '{"A": 0.9, "B": 0.1}')
    counts = dict(db.execute(
        "SELECT v, count(*) FROM (SELECT flywheel.assign_variant(%s, 'user-' || i) AS v"
        " FROM generate_series(1, 100000) i) x GROUP BY v", (name,)).fetchall())
    assert set(counts) == {"A", "B"}
    assert abs(counts["B"] / 100000 - 0.1) < 0.01
    again = db.execute("SELECT array_agg(flywheel.assign_variant(%s, 'user-' || i) ORDER BY i) FROM generate_series(1, 1000) i",
                       (name,)).fetchone()
    first = db.execute("SELECT array_agg(flywheel.assign_variant(%s, 'user-' || i) ORDER BY i) FROM generate_series(1, 1000) i",
                       (name,)).fetchone()
    assert again == first
    # Another experiment splits the same units independently.
    other = _experiment(db, '{"A": 0.5, "B": 0.5}')
    together = db.execute(
        "SELECT count(*) FILTER (WHERE flywheel.assign_variant(%s, i::text) = 'B' AND flywheel.assign_variant(%s, i::text) = 'B')"
        " FROM generate_series(1, 20000) i", (name, other)).fetchone()[0]  # type: ignore[index]
    assert abs(together / 20000 - 0.05) < 0.01


@pytest.mark.parametrize(
    ("variants", "message"),
    [('{"A": -1, "B": 2}', "weight must be a number >= 0"), ('{"A": "x"}', "weight must be a number"),
     ('[1, 2]', "must be an object"), ('{"A": 0}', "at least one weight")],
)
def test_bad_variants_are_refused(db: psycopg.Connection, variants: str, message: str) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match=message):
        db.execute("SELECT flywheel.create_experiment(%s, %s)", (f"bad-{uuid.uuid4().hex[:6]}", variants))


def test_weights_are_normalized_and_a_stopped_experiment_serves_its_baseline(db: psycopg.Connection) -> None:
    name = f"exp-{uuid.uuid4().hex[:8]}"
    assert db.execute("SELECT flywheel.create_experiment(%s, '{\"control\": 3, \"new\": 1}')", (name,)).fetchone() == (
        {"control": 0.75, "new": 0.25},)
    with pytest.raises(psycopg.errors.RaiseException, match="already exists"):
        db.execute("SELECT flywheel.create_experiment(%s, '{\"a\": 1}')", (name,))
    db.execute("SELECT flywheel.set_experiment_status(%s, 'stopped')", (name,))
    assigned = db.execute("SELECT DISTINCT flywheel.assign_variant(%s, i::text) FROM generate_series(1, 200) i", (name,)).fetchall()
    assert assigned == [("control",)]
    with pytest.raises(psycopg.errors.RaiseException, match="no experiment named"):
        db.execute("SELECT flywheel.assign_variant('nope-nope', 'u')")


def test_the_app_role_may_ask_for_variants(db: psycopg.Connection, dsn: str) -> None:
    from psycopg.conninfo import make_conninfo

    name = _experiment(db, '{"A": 0.5, "B": 0.5}')
    role = f"r_{uuid.uuid4().hex[:10]}"
    db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw' IN ROLE flywheel_app")
    try:
        with psycopg.connect(make_conninfo(dsn, user=role, password="pw"), autocommit=True) as app:
            got = app.execute("SELECT flywheel.assign_variant(%s, 'u1')", (name,)).fetchone()
            assert got == db.execute("SELECT flywheel.assign_variant(%s, 'u1')", (name,)).fetchone()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("SELECT * FROM flywheel.experiments")
    finally:
        db.execute(f"DROP ROLE {role}")


def test_results_compare_each_variant_with_the_baseline(db: psycopg.Connection, app_name: str) -> None:
    import math

    name = _experiment(db, '{"A": 0.5, "B": 0.5}')
    vid, _ = make_validator(db)
    meta = psycopg.types.json.Jsonb({"experiment": name})
    for variant, passes, latency in (("A", 80, 100.0), ("B", 60, 120.0)):
        for i in range(100):
            tid = add_trace(db, app_name, variant=variant, metadata=meta, latency_ms=latency + (i % 10))
            add_result(db, tid, vid, "pass" if i < passes else "fail")
    add_trace(db, app_name, variant="B", metadata=psycopg.types.json.Jsonb({"experiment": "another"}))  # not this one
    rows = {(r[0], r[1]): r for r in db.execute("SELECT * FROM flywheel.experiment_results(%s)", (name,)).fetchall()}
    base, pass_b = rows[("pass_rate", "A")], rows[("pass_rate", "B")]
    assert base[2:5] == (100, 0.8, "A") and base[5] is None
    assert pass_b[2:6] == (100, 0.6, "A", pytest.approx(-0.2))
    pooled = 0.7
    z = 0.2 / math.sqrt(pooled * (1 - pooled) * 2 / 100)
    assert pass_b[8] == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-6)
    assert pass_b[6] < -0.2 < pass_b[7] < 0 and pass_b[9] == "two-proportion z-test"
    latency_b = rows[("latency_ms", "B")]
    assert latency_b[5] == pytest.approx(20.0) and latency_b[8] < 1e-10 and latency_b[9] == "Welch's t-test"
    assert latency_b[6] < 20 < latency_b[7]


def test_a_canary_advances_while_it_holds_and_rolls_back_when_it_does_not(db: psycopg.Connection, app_name: str) -> None:
    vid, _ = make_validator(db)
    name = _experiment(db, '{"stable": 1, "canary": 0}')
    weights = db.execute("SELECT flywheel.start_canary(%s, 'canary', '{0.1,0.5,1}', 0.05, 20, '0 seconds')", (name,)).fetchone()
    assert weights == ({"stable": 0.9, "canary": 0.1},)
    meta = psycopg.types.json.Jsonb({"experiment": name})

    def traffic(canary_passes: int) -> list[tuple]:  # type: ignore[type-arg]
        for variant, passes in (("stable", 18), ("canary", canary_passes)):
            for i in range(20):
                add_result(db, add_trace(db, app_name, variant=variant, metadata=meta), vid, "pass" if i < passes else "fail")
        return [r for r in db.execute("SELECT * FROM flywheel.advance_canaries()").fetchall() if r[0] == name]

    steps = [r for r in db.execute("SELECT * FROM flywheel.advance_canaries()").fetchall() if r[0] == name]
    assert steps == [(name, "waiting", None, None)]  # no traffic yet
    assert traffic(18) == [(name, "advanced to 0.5", 0.9, 0.9)]
    assert db.execute("SELECT variants FROM flywheel.experiments WHERE name = %s", (name,)).fetchone() == (
        {"stable": 0.5, "canary": 0.5},)
    [(_, action, canary_rate, baseline_rate)] = traffic(10)  # 50% against 90%: rolled back
    assert (action, canary_rate, baseline_rate) == ("rolled_back", 0.5, 0.9)
    row = db.execute("SELECT status, variants FROM flywheel.experiments WHERE name = %s", (name,)).fetchone()
    assert row == ("rolled_back", {"stable": 1.0, "canary": 0.0})
    assert db.execute("SELECT count(*) FROM flywheel.alerts WHERE kind = 'canary' AND subject = %s", (name,)).fetchone() == (1,)
    assert db.execute("SELECT DISTINCT flywheel.assign_variant(%s, i::text) FROM generate_series(1, 100) i", (name,)).fetchall() == [
        ("stable",)]
