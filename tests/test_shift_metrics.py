"""Golden values for the distribution-shift formulas: mCE / relative mCE, flip probability, top-5 distance."""

import pytest
import torch

from vitbench.suites.corruptions import CorruptionsConfig, alexnet_errors, corruption_metrics
from vitbench.suites.perturbations import PerturbationsConfig, PerturbationsSuite, flip_probability, top5_distance


def test_alexnet_constants_match_the_paper():
    clean, errors = alexnet_errors()
    assert clean == 0.4348 and len(errors) == 15
    assert errors["gaussian_noise"] == (0.69528, 0.82542, 0.93554, 0.98138, 0.99452)
    means = {c: sum(v) / 5 for c, v in errors.items()}
    assert means["brightness"] == pytest.approx(0.564592) and means["elastic_transform"] == pytest.approx(0.646056)


def _records_with_errors(err: dict, clean_err: float, n: int = 1000) -> list:
    """n samples whose error at each (corruption, severity) is exactly err[c][s-1] (multiples of 1/n)."""
    out = []
    for i in range(n):
        out.append({"clean": i >= round(clean_err * n),
                    "c": {c: [i >= round(e * n) for e in row] for c, row in err.items()}})
    return out


def test_mce_of_alexnet_itself_is_one():
    clean, errors = alexnet_errors()
    config = CorruptionsConfig(kind="imagenet-c")
    rounded = {c: [round(e, 3) for e in v] for c, v in errors.items()}
    metrics = corruption_metrics(_records_with_errors(rounded, round(clean, 3)), config)
    assert metrics["mce"].value == pytest.approx(1.0, abs=2e-3)
    assert metrics["relative_mce"].value == pytest.approx(1.0, abs=5e-3)
    assert not metrics["mce"].higher_is_better


def test_mce_halves_with_half_the_errors_and_accuracy_without_noise():
    _, errors = alexnet_errors()
    half = {c: [round(e / 2, 3) for e in v] for c, v in errors.items()}
    metrics = corruption_metrics(_records_with_errors(half, 0.1), CorruptionsConfig(kind="imagenet-c"))
    assert metrics["mce"].value == pytest.approx(0.5, abs=2e-3)
    quiet = [c for c in half if "noise" not in c]
    expected = 1 - sum(sum(half[c]) for c in quiet) / (5 * len(quiet))
    assert metrics["accuracy_no_noise"].value == pytest.approx(expected, abs=1e-9)


def test_no_mce_for_generated_corruptions():
    _, errors = alexnet_errors()
    metrics = corruption_metrics(_records_with_errors({c: [0.5] * 5 for c in errors}, 0.1, n=10),
                                 CorruptionsConfig(kind="generated"))
    assert "mce" not in metrics and metrics["accuracy"].value == pytest.approx(0.5)


def test_flip_probability_rules():
    assert flip_probability([0, 0, 1, 1, 0], noise=False) == pytest.approx(2 / 4)
    assert flip_probability([0, 1, 1, 1], noise=False) == pytest.approx(1 / 3)
    assert flip_probability([0, 1, 1, 1], noise=True) == pytest.approx(3 / 3)   # every frame vs the first
    # difficulty 2: subsequences [0, 1, 0] and [1, 1] -> flips 2 of 2 and 0 of 1
    assert flip_probability([0, 1, 1, 1, 0], noise=False, difficulty=2) == pytest.approx(2 / 3)


def _logits(order):
    """Logits ranking the classes in the given order (first = top)."""
    k = len(order)
    out = torch.zeros(k)
    for rank, cls in enumerate(order):
        out[cls] = float(k - rank)
    return out


def test_top5_distance_values():
    base = list(range(10))
    same = torch.stack([_logits(base), _logits(base)])
    assert top5_distance(same, noise=False) == 0.0
    swapped = torch.stack([_logits(base), _logits([1, 0] + base[2:])])
    assert top5_distance(swapped, noise=False) == 2.0          # sigma = (2, 1, 3, 4, 5)
    dropped = torch.stack([_logits(base), _logits([9] + base[:9])])
    # sigma = (2, 3, 4, 5, 6): |0-1| + |1-2| + |2-3| + |3-4| + |4-5| = 5
    assert top5_distance(dropped, noise=False) == 5.0
    ties = torch.zeros(2, 10)                                   # ties broken by class index: identical rankings
    assert top5_distance(ties, noise=False) == 0.0


def test_perturbation_aggregate_and_normalisers():
    records = [{"fp": {"brightness": 0.2, "gaussian_noise": 0.4}, "t5d": {"brightness": 1.0, "gaussian_noise": 3.0}},
               {"fp": {"brightness": 0.0, "gaussian_noise": 0.2}, "t5d": {"brightness": 0.0, "gaussian_noise": 1.0}}]
    norm = {"brightness": {"fp": 0.2, "t5d": 1.0}, "gaussian_noise": {"fp": 0.6, "t5d": 4.0}}
    config = PerturbationsConfig(perturbations=("brightness", "gaussian_noise"), normalizers=norm)
    metrics = PerturbationsSuite().aggregate(records, config)
    assert metrics["fp/brightness"].value == pytest.approx(0.1)
    assert metrics["mfp"].value == pytest.approx((0.1 + 0.3) / 2)
    assert metrics["mfr"].value == pytest.approx((0.1 / 0.2 + 0.3 / 0.6) / 2)
    assert metrics["mt5d_normalised"].value == pytest.approx((0.5 / 1.0 + 2.0 / 4.0) / 2)
    assert "mfr" not in PerturbationsSuite().aggregate(records, PerturbationsConfig(
        perturbations=("brightness", "gaussian_noise")))


def test_extra_corruptions_do_not_enter_the_benchmark_averages():
    """100% on the 12 quiet benchmark corruptions, 0% on the 3 noises and on the 4 extras."""
    from vitbench.data.corruptions import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS
    err = {c: [1.0 if ("noise" in c or c in EXTRA_CORRUPTIONS) else 0.0] * 5
           for c in BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS}
    config = CorruptionsConfig(kind="generated", extra=True)
    metrics = corruption_metrics(_records_with_errors(err, 0.0, n=10), config)
    assert metrics["accuracy_no_noise"].value == pytest.approx(1.0)
    assert metrics["accuracy"].value == pytest.approx(12 / 15)
    assert metrics["accuracy_extra"].value == pytest.approx(0.0)
