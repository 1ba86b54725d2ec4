"""Intervals for a run's metrics, computed once from its per-sample records when the run is aggregated.

Proportions (accuracies of independent examples) get the Wilson score interval, or Clopper-Pearson's exact one;
every other metric a seeded percentile bootstrap over examples (sequences for perturbations), from the suite's
own aggregation of resampled records. The number of resamples and the method are aggregation options: they
change no per-sample record, so they are not part of the evaluation key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from vitbench import defaults, stats
from vitbench.metrics import Metric

RESAMPLES = defaults.RESAMPLES
#: the method of a sequential run's proportions (``--until-ci``)
SEQUENTIAL = "sequential"


@dataclass(frozen=True)
class IntervalOptions:
    """How intervals are computed: the proportion method, bootstrap resamples (0: none) and its seed; ``looks``
    > 1 for a sequential run (``--until-ci``): its proportions get Clopper-Pearson at 1 - alpha / looks, valid at
    any of its planned looks."""

    method: str = defaults.INTERVAL
    resamples: int = RESAMPLES
    seed: int = 0
    level: float = stats.LEVEL
    looks: int = 1

    def __post_init__(self) -> None:
        if self.method not in stats.METHODS:
            raise ValueError(f"interval method {self.method!r} is not one of {', '.join(stats.METHODS)}")
        if self.resamples < 0:
            raise ValueError("resamples must be >= 0")
        if self.looks < 1:
            raise ValueError("looks must be >= 1")


Resampler = Callable[[np.ndarray], Mapping[str, float]]


def annotate(metrics: Mapping[str, Metric], n_records: int, resampler: Resampler | None,
             options: IntervalOptions = IntervalOptions()) -> dict[str, Metric]:
    """The metrics with their 95% intervals filled in (``resampler`` maps an index resample to metric values)."""
    wanted = [k for k, m in metrics.items() if _needs_bootstrap(m)]
    boot = {}
    if wanted and resampler is not None and options.resamples > 0:
        boot = stats.bootstrap_cis(n_records, resampler, wanted, resamples=options.resamples, seed=options.seed,
                                   level=options.level)
    out = {}
    for name, m in metrics.items():
        if not m.uncertain or m.value != m.value:
            out[name] = m
        elif m.is_proportion and options.looks > 1:
            out[name] = replace(m, ci95=stats.sequential_ci(m.successes, m.n, options.looks, options.level),
                                method=SEQUENTIAL)
        elif m.is_proportion:
            out[name] = replace(m, ci95=stats.proportion_ci(m.successes, m.n, options.method, options.level),
                                method=options.method)
        elif name in boot:
            out[name] = replace(m, ci95=boot[name], method="bootstrap", n=m.n or n_records)
        else:
            out[name] = m
    return out


def _needs_bootstrap(m: Metric) -> bool:
    return m.uncertain and not m.is_proportion and m.value == m.value


def resample_records(records: Sequence[dict], aggregate: Callable[[list[dict]], Mapping[str, Metric]]) -> Resampler:
    """The generic resampler: the suite's aggregation of the resampled records."""
    def statistic(idx: np.ndarray) -> dict[str, float]:
        return {k: m.value for k, m in aggregate([records[i] for i in idx]).items()}
    return statistic
