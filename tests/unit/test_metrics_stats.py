"""plpython/metrics_stats.py against scipy.stats: the database has numpy but not scipy."""

from __future__ import annotations

import math
import warnings

import metrics_stats as ms
import numpy as np
import pytest
import scipy.stats as st
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as strat


@pytest.mark.parametrize(
    ("m", "n", "shift"),
    [(1, 1, 0.0), (3, 8, 1.0), (5, 7, 0.5), (20, 20, 0.3), (37, 50, 0.2), (200, 300, 0.1), (1000, 800, 0.05),
     (2500, 2400, 0.05)],
)
def test_ks_matches_scipy_exact(m: int, n: int, shift: float) -> None:
    rng = np.random.default_rng(m * 1000 + n)
    a, b = rng.normal(0, 1, m), rng.normal(shift, 1, n)
    d, p = ms.ks_2samp(a, b)
    expected = st.ks_2samp(a, b)  # exact at these sizes
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)


def test_ks_with_ties_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 5, 60), rng.integers(0, 6, 45)
    d, p = ms.ks_2samp(a, b)
    expected = st.ks_2samp(a, b)
    assert (d, p) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue, rel=1e-6))


@pytest.mark.parametrize(("m", "n", "shift"), [(20000, 15000, 0.02), (12000, 100, 0.2), (30000, 30000, 0.01)])
def test_ks_large_samples_agree_with_scipy_asymptotic(m: int, n: int, shift: float) -> None:
    rng = np.random.default_rng(m + n)
    a, b = rng.normal(0, 1, m), rng.normal(shift, 1, n)
    d, p = ms.ks_2samp(a, b)
    expected = st.ks_2samp(a, b)
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, abs=2e-3)


@settings(max_examples=examples(60), deadline=None)
@given(strat.lists(strat.integers(-5, 5), min_size=1, max_size=30), strat.lists(strat.integers(-5, 5), min_size=1, max_size=30))
def test_ks_p_value_is_scipys_on_any_small_samples(a: list[int], b: list[int]) -> None:
    d, p = ms.ks_2samp(a, b)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = st.ks_2samp(a, b, method="exact")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    if caught:  # scipy gave up on its exact method and answered asymptotically
        assert 0 <= p <= 1
        return
    # scipy's series for equal sizes truncates at the smallest distance (D = 1/n, where the true
    # p-value is 1 and scipy says 0.99996); elsewhere the two agree to 1e-9.
    assert p == pytest.approx(expected.pvalue, abs=1e-4)


def test_ks_refuses_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        ms.ks_2samp([], [1.0])


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, 5000)
    assert ms.psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert ms.psi(ref, rng.normal(0, 1, 5000)) < 0.02
    assert 0.1 < ms.psi(ref, rng.normal(0.5, 1, 5000)) < 0.5
    assert ms.psi(ref, rng.normal(3, 1, 5000)) > 1.0


def test_psi_by_hand() -> None:
    # Two bins split at the reference median: shares 0.5/0.5 against 0.8/0.2.
    ref = [1, 2, 3, 4]
    cur = [1, 1, 1, 1, 4]
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert ms.psi(ref, cur, bins=2) == pytest.approx(expected)


def test_two_proportion_test_matches_the_textbook_z_test() -> None:
    result = ms.two_proportion_test(480, 1000, 530, 1000)
    pooled = 1010 / 2000
    z = 0.05 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert result["difference"] == pytest.approx(0.05)
    assert result["p_value"] == pytest.approx(2 * st.norm.sf(z))
    se = math.sqrt(0.48 * 0.52 / 1000 + 0.53 * 0.47 / 1000)
    assert result["ci_low"] == pytest.approx(0.05 - st.norm.ppf(0.975) * se, rel=1e-6)
    assert result["ci_high"] == pytest.approx(0.05 + st.norm.ppf(0.975) * se, rel=1e-6)


@pytest.mark.parametrize(("n_a", "n_b", "shift", "scale"), [(30, 40, 0.5, 2.0), (5, 9, 1.0, 0.3), (500, 200, 0.1, 1.0)])
def test_welch_matches_scipy(n_a: int, n_b: int, shift: float, scale: float) -> None:
    rng = np.random.default_rng(n_a)
    a, b = rng.normal(0, 1, n_a), rng.normal(shift, scale, n_b)
    result = ms.welch_test(n_a, a.mean(), a.var(ddof=1), n_b, b.mean(), b.var(ddof=1))
    expected = st.ttest_ind(b, a, equal_var=False)
    ci = expected.confidence_interval(0.95)
    assert result["p_value"] == pytest.approx(expected.pvalue, rel=1e-7)
    assert result["ci_low"] == pytest.approx(ci.low, rel=1e-6)
    assert result["ci_high"] == pytest.approx(ci.high, rel=1e-6)


def test_t_and_normal_tails_match_scipy() -> None:
    for df in (1, 2.5, 10, 300):
        for t in (-3.0, 0.0, 0.7, 4.0):
            assert ms.t_sf(t, df) == pytest.approx(st.t.sf(t, df), rel=1e-9, abs=1e-15)
    assert ms.normal_ppf(0.975) == pytest.approx(st.norm.ppf(0.975), rel=1e-9)


def test_tests_without_data_return_nothing() -> None:
    assert ms.two_proportion_test(0, 0, 3, 10)["p_value"] is None
    assert ms.welch_test(1, 1.0, 0.0, 10, 2.0, 1.0)["p_value"] is None
