"""Bradley-Terry by the MM algorithm against a maximum-likelihood fit by scipy."""

from __future__ import annotations

import random

import numpy as np
from judges_ranking import bradley_terry, rankings
from scipy.optimize import minimize


def mle_scores(comparisons: list[tuple[str, str, str]]) -> dict[str, float]:
    """Maximises the Bradley-Terry likelihood directly (ties as half a win each)."""
    names = sorted({n for x, y, _ in comparisons for n in (x, y)})
    index = {n: i for i, n in enumerate(names)}
    weights = [(index[x], index[y], {"a": 1.0, "b": 0.0, "tie": 0.5}[w]) for x, y, w in comparisons]

    def negative_log_likelihood(theta: np.ndarray) -> float:
        total = 0.0
        for i, j, w in weights:
            d = theta[i] - theta[j]
            total += w * np.logaddexp(0, -d) + (1 - w) * np.logaddexp(0, d)
        return total

    theta = minimize(negative_log_likelihood, np.zeros(len(names)), method="BFGS", options={"gtol": 1e-9}).x
    p = np.exp(theta - theta.max())
    p /= p.sum()
    return {n: float(p[index[n]]) for n in names}


def test_mm_matches_the_maximum_likelihood_fit() -> None:
    rng = random.Random(7)
    strength = {"m1": 4.0, "m2": 2.0, "m3": 1.0, "m4": 0.5}
    comparisons = []
    for _ in range(400):
        x, y = rng.sample(sorted(strength), 2)
        r = rng.random()
        p = strength[x] / (strength[x] + strength[y])
        comparisons.append((x, y, "tie" if r < 0.1 else ("a" if r < 0.1 + 0.9 * p else "b")))
    ours, reference = bradley_terry(comparisons), mle_scores(comparisons)
    for name in strength:
        assert abs(ours[name] - reference[name]) < 1e-4
    assert sorted(ours, key=ours.__getitem__, reverse=True) == ["m1", "m2", "m3", "m4"]


def test_rankings_split_by_source_and_dimension_and_count_results() -> None:
    row = {"app": "x", "source": "human", "prompt_version_a": "v1", "prompt_version_b": "v1",
           "variant_a": None, "variant_b": None}
    rows = [{**row, "model_a": "big", "model_b": "small", "winner": w} for w in ("a", "a", "tie", "b")]
    rows.append({**row, "source": "judge", "model_a": "big", "model_b": "small", "winner": "b"})
    out = list(rankings(rows))
    human = [r for r in out if r["source"] == "human"]
    assert [(r["name"], r["rank"], r["wins"], r["losses"], r["ties"]) for r in human] == [
        ("big", 1, 2, 1, 1), ("small", 2, 1, 2, 1)]
    assert {r["dimension"] for r in out} == {"model"}  # equal prompt versions compare nothing
    judge = [r for r in out if r["source"] == "judge"]
    assert [r["name"] for r in judge] == ["small", "big"] and judge[1]["score"] < 1e-6


def test_a_ranking_keeps_the_most_compared_names_only() -> None:
    rows = [{"app": "x", "source": "human", "winner": "a", "model_a": None, "model_b": None,
             "prompt_version_a": None, "prompt_version_b": None, "variant_a": f"v{i}", "variant_b": f"v{i + d}"}
            for i in range(400) for d in (1, 7, 31)]
    out = list(rankings(rows))
    assert len(out) == 100
    kept = {n["name"] for n in rankings(rows, max_names=3)}
    assert list(rankings(rows, max_names=3)) == list(rankings(
        [r for r in rows if {r["variant_a"], r["variant_b"]} <= kept]))
