"""Two models on the same examples: paired differences with their intervals and exact McNemar tests.

For every accuracy-like column both models have on the same examples (same data fingerprint, same first n
examples, same metric id), the per-example outcomes give the 2x2 table (right for both, only A, only B, neither):
the difference of accuracies with Newcombe's paired interval, and the exact McNemar p-value on the discordant
pairs. Metrics that are not proportions have no per-example outcomes; they are listed with their own intervals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from tabulate import tabulate

from vitbench import stats
from vitbench.board.tables import Row, build_rows
from vitbench.errors import VitbenchError
from vitbench.metrics import Column
from vitbench.store import RunRow

ALPHA = 0.05


@dataclass(frozen=True)
class Paired:
    """One metric of two models on the same examples."""

    metric: str
    label: str
    n: int
    a: float
    b: float
    diff: float
    ci95: tuple[float, float]
    both: int
    only_a: int
    only_b: int
    neither: int
    p_value: float

    @property
    def verdict(self) -> str:
        if self.p_value >= ALPHA:
            return "within noise"
        return "A higher" if self.diff > 0 else "B higher"


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of models ``a`` and ``b`` on one dataset."""

    a: str
    b: str
    dataset: str
    n_examples: int
    paired: tuple[Paired, ...]

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "dataset": self.dataset, "n_examples": self.n_examples,
                "metrics": {p.metric: {k: v for k, v in asdict(p).items() if k != "metric"} | {"verdict": p.verdict}
                            for p in self.paired}}

    def to_markdown(self) -> str:
        body = [[p.label, p.n, f"{100 * p.a:.1f}", f"{100 * p.b:.1f}",
                 f"{100 * p.diff:+.1f} [{100 * p.ci95[0]:+.1f}, {100 * p.ci95[1]:+.1f}]", f"{p.only_a} / {p.only_b}",
                 f"{p.p_value:.3g}", p.verdict] for p in self.paired]
        header = ["metric", "n", f"A: {self.a} (%)", f"B: {self.b} (%)", "A - B (pp) [95% CI]",
                  "only A / only B right", "McNemar p", ""]
        return (f"{self.a} vs {self.b} on {self.dataset} ({self.n_examples} examples, paired)\n\n"
                + tabulate(body, headers=header, tablefmt="github", disable_numparse=True))


def paired(metric: str, a: Column, b: Column) -> Paired:
    """The paired comparison of two columns with per-example outcomes of equal length."""
    both = only_a = only_b = neither = 0
    for x, y in zip(a.outcomes, b.outcomes, strict=True):
        if x == "1":
            both, only_a = (both + 1, only_a) if y == "1" else (both, only_a + 1)
        else:
            only_b, neither = (only_b + 1, neither) if y == "1" else (only_b, neither + 1)
    n = len(a.outcomes)
    return Paired(metric, a.label, n, a.value, b.value, (only_a - only_b) / n,
                  stats.paired_difference_ci(both, only_a, only_b, neither), both, only_a, only_b, neither,
                  stats.mcnemar_exact(only_a, only_b))


def _shared(ra: Row, rb: Row, suite: str | None) -> list[tuple[str, Column, Column]]:
    out = []
    for cid, ca in ra.cells.items():
        cb = rb.cells.get(cid)
        if cb is None or not ca.outcomes or not cb.outcomes or len(ca.outcomes) != len(cb.outcomes):
            continue
        if suite is not None and not cid.startswith((f"{suite}/", "clean/accuracy")):
            continue
        out.append((cid, ca, cb))
    return out


def compare_models(runs: Sequence[RunRow], a: str, b: str, *, data: str | None = None, suite: str | None = None,
                   current: Mapping[str, str | None] | None = None) -> Comparison:
    """Compare models ``a`` and ``b`` on the examples both were evaluated on.

    Raises:
        VitbenchError: when a model has no stored results, or the two were never evaluated on the same examples.
    """
    if a == b:
        raise VitbenchError(f"compare needs two different models (got {a} twice)")
    rows = build_rows(runs, data=data, models=[a, b], current=current)
    mine = {name: [r for r in rows if r.model == name] for name in (a, b)}
    for name, found in mine.items():
        if not found:
            where = f" on {data}" if data else ""
            raise VitbenchError(f"no stored results for {name}{where}: run `vitbench bench {name} --data ...` first")
    best: tuple[Row, Row, list] | None = None
    for ra in mine[a]:
        for rb in mine[b]:
            if (ra.data_fingerprint, ra.n_examples) != (rb.data_fingerprint, rb.n_examples):
                continue
            shared = _shared(ra, rb, suite)
            if shared and (best is None or len(shared) > len(best[2])):
                best = (ra, rb, shared)
    if best is None:
        seen = "; ".join(f"{r.model}: {r.dataset} n={r.n_examples}" for r in mine[a] + mine[b])
        what = f" for suite {suite}" if suite else ""
        raise VitbenchError(f"{a} and {b} were never evaluated on the same examples{what} ({seen}): bench both "
                            "on the same --data and --n-examples")
    ra, rb, shared = best
    shared.sort(key=lambda t: (t[1].rank, t[1].label))
    return Comparison(a, b, ra.dataset, ra.n_examples, tuple(paired(cid, ca, cb) for cid, ca, cb in shared))


def render(cmp: Comparison, fmt: str = "md") -> str:
    return json.dumps(cmp.to_json(), indent=2) if fmt == "json" else cmp.to_markdown()
