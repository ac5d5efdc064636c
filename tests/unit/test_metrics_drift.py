"""plpython/metrics_drift.py under the stub plpy."""

from __future__ import annotations

import metrics_drift as md
import numpy as np
import pytest
from plpy_stub import StubPlpy


def test_projections_are_fixed_unit_directions() -> None:
    vectors = ["[1, 0, 0]", "[0, 2, 0]"]
    first, second = md.projections(vectors), md.projections(vectors)
    assert first.shape == (2, md.PROJECTIONS)
    assert np.array_equal(first, second)
    assert np.allclose(md.projections(["[2, 0, 0]"])[0], 2 * first[0])


def test_drift_of_a_column_feature_reads_both_ranges() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 300).tolist(), rng.normal(1, 1, 300).tolist()
    calls: list[str] = []

    class Plpy(StubPlpy):
        def execute(self, query, args=None, limit=0):  # type: ignore[no-untyped-def]
            calls.append(args[0] if args else "")
            return [{"x": v} for v in (ref if len(calls) == 1 else cur)]

    [row] = md.drift(Plpy(), "latency", "[2026-01-01,2026-01-02)", "[2026-01-02,2026-01-03)")
    assert calls == ["[2026-01-01,2026-01-02)", "[2026-01-02,2026-01-03)"]
    assert row["feature"] == "latency" and row["reference_n"] == row["current_n"] == 300
    assert row["ks_statistic"] > 0.3 and row["p_value"] < 1e-10 and row["psi"] > 0.25


def test_unknown_feature_is_refused_with_the_list() -> None:
    with pytest.raises(StubPlpy.SPIError, match="unknown feature 'colour'.*score:<validator>"):
        md.drift(StubPlpy(), "colour", "[,)", "[,)")


def test_embedding_without_vectors_in_range_compares_nothing() -> None:
    rows = md.drift(StubPlpy(), "embedding", "[,)", "[,)")
    assert [r["feature"] for r in rows] == [f"embedding:{i}" for i in range(md.PROJECTIONS)]
    assert all(r["reference_n"] == r["current_n"] == 0 and r["ks_statistic"] is None for r in rows)
