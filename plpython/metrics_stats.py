"""Statistics for drift and experiments: the two-sample Kolmogorov-Smirnov test (scipy.stats), the
population stability index, the two-proportion z-test and Welch's t-test (their distributions from
scipy.special). tests/unit/test_metrics_stats.py checks them against scipy.stats' own tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided two-sample KS test: (statistic, p-value), exact while both samples have at most
    10,000 values (scipy's method='auto'). scipy.stats is imported on the first call only: it
    costs about 0.8 s per database session, which experiments never pay."""
    from scipy import stats

    if len(a) == 0 or len(b) == 0:
        raise ValueError("ks_2samp needs two non-empty samples")
    result = stats.ks_2samp(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    return float(result.statistic), float(result.pvalue)


def psi(reference: Sequence[float], current: Sequence[float], bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins (0.1: watch, 0.25: drifted)."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        raise ValueError("psi needs two non-empty samples")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1))[1:-1])
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    cur_share = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    ref_share, cur_share = np.clip(ref_share, 1e-4, None), np.clip(cur_share, 1e-4, None)  # empty bins
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def normal_sf(z: float) -> float:
    return float(special.ndtr(-z))


def normal_ppf(p: float) -> float:
    """Inverse of the standard normal CDF."""
    return float(special.ndtri(p))


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom."""
    return float(special.stdtr(df, -t))


def t_ppf(p: float, df: float) -> float:
    return float(special.stdtrit(df, p))


def two_proportion_test(x_a: int, n_a: int, x_b: int, n_b: int, confidence: float = 0.95) -> dict[str, float | None]:
    """B's rate minus A's: the difference, its (unpooled) Wald interval and the pooled z-test's p-value."""
    if n_a == 0 or n_b == 0:
        return {"difference": None, "ci_low": None, "ci_high": None, "p_value": None}
    p_a, p_b = x_a / n_a, x_b / n_b
    diff = p_b - p_a
    pooled = (x_a + x_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p_value = 1.0 if se_pooled == 0 else 2 * normal_sf(abs(diff) / se_pooled)
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    z = normal_ppf(1 - (1 - confidence) / 2)
    return {"difference": diff, "ci_low": diff - z * se, "ci_high": diff + z * se, "p_value": p_value}


def welch_test(n_a: int, mean_a: float, var_a: float, n_b: int, mean_b: float, var_b: float,
               confidence: float = 0.95) -> dict[str, float | None]:
    """B's mean minus A's: Welch's t-test (unequal variances) with its interval; var is the sample variance."""
    if n_a < 2 or n_b < 2:
        return {"difference": None, "ci_low": None, "ci_high": None, "p_value": None}
    diff = mean_b - mean_a
    va, vb = var_a / n_a, var_b / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return {"difference": diff, "ci_low": diff, "ci_high": diff, "p_value": 1.0 if diff == 0 else 0.0}
    df = (va + vb) ** 2 / (va * va / (n_a - 1) + vb * vb / (n_b - 1))
    p_value = 2 * t_sf(abs(diff) / se, df)
    t = t_ppf(1 - (1 - confidence) / 2, df)
    return {"difference": diff, "ci_low": diff - t * se, "ci_high": diff + t * se, "p_value": min(1.0, p_value)}
