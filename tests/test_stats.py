"""Golden tests for the intervals and tests of vitbench.stats: against scipy, published values and simulation."""

import math

import numpy as np
import pytest

from vitbench import stats

scipy_stats = pytest.importorskip("scipy.stats")

CASES = [(0, 10), (1, 10), (5, 10), (10, 10), (73, 100), (2924, 5000), (601, 1000), (1, 1), (0, 1), (4999, 5000)]


@pytest.mark.parametrize("k, n", CASES)
def test_wilson_equals_scipy(k, n):
    ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert stats.wilson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)


@pytest.mark.parametrize("k, n", CASES)
def test_clopper_pearson_equals_scipy(k, n):
    ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert stats.clopper_pearson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)


@pytest.mark.parametrize("level", [0.9, 0.99])
def test_other_levels(level):
    ref = scipy_stats.binomtest(37, 80).proportion_ci(confidence_level=level, method="exact")
    assert stats.clopper_pearson(37, 80, level) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_the_half_width_quoted_for_a_thousand_images():
    """ARES-style 1,000-image AutoAttack numbers near 60% carry about +-3 points (the uncertainty issue's figure)."""
    lo, hi = stats.wilson(601, 1000)
    assert (hi - lo) / 2 == pytest.approx(0.0303, abs=0.0005)


def test_published_wilson_value():
    """Newcombe (1998), Table I: 81 of 263 -> Wilson 0.2553 to 0.3662."""
    assert stats.wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)


@pytest.mark.parametrize("n, p", [(100, 0.3), (500, 0.73), (1000, 0.5)])
def test_wilson_coverage_is_near_95_percent(n, p):
    rng = np.random.default_rng(1234)
    draws = rng.binomial(n, p, size=4000)
    covered = np.mean([lo <= p <= hi for lo, hi in (stats.wilson(int(k), n) for k in draws)])
    assert 0.93 <= covered <= 0.97


def test_bootstrap_shrinks_as_one_over_sqrt_n():
    rng = np.random.default_rng(0)
    widths = {}
    for n in (100, 400, 1600):
        values = rng.normal(size=n)
        lo, hi = stats.bootstrap_ci(n, lambda idx, v=values: float(v[idx].mean()), resamples=2000, seed=1)
        widths[n] = hi - lo
    assert widths[100] / widths[400] == pytest.approx(2.0, rel=0.15)
    assert widths[400] / widths[1600] == pytest.approx(2.0, rel=0.15)
    assert widths[400] == pytest.approx(2 * 1.96 / math.sqrt(400), rel=0.15)  # the normal theory width


def test_bootstrap_is_seeded():
    values = np.arange(50, dtype=float)
    one = stats.bootstrap_ci(50, lambda idx: float(values[idx].mean()), seed=3)
    assert one == stats.bootstrap_ci(50, lambda idx: float(values[idx].mean()), seed=3)
    assert one != stats.bootstrap_ci(50, lambda idx: float(values[idx].mean()), seed=4)


@pytest.mark.parametrize("b, c", [(0, 0), (3, 9), (10, 10), (1, 25), (120, 80), (400, 460)])
def test_mcnemar_exact_equals_a_binomial_test(b, c):
    ref = 1.0 if b + c == 0 else scipy_stats.binomtest(b, b + c, 0.5).pvalue
    assert stats.mcnemar_exact(b, c) == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_pairing_narrows_the_interval_of_correlated_outcomes():
    """Two models right on mostly the same examples: the paired interval is much narrower than the interval for
    two independent samples with the same accuracies (phi = 0), and both contain the observed difference."""
    paired = stats.paired_difference_ci(700, 40, 20, 240)
    lo1, hi1 = stats.wilson(740, 1000)
    lo2, hi2 = stats.wilson(720, 1000)
    diff = 0.02
    independent = (diff - math.hypot(0.74 - lo1, hi2 - 0.72), diff + math.hypot(hi1 - 0.74, 0.72 - lo2))
    assert paired[0] < diff < paired[1]
    assert (paired[1] - paired[0]) < 0.5 * (independent[1] - independent[0])


def test_paired_difference_coverage():
    rng = np.random.default_rng(7)
    n, probs = 300, np.array([0.55, 0.10, 0.05, 0.30])  # both, only A, only B, neither
    truth = probs[1] - probs[2]
    covered = []
    for _ in range(3000):
        counts = rng.multinomial(n, probs)
        lo, hi = stats.paired_difference_ci(*map(int, counts))
        covered.append(lo <= truth <= hi)
    assert 0.93 <= np.mean(covered) <= 0.97


def test_holm_adjustment():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([]) == []


def test_sequential_interval_is_wider_and_valid_under_optional_stopping():
    """Stopping at the first of 10 looks whose interval is narrow enough still covers the truth >= 95%."""
    assert stats.sequential_ci(60, 100, 10)[0] < stats.clopper_pearson(60, 100)[0]
    rng = np.random.default_rng(11)
    p, chunk, looks, misses = 0.6, 50, 10, 0
    for _ in range(1000):
        outcomes = rng.random(chunk * looks) < p
        for look in range(1, looks + 1):
            k, n = int(outcomes[:look * chunk].sum()), look * chunk
            lo, hi = stats.sequential_ci(k, n, looks)
            if (hi - lo) / 2 < 0.08 or look == looks:
                misses += not lo <= p <= hi
                break
    assert misses / 1000 <= 0.05
