"""Statistics for drift and experiments with numpy only (PL/Python has no scipy): the two-sample
Kolmogorov-Smirnov test, the population stability index, the two-proportion z-test and
Welch's t-test. tests/unit/test_metrics_stats.py checks them against scipy.stats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# scipy.stats.ks_2samp(method='auto') is exact while both samples have at most this many values.
EXACT_KS_MAX_N = 10000


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """The largest distance between the two empirical CDFs (ties handled as scipy does)."""
    x, y = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    both = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, both, side="right") / len(x)
    cdf_y = np.searchsorted(y, both, side="right") / len(y)
    return float(np.max(np.abs(cdf_x - cdf_y)))


def _ks_exact_p(m: int, n: int, d: float) -> float:
    """P(D >= d) under H0 by walking the lattice of paths from (0,0) to (m,n) one anti-diagonal at
    a time; a cell holds the probability that a uniformly random path reaches it without having
    left the band |i/m - j/n| < d. Integer arithmetic on the lcm grid keeps ties exact."""
    g = math.gcd(m, n)
    lcm = m // g * n
    h = round(d * lcm)  # the statistic is a multiple of 1/lcm
    if h == 0:
        return 1.0
    step_i, step_j = lcm // m, lcm // n
    inside = np.array([1.0])  # diagonal k = 0: the cell (0, 0)
    for k in range(1, m + n + 1):
        lo, hi = max(0, k - n), min(k, m)  # i on this diagonal; j = k - i
        i = np.arange(lo, hi + 1)
        prev_lo = max(0, k - 1 - n)
        cur = np.zeros(len(i))
        # from (i-1, j): a step in the first sample, probability i/k of all paths through (i, j)
        from_up = i - 1 - prev_lo
        ok = (i >= 1) & (from_up >= 0) & (from_up < len(inside))
        cur[ok] += inside[from_up[ok]] * (i[ok] / k)
        from_left = i - prev_lo
        ok = (from_left >= 0) & (from_left < len(inside)) & (k - i >= 1)
        cur[ok] += inside[from_left[ok]] * ((k - i[ok]) / k)
        cur[np.abs(i * step_i - (k - i) * step_j) >= h] = 0.0
        inside = cur
    return float(min(1.0, max(0.0, 1.0 - inside[-1])))


def _kolmogorov_sf(x: float) -> float:
    """P(K > x) for the limiting Kolmogorov distribution."""
    if x < 0.2:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * x * x) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2 * total)))


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided two-sample KS test: (statistic, p-value). Exact for samples of up to 10,000
    values, as scipy's default; beyond, the Kolmogorov limit with Stephens' small-sample
    correction (scipy uses the finite-n Kolmogorov distribution there; they agree to ~1e-3)."""
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        raise ValueError("ks_2samp needs two non-empty samples")
    d = ks_statistic(a, b)
    if max(m, n) <= EXACT_KS_MAX_N:
        return d, _ks_exact_p(m, n, d)
    en = m * n / (m + n)
    return d, _kolmogorov_sf((math.sqrt(en) + 0.12 + 0.11 / math.sqrt(en)) * d)


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
    return 0.5 * math.erfc(z / math.sqrt(2))


def normal_ppf(p: float) -> float:
    """Inverse of the standard normal CDF, by bisection (enough for confidence intervals)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1 - normal_sf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        even = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1 - tail


def t_ppf(p: float, df: float) -> float:
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1 - t_sf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


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
