"""Plots as PNG (matplotlib, Agg backend), drawn from stored runs.

Suites declare the plots that draw their runs by name (``Suite.plots``; stored with each run); :data:`PLOTS` maps
each name to a function (runs, output folder) -> written paths: robust accuracy vs eps, accuracy vs severity per
corruption, flip probability per perturbation, per-layer stability, attack effectiveness vs k and vs epoch,
semantic scores and example grids. No suite draws, and nothing here needs torch.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

from vitbench import _config
from vitbench.metrics import threat_label
from vitbench.store import RunRow, open_store


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


def interval(run: RunRow, metric: str) -> tuple[float, float] | None:
    """A stored metric's 95% interval (None for runs stored without one)."""
    item = run.metrics.get(metric, [])
    return (item[3], item[4]) if len(item) > 4 and item[3] is not None and item[4] is not None else None


def _band(ax, xs, intervals, *, flip: bool = False, **style) -> None:
    """A shaded 95% band around a line (``flip``: the intervals are of 1 - y, e.g. errors drawn as accuracies)."""
    pairs = [(x, ci) for x, ci in zip(xs, intervals, strict=True) if ci is not None]
    if len(pairs) < 2:
        return
    lo = [100 * ((1 - ci[1]) if flip else ci[0]) for _, ci in pairs]
    hi = [100 * ((1 - ci[0]) if flip else ci[1]) for _, ci in pairs]
    ax.fill_between([x for x, _ in pairs], lo, hi, alpha=0.15, linewidth=0, **style)


def _yerr(values: Sequence[float], intervals: Sequence) -> list[list[float]] | None:
    """Asymmetric error bars (percent) from intervals, or None when a value has none."""
    if any(ci is None for ci in intervals):
        return None
    return [[max(0.0, v - 100 * ci[0]) for v, ci in zip(values, intervals, strict=True)],
            [max(0.0, 100 * ci[1] - v) for v, ci in zip(values, intervals, strict=True)]]


def robustness_curves(runs: Sequence[RunRow], out: Path) -> Path | None:
    """Robust accuracy vs eps, one line per (model, steps), from the latest pgd_sweep run of each model, with the
    95% interval of every point as a band."""
    latest = latest_runs(runs, "pgd_sweep", lambda run: run.model)
    if not latest:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for model, run in sorted(latest.items()):
        eps = [0.0] + list(run.config["eps"])
        for steps in run.config["steps"]:
            keys = ["clean_accuracy"] + [f"pgd{steps}@{e:.6g}" for e in run.config["eps"]]
            line, = ax.plot(eps, [100 * run.metrics[k][0] for k in keys], marker="o", label=f"{model} (PGD-{steps})")
            _band(ax, eps, [interval(run, k) for k in keys], color=line.get_color())
    ax.set_xlabel(f"eps ({run.config['norm']})")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out)


def _latest_by_model(runs: Sequence[RunRow], suite: str) -> dict[str, RunRow]:
    return latest_runs(runs, suite, lambda run: f"{run.model} [{run.config.get('kind', run.config.get('source', ''))}]")


def accuracy_vs_severity(runs: Sequence[RunRow], out: Path) -> Path | None:
    """One panel per corruption: accuracy vs severity (0 = clean), one line per model, 95% bands."""
    latest = _latest_by_model(runs, "corruptions")
    if not latest:
        return None
    plt = pyplot()
    names = list(next(iter(latest.values())).config["corruptions"])
    cols = 5
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), dpi=100, squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):  # the grid may have spare axes
        for label, run in sorted(latest.items()):
            sev = run.config["severities"]
            if name not in run.config["corruptions"]:
                continue
            accs = [run.metrics["clean_accuracy"][0]] + [1 - run.metrics[f"error/{name}/{s}"][0] for s in sev]
            line, = ax.plot([0] + list(sev), [100 * a for a in accs], marker="o", ms=3, label=label)
            _band(ax, list(sev), [interval(run, f"error/{name}/{s}") for s in sev], flip=True, color=line.get_color())
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
    """Grouped bars: flip probability per perturbation, one bar per model, with 95% error bars."""
    latest = _latest_by_model(runs, "perturbations")
    if not latest:
        return None
    plt = pyplot()
    names = sorted({k.split("/", 1)[1] for run in latest.values() for k in run.metrics if k.startswith("fp/")})
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.9), 4), dpi=110)
    width = 0.8 / len(latest)
    for i, (label, run) in enumerate(sorted(latest.items())):
        values = [100 * run.metrics.get(f"fp/{n}", [float("nan")])[0] for n in names]
        ax.bar([j + i * width for j in range(len(names))], values, width, label=label,
               yerr=_yerr(values, [interval(run, f"fp/{n}") for n in names]), capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("flip probability (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out)


def _latest_effectiveness(runs: Sequence) -> dict:
    """The latest attack_effectiveness run per (model, eps)."""
    return latest_runs([r for r in runs if "oracle_loss" in r.metrics], "attack_effectiveness",
                       lambda run: (run.model, run.config["norm"], run.config["eps"]))


def _gap_percent(run, k: int) -> tuple[float, float]:
    return 100 * run.metrics[f"loss_gap_k{k}"][0], 100 * run.metrics[f"loss_gap_k{k}_std"][0]


def plot_gap_vs_k(runs: Sequence, out: Path) -> Path | None:
    """Loss gap (%) vs k, one line per model (error bars: std over seeds), log-scaled k."""
    latest = _latest_effectiveness(runs)
    if not latest:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for (model, norm, eps), run in sorted(latest.items()):
        ks = run.config["steps"]
        gaps = [_gap_percent(run, k) for k in ks]
        ax.errorbar(ks, [g for g, _ in gaps], yerr=[s for _, s in gaps], marker="o", capsize=3,
                    label=f"{model} ({threat_label(norm, eps)})")
    ax.set_xscale("log")
    ticks = sorted({k for run in latest.values() for k in run.config["steps"]})
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.set_xlabel("PGD steps k (alpha = 1.5 eps / k)")
    ax.set_ylabel("relative loss gap to the oracle (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out)


def plot_gap_vs_epoch(runs: Sequence, out: Path) -> Path | None:
    """Loss gap (%) vs training epoch per k, for models evaluated at their epoch checkpoints (``NAME+eEPOCH``)."""
    from vitbench.zoo.epochs import split_checkpoint_name
    series: dict[tuple, list] = {}
    for (model, norm, eps), run in _latest_effectiveness(runs).items():
        parent, epoch = split_checkpoint_name(model)
        if epoch is not None:
            series.setdefault((parent, norm, eps), []).append((epoch, run))
    if not series:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for (parent, norm, eps), points in sorted(series.items()):
        points.sort(key=lambda p: p[0])
        for k in points[-1][1].config["steps"]:
            rows = [(e, *_gap_percent(r, k)) for e, r in points if f"loss_gap_k{k}" in r.metrics]
            ax.errorbar([e for e, _, _ in rows], [g for _, g, _ in rows], yerr=[s for _, _, s in rows], marker="o",
                        capsize=3,
                        label=f"{parent} k={k}" + ("" if len(series) == 1 else f" ({threat_label(norm, eps)})"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("relative loss gap to the oracle (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out)




def plot_layer_stability(runs: Sequence, out: Path) -> Path | None:
    """Attention stability and representation change per block, one line per model (latest run of each
    (model, config)); models without per-layer metrics (CNNs) are named in the figure, not drawn as zeros."""
    latest = latest_runs(runs, "patch_sensitivity", lambda run: (run.model, _config.canonical_json(run.config)))
    if not latest:
        return None
    several = len({cfg for _, cfg in latest}) > 1
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    skipped = []
    for (model, _), run in sorted(latest.items()):
        label = f"{model} ({_config_label(run)})" if several else model
        drawn = False
        for ax, key in zip(axes, ("attn_stability", "repr_change"), strict=True):
            values = _layer_series(run.metrics, key)
            if values:
                ax.plot(range(len(values)), values, marker="o", label=label)
                drawn = True
        if not drawn:
            skipped.append(model)
    for ax, title in zip(axes, ("attention stability (mean row cosine, proxy)",
                                "representation change ||b(x^)-b(x)|| / ||b(x)||"), strict=True):
        ax.set_xlabel("block")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if skipped:
        fig.text(0.01, 0.01, "no per-layer metrics (no transformer blocks): " + ", ".join(sorted(set(skipped))),
                 fontsize=7)
    return save_figure(fig, out, rect=(0, 0.04, 1, 1))


def _layer_series(metrics: dict, key: str) -> list[float]:
    values, i = [], 0
    while f"{key}_l{i}" in metrics:
        values.append(metrics[f"{key}_l{i}"][0])
        i += 1
    return values



def plot_scores(runs: Sequence, out: Path) -> Path:
    """Semantic score (%) per model: a bar for the panel mean, a dot per panel model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(runs)), 4), dpi=120)
    runs = sorted(runs, key=lambda r: r.model)
    for i, run in enumerate(runs):
        mean = 100 * run.metrics["semantic_score"][0]
        ax.bar(i, mean, color="C0", alpha=0.6, yerr=_yerr([mean], [interval(run, "semantic_score")]), capsize=3)
        prefix = "semantic_score["
        members = [(k[len(prefix):-1], v[0]) for k, v in run.metrics.items() if k.startswith(prefix)]
        for j, (name, value) in enumerate(sorted(members)):
            ax.plot(i, 100 * value, marker="o", color=f"C{j + 1}", label=name if i == 0 else None, linestyle="")
    ax.set_xticks(range(len(runs)), [f"{r.model}\n({threat_label(r.config['norm'], r.config['eps'])})" for r in runs],
                  fontsize=7)
    ax.set_ylabel("panel accuracy on the perturbation (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, title="panel", title_fontsize=7)
    return save_figure(fig, out)


def plot_examples(run, out: Path) -> Path | None:
    """Grid of the stored example images (top) and their quantised perturbations (bottom), panel predictions as
    titles; None when the run stored no examples."""
    store = open_store()
    try:
        limit = run.config["examples"]
        examples = [r for r in store.first_records(run.eval_key, limit) if "perturbation_png" in r]
    finally:
        store.close()
    if not examples:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(2, len(examples), figsize=(1.4 * len(examples), 3.2), dpi=120, squeeze=False)
    for j, rec in enumerate(examples):
        axes[0, j].imshow(from_png_base64(rec["image_png"]))
        axes[1, j].imshow(from_png_base64(rec["perturbation_png"]))
        axes[0, j].set_title(f"y={rec['label']}", fontsize=7)
        axes[1, j].set_title(" ".join(str(p) for p in rec["panel_pred"].values()), fontsize=7)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.suptitle(f"{run.model}: images and perturbations ({threat_label(run.config['norm'], run.config['eps'])}); "
                 f"panel predictions below", fontsize=8)
    return save_figure(fig, out)



def from_png_base64(text: str):
    """The inverse of :func:`to_png_base64`, as an (H, W, C) uint8 numpy array."""
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def _config_label(run: RunRow) -> str:
    """The config part of a run's column labels ("rho 0.1" in "Occluded acc (rho 0.1)")."""
    label = run.columns[0]["label"] if run.columns else ""
    return label[label.rfind("(") + 1:-1] if label.endswith(")") else run.suite


def semantic_plots(runs: Sequence[RunRow], out_dir: Path) -> list[Path]:
    """The panel's scores per model, and each model's example grid (latest run per model and threat)."""
    latest = latest_runs(runs, "semantic", lambda run: (run.model, run.config["norm"], run.config["eps"]))
    if not latest:
        return []
    paths = [plot_scores(list(latest.values()), out_dir / "semantic_scores.png")]
    paths += [plot_examples(run, out_dir / f"semantic_examples_{run.model}.png") for run in latest.values()]
    return [p for p in paths if p is not None]


def _one(draw: Callable[[Sequence[RunRow], Path], Path | None], file: str) -> Callable[..., list[Path]]:
    def plot(runs: Sequence[RunRow], out_dir: Path) -> list[Path]:
        path = draw(runs, Path(out_dir) / file)
        return [path] if path else []
    return plot


#: every plot a suite can declare, by name: (runs, output folder) -> the files written
PLOTS: dict[str, Callable[[Sequence[RunRow], Path], list[Path]]] = {
    "robustness_curves": _one(robustness_curves, "robustness_vs_eps.png"),
    "accuracy_vs_severity": _one(accuracy_vs_severity, "corruptions_accuracy_vs_severity.png"),
    "flip_probabilities": _one(flip_probabilities, "perturbations_flip_probability.png"),
    "layer_stability": _one(plot_layer_stability, "patch_sensitivity_layers.png"),
    "loss_gap_vs_k": _one(plot_gap_vs_k, "attack_effectiveness_vs_k.png"),
    "loss_gap_vs_epoch": _one(plot_gap_vs_epoch, "attack_effectiveness_vs_epoch.png"),
    "semantic": semantic_plots,
}


def draw(runs: Sequence[RunRow], out_dir: Path) -> list[Path]:
    """Every plot the runs' suites declared, over the runs that declared it; returns the files written."""
    names = dict.fromkeys(name for run in runs for name in run.plots)
    paths: list[Path] = []
    for name in names:
        paths += PLOTS[name]([r for r in runs if name in r.plots], Path(out_dir))
    return paths
