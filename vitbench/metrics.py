"""What a suite reports: metrics (numbers with their uncertainty) and leaderboard columns (metrics with a
structured description). No torch here: the leaderboard, the site and the cards read these from the store.

Metric ids are stable, machine-friendly names shared by ``bench --json``, ``leaderboard --json``, the site and the
Python API; the display label is a field beside the id. An id is ``SUITE/QUANTITY`` with the variant and threat
model the number depends on, e.g. ``clean/accuracy``, ``autoattack/standard/robust_accuracy@linf:4/255``,
``pgd_sweep/pgd10/robust_accuracy@linf:0.05``, ``corruptions/generated/accuracy``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vitbench.threat import format_eps

#: the kinds of leaderboard columns; a column's topic table follows from its kind
KINDS = ("clean", "robust", "corruption", "shift", "perturbation", "analysis")
TOPICS = {"clean": "Adversarial robustness", "robust": "Adversarial robustness", "corruption": "Distribution shift",
          "shift": "Distribution shift", "perturbation": "Distribution shift", "analysis": "Analyses"}


@dataclass(frozen=True)
class Metric:
    """An aggregated number (a fraction for accuracies), its direction and its uncertainty.

    ``n`` is the number of examples (sequences for perturbations) it is computed from. A proportion also keeps
    ``successes`` and the per-example ``outcomes`` (for paired tests between models); its interval is Wilson's (or
    Clopper-Pearson's); other metrics get a percentile bootstrap over examples. ``uncertain=False`` marks numbers
    that take no interval (counts, spreads over seeds).
    """

    value: float
    higher_is_better: bool = True
    n: int | None = None
    successes: int | None = None
    outcomes: tuple[bool, ...] | None = None
    ci95: tuple[float, float] | None = None
    method: str | None = None
    uncertain: bool = True

    @property
    def is_proportion(self) -> bool:
        return self.successes is not None and self.n is not None

    def to_stored(self) -> list:
        """The store's form: [value, higher_is_better, n, lo, hi, method] (older stores hold the first two)."""
        lo, hi = self.ci95 if self.ci95 else (None, None)
        return [_finite(self.value), self.higher_is_better, self.n, _finite(lo), _finite(hi), self.method]

    @classmethod
    def from_stored(cls, item: Sequence) -> Metric:
        value, better = item[0], bool(item[1])
        n = item[2] if len(item) > 2 else None
        ci = (item[3], item[4]) if len(item) > 4 and item[3] is not None and item[4] is not None else None
        return cls(math.nan if value is None else float(value), better, n, ci95=ci,
                   method=item[5] if len(item) > 5 else None)


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)


def proportion(flags: Sequence[bool], *, higher_is_better: bool = True) -> Metric:
    """The share of true flags, with its count and per-example outcomes (nan for no examples)."""
    outcomes = tuple(bool(f) for f in flags)
    k, n = sum(outcomes), len(outcomes)
    return Metric(k / n if n else math.nan, higher_is_better, n=n, successes=k, outcomes=outcomes)


def mean_metric(values: Sequence[float], *, higher_is_better: bool = True) -> Metric:
    """The mean of per-example values (its interval comes from the bootstrap)."""
    values = list(values)
    return Metric(sum(values) / len(values) if values else math.nan, higher_is_better, n=len(values))


def threat_id(norm: str, eps: float) -> str:
    """``linf:4/255``, ``l2:0.5``: the threat model as it appears in metric ids."""
    return f"{norm}:{format_eps(eps)}"


def threat_label(norm: str, eps: float) -> str:
    """``Linf 4/255``, ``L2 0.5``: the threat model as tables show it."""
    return f"{'Linf' if norm == 'linf' else 'L2'} {format_eps(eps)}"


@dataclass(frozen=True)
class Column:
    """A leaderboard column contributed by a run: a metric with its id, label and what it measures.

    ``rank`` orders columns (< 50 adversarial robustness, 50-69 distribution shift, >= 70 analyses); ``headline``
    marks the metric a row is ranked by (AutoAttack); ``kind``, ``attack``, ``version`` and ``threat`` describe
    the number so that tables, cards and cross-checks never parse labels; ``outcomes`` ('0'/'1' per example) lets
    two models evaluated on the same examples be compared with a paired test.
    """

    id: str
    label: str
    value: float
    higher_is_better: bool = True
    rank: int = 50
    headline: bool = False
    percent: bool = True
    kind: str = "analysis"
    attack: str | None = None
    version: str | None = None
    threat: tuple[str, float] | None = None
    n: int | None = None
    ci95: tuple[float, float] | None = None
    method: str | None = None
    outcomes: str | None = None
    metric: str | None = None  # the suite's name for the metric shown (``robust_accuracy``)
    seeds: int = 1             # runs under this many seeds: ``value`` is their mean, ``seed_sd`` their spread
    seed_sd: float | None = None

    @property
    def topic(self) -> str:
        return TOPICS.get(self.kind, "Analyses")

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("id", "label", "value", "higher_is_better", "rank", "headline",
                                              "percent", "kind", "attack", "version", "n", "method", "outcomes",
                                              "metric", "seeds", "seed_sd")}
        out["value"] = _finite(self.value)
        out["threat"] = None if self.threat is None else list(self.threat)
        out["ci95"] = None if self.ci95 is None else [_finite(v) for v in self.ci95]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Column:
        fields = dict(data)
        fields["value"] = math.nan if fields.get("value") is None else float(fields["value"])
        threat = fields.get("threat")
        fields["threat"] = None if threat is None else (threat[0], float(threat[1]))
        ci = fields.get("ci95")
        fields["ci95"] = None if ci is None or None in ci else (float(ci[0]), float(ci[1]))
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})

    def with_n_label(self, n: int) -> Column:
        """This column as measured on another number of examples than its row's: ``Clean [n=200]``."""
        return replace(self, id=f"{self.id}[n={n}]", label=f"{self.label} [n={n}]", headline=False)


def column(metrics: Mapping[str, Metric], name: str, *, id: str, label: str, **kind: Any) -> Column:
    """The column showing metric ``name``: value, direction, n and interval copied from the metric."""
    m = metrics[name]
    outcomes = None if m.outcomes is None else "".join("1" if o else "0" for o in m.outcomes)
    return Column(id=id, label=label, value=m.value, higher_is_better=m.higher_is_better, n=m.n, ci95=m.ci95,
                  method=m.method, outcomes=outcomes, metric=name, **kind)


def clean_column(metrics: Mapping[str, Metric], name: str = "clean_accuracy") -> Column:
    """Clean top-1 accuracy: one id whichever suite measured it (the same number for the same examples)."""
    return column(metrics, name, id="clean/accuracy", label="Clean", rank=10, kind="clean")


def metric_record(m: Metric, *, label: str, **extra: Any) -> dict:
    """A metric as JSON (``bench --json``, ``leaderboard --json``, the API): value, interval, n, label."""
    lo_hi = None if m.ci95 is None else [_finite(v) for v in m.ci95]
    return {"label": label, "value": _finite(m.value), "ci95": lo_hi, "n": m.n, "method": m.method,
            "higher_is_better": m.higher_is_better, **extra}


def metrics_json(suite: str, metrics: Mapping[str, Metric], columns: Sequence[Column]) -> dict[str, dict]:
    """A run's metrics keyed by id: a metric shown as a column takes the column's id and label (the ids the
    leaderboard uses), any other ``SUITE/NAME``."""
    shown = {c.metric: c for c in columns if c.metric}
    out = {}
    for name, m in metrics.items():
        col = shown.get(name)
        if col is not None:
            out[col.id] = metric_record(m, label=col.label, percent=col.percent, kind=col.kind, metric=name)
        else:
            out[f"{suite}/{name}"] = metric_record(m, label=name, metric=name)
    return out


def is_standard_autoattack(col: Column) -> bool:
    """Whether a column is a standard AutoAttack robust accuracy (what RobustBench reports)."""
    return col.kind == "robust" and col.attack == "AA" and col.version == "standard"
