"""Plots as PNG (matplotlib, Agg backend): robust accuracy vs eps from PGD sweeps.

Later suites add their own plot functions here (accuracy vs severity, flip probability, attack effectiveness,
per-layer stability); each takes stored runs and writes one PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vitbench.store import RunRow


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def robustness_curves(runs: Sequence[RunRow], out: Path) -> Path | None:
    """Robust accuracy vs eps, one line per (model, steps), from the latest pgd_sweep run of each model."""
    latest: dict[str, RunRow] = {}
    for run in runs:
        if run.suite == "pgd_sweep":
            latest[run.model] = run
    if not latest:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for model, run in sorted(latest.items()):
        eps = [0.0] + list(run.config["eps"])
        for steps in run.config["steps"]:
            accs = [run.metrics["clean_accuracy"][0]] + [run.metrics[f"pgd{steps}@{e:.6g}"][0] for e in run.config["eps"]]
            ax.plot(eps, [100 * a for a in accs], marker="o", label=f"{model} (PGD-{steps})")
    ax.set_xlabel(f"eps ({run.config['norm']})")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
