"""Plots as PNG (matplotlib, Agg backend): robust accuracy vs eps from PGD sweeps.

Later suites add their own plot functions here (accuracy vs severity, flip probability, attack effectiveness,
per-layer stability); each takes stored runs and writes one PNG.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

from vitbench.store import RunRow


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, out: Path, *, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> Path:
    """Lay out (inside ``rect``, leaving room for a figure legend), write as PNG (creating the folder), close."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=rect)
    fig.savefig(out)
    pyplot().close(fig)
    return out


def latest_runs(runs: Sequence[RunRow], suite: str, key: Callable[[RunRow], Hashable]) -> dict:
    """The latest run of ``suite`` per ``key(run)`` (runs come oldest first: a later one replaces an earlier)."""
    return {key(run): run for run in runs if run.suite == suite}


def robustness_curves(runs: Sequence[RunRow], out: Path) -> Path | None:
    """Robust accuracy vs eps, one line per (model, steps), from the latest pgd_sweep run of each model."""
    latest = latest_runs(runs, "pgd_sweep", lambda run: run.model)
    if not latest:
        return None
    plt = pyplot()
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
    return save_figure(fig, out)


def _latest_by_model(runs: Sequence[RunRow], suite: str) -> dict[str, RunRow]:
    return latest_runs(runs, suite, lambda run: f"{run.model} [{run.config.get('kind', run.config.get('source', ''))}]")


def accuracy_vs_severity(runs: Sequence[RunRow], out: Path) -> Path | None:
    """One panel per corruption: accuracy vs severity (0 = clean), one line per model."""
    latest = _latest_by_model(runs, "corruptions")
    if not latest:
        return None
    plt = pyplot()
    names = list(next(iter(latest.values())).config["corruptions"])
    cols = 5
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), dpi=100, squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        for label, run in sorted(latest.items()):
            sev = run.config["severities"]
            if name not in run.config["corruptions"]:
                continue
            accs = [run.metrics["clean_accuracy"][0]] + [1 - run.metrics[f"error/{name}/{s}"][0] for s in sev]
            ax.plot([0] + list(sev), [100 * a for a in accs], marker="o", ms=3, label=label)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes[0][0].set_ylabel("accuracy (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    return save_figure(fig, out, rect=(0, 0.06, 1, 1))


def flip_probabilities(runs: Sequence[RunRow], out: Path) -> Path | None:
    """Grouped bars: flip probability per perturbation, one bar per model."""
    latest = _latest_by_model(runs, "perturbations")
    if not latest:
        return None
    plt = pyplot()
    names = sorted({k.split("/", 1)[1] for run in latest.values() for k in run.metrics if k.startswith("fp/")})
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.9), 4), dpi=110)
    width = 0.8 / len(latest)
    for i, (label, run) in enumerate(sorted(latest.items())):
        values = [100 * run.metrics.get(f"fp/{n}", [float("nan")])[0] for n in names]
        ax.bar([j + i * width for j in range(len(names))], values, width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("flip probability (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out)
