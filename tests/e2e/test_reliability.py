"""The reliability suite: load with and without faults (tests/reliability_load.py), generated
validator configs and generated SQL (hypothesis), and what an application role can reach.

Fast versions run in `make test`; the long ones (`@pytest.mark.slow`) in `make soak`. Each load
test writes its counts to tests/reliability_counts.json, which
scripts/reliability_report.py renders into BENCHMARKS.md.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fake_openai import FakeOpenAI
from reliability_load import check_load, record, run_load

OPENAI_JUDGE = {"provider": "openai", "model": "fake-judge", "max_attempts": 3, "retry_base_seconds": 0.05,
                "timeout_seconds": 0.5}


def _clean_load(dsn: str, app: str, seconds: float, section: str) -> None:
    out = run_load(dsn, app, seconds=seconds, writers=4, workers=2)
    with psycopg.connect(dsn, autocommit=True) as db:
        counts = check_load(db, app, out)
    assert out["worker_exits"] == [0, 0], out["worker_stderr"]
    record(section, counts)


def _faulty_load(dsn: str, app: str, cluster: Any, seconds: float, fault_every: float, section: str) -> None:
    with FakeOpenAI(delay=0.02, slow_seconds=1.0) as server:
        out = run_load(dsn, app, seconds=seconds, writers=4, workers=2, faults=True, cluster=cluster,
                       judge={**OPENAI_JUDGE, "base_url": server.url}, fault_every=fault_every)
        failures = dict(server.failures)
    with psycopg.connect(dsn, autocommit=True) as db:
        counts = check_load(db, app, out, dead_marker="FAIL:500*99")
    exits = out["worker_exits"]
    assert exits.count(-9) == out["worker_kills"] >= 1 and exits.count(0) == len(exits) - out["worker_kills"], \
        out["worker_stderr"]
    assert counts["validator_errors"] > 0 and counts["dead_letters"] > 0
    assert {"500", "malformed", "notverdict", "timeout", "429"} <= set(failures), failures
    if cluster is not None:
        assert counts["postgres_restarts"] >= 1 and counts["writer_reconnects"] > 0
    record(section, counts | {"provider_failures": sum(failures.values())})


def test_load_adds_up(dsn: str, app_name: str) -> None:
    _clean_load(dsn, app_name, 12, "load")


def test_load_adds_up_through_faults(dsn: str, app_name: str, cluster: Any) -> None:
    _faulty_load(dsn, app_name, cluster, 21, 7, "load with faults")


@pytest.mark.slow
def test_soak_load(dsn: str, app_name: str) -> None:
    _clean_load(dsn, app_name, 180, "soak")


@pytest.mark.slow
def test_soak_load_through_faults(dsn: str, app_name: str, cluster: Any) -> None:
    _faulty_load(dsn, app_name, cluster, 240, 20, "soak with faults")
