"""Uncertainty of the numbers vitbench prints: intervals, paired tests, multiple-comparison corrections.

Every function is pure (numbers in, numbers out) and needs only the standard library and numpy.

- Proportions of independent samples (accuracies): the Wilson score interval (default) or the exact
  Clopper-Pearson interval.
- Other metrics (ECE, mCE, flip probability, loss gap, ...): a percentile bootstrap over examples, seeded.
- Two models on the same examples: the exact McNemar test on the discordant pairs and Newcombe's hybrid score
  interval for the paired difference of proportions (Newcombe 1998, method 10); Holm's step-down correction
  when several adjacent pairs are tested.
- Optional stopping (``--until-ci``): Clopper-Pearson at level 1 - alpha / K for K planned looks (a Bonferroni
  split), valid whichever look the run stops at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist

import numpy as np

LEVEL = 0.95
METHODS = ("wilson", "clopper-pearson")
Interval = tuple[float, float]


def z_value(level: float = LEVEL) -> float:
    """The two-sided normal quantile for a confidence level (1.959964 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson(k: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson score interval for k successes out of n (nan, nan for n = 0)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = z_value(level)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> Interval:
    """The exact (Clopper-Pearson) interval: beta quantiles of the binomial's conjugate."""
    if n <= 0:
        return (math.nan, math.nan)
    alpha = 1 - level
    lo = 0.0 if k == 0 else beta_ppf(alpha / 2, k, n - k + 1)
    hi = 1.0 if k == n else beta_ppf(1 - alpha / 2, k + 1, n - k)
    return (lo, hi)


def proportion_ci(k: int, n: int, method: str = "wilson", level: float = LEVEL) -> Interval:
    """The interval of a proportion by name: ``wilson`` or ``clopper-pearson``.

    Raises:
        ValueError: for another method name.
    """
    if method == "wilson":
        return wilson(k, n, level)
    if method == "clopper-pearson":
        return clopper_pearson(k, n, level)
    raise ValueError(f"interval method {method!r} is not one of {', '.join(METHODS)}")


# -- the regularised incomplete beta function and its inverse ---------------------------------------------

def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1 - math.exp(log_front) * _beta_cf(b, a, 1 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """The q-quantile of Beta(a, b), by bisection on :func:`betainc` (to about 1e-12)."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return (lo + hi) / 2


# -- bootstrap --------------------------------------------------------------------------------------------

def bootstrap_ci(n: int, statistic: Callable[[np.ndarray], float], *, resamples: int = 1000, seed: int = 0,
                 level: float = LEVEL) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over n examples resampled with replacement.

    Args:
        n: number of examples (or sequences).
        statistic: maps an index array of length n (a resample of ``range(n)``) to the metric's value.
        resamples: number of bootstrap resamples; seeded by ``seed``, so the interval is reproducible.
    """
    if n <= 0 or resamples <= 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)], dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return (math.nan, math.nan)
    alpha = 1 - level
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def bootstrap_cis(n: int, statistic: Callable[[np.ndarray], Mapping[str, float]], keys: Sequence[str], *,
                  resamples: int = 1000, seed: int = 0, level: float = LEVEL) -> dict[str, Interval]:
    """Percentile bootstrap intervals of several metrics at once: ``statistic`` maps one resample of
    ``range(n)`` to every metric's value (e.g. a suite's aggregation of the resampled records)."""
    if n <= 0 or resamples <= 0 or not keys:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(resamples):
        values = statistic(rng.integers(0, n, n))
        for k in keys:
            v = values.get(k, math.nan)
            if v is not None and math.isfinite(v):
                draws[k].append(float(v))
    alpha = 1 - level
    out = {}
    for k, values in draws.items():
        if values:
            lo, hi = np.quantile(np.asarray(values), [alpha / 2, 1 - alpha / 2])
            out[k] = (float(lo), float(hi))
    return out


# -- paired comparisons -----------------------------------------------------------------------------------

def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (a binomial test of b among b + c at 1/2)."""
    m = b + c
    if m == 0:
        return 1.0
    k = min(b, c)
    log_terms = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2)
                 for i in range(k + 1)]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return min(1.0, 2 * tail)


def paired_difference_ci(both: int, only_a: int, only_b: int, neither: int, level: float = LEVEL) -> Interval:
    """Newcombe's hybrid score interval (1998, method 10) for p_a - p_b on paired binary outcomes.

    Args:
        both, only_a, only_b, neither: counts of examples right for both models, only model A, only model B, none.
    """
    n = both + only_a + only_b + neither
    if n == 0:
        return (math.nan, math.nan)
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = wilson(both + only_a, n, level)
    l2, u2 = wilson(both + only_b, n, level)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins > 0 else 0.0
    d_lo = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    d_hi = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return (max(-1.0, diff - d_lo), min(1.0, diff + d_hi))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def sequential_ci(k: int, n: int, looks: int, level: float = LEVEL) -> Interval:
    """An interval valid at any of ``looks`` planned looks (Bonferroni: Clopper-Pearson at 1 - alpha / looks)."""
    return clopper_pearson(k, n, 1 - (1 - level) / max(1, looks))


def overlap(a: Interval, b: Interval) -> bool:
    """Whether two intervals overlap."""
    return a[0] <= b[1] and b[0] <= a[1]
