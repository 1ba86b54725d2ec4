"""Semantic perturbations (light recipe, Debenedetti et al. 2023; methods.md A, "Analyses").

Do a model's adversarial perturbations carry the semantics of the image's class? PGD-``steps`` (default 100) with alpha =
``alpha_factor`` * eps / steps (1.5), a uniform random start, untargeted, no early stop, model in eval mode, on
the evaluation images. The perturbation delta = x_adv - x (|delta_i| <= eps, also for L2) is rescaled and
quantised to 8 bits,

    p = round(255 * (delta + eps) / (2 eps)) / 255        (delta = -eps -> 0, 0 -> 128/255, +eps -> 1),

and a panel of standard (non-robust) classifiers classifies p alone. The semantic score is the panel's top-1
accuracy on the true label: per panel model (``semantic_score[NAME]``) and their mean (``semantic_score``).
Diagnostic ``adv_class_agreement``: over the examples the attack broke, the panel's (mean) rate of predicting the
class the attacked model predicts at x + delta (an untargeted perturbation may draw that class, not the true one).
Robust models are expected to score higher (the paper: robust XCiT-S12 and ResNet-50 perturbations are recognised
by ConvNeXt-XL, BEiT-L and Swin-B far more often than those of their non-robust counterparts).

eps: the config's, else the model's threat model, else 4/255 (the paper's ImageNet value); on the digits set use
the zoo threat eps 0.1 (``--eps 0.1``, as the demo does) so that standard and robust models are compared at the
same radius. The panel (``panel: [zoo names]``) defaults per label space (:data:`DEFAULT_PANELS`); an item
``timm:ARCH.TAG`` names timm's ImageNet weights directly (they download on first use, so offline they fail with
a clear error). Panel models are loaded through the zoo (the evaluated model's own zoo file overlays the bundled
one), each with its own entry's normalisation; they must predict the evaluated model's label set and take its
input size (errors otherwise). With ``exclude_self`` (default) a model never judges its own perturbations.
``n_examples: N`` (the engine's per-suite cap) evaluates only the first N examples (a quicker battery).
For the example grid, the first ``examples`` evaluated records of chunk 0 carry the image and p as base64 PNG
strings; :meth:`SemanticSuite.plots` draws them.
Caching: the evaluation key holds the panel models' fingerprints (weights and input pipeline), so retraining a
panel model forces recomputation.
"""

from __future__ import annotations

import base64
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vitbench.attacks.pgd import ALPHA_FACTOR_LIGHT, pgd, random_start, step_size
from vitbench.errors import ConfigError, NotFoundError, VitbenchError
from vitbench.suites import DEFAULT_NORM, register
from vitbench.suites.base import Chunk, Column, Context, Metric, Suite, SuiteOutput, accuracy, eps_label
from vitbench.suites.clean import predict
from vitbench.threat import check_eps, parse_norm

DEFAULT_EPS = 4 / 255
DEFAULT_STEPS = 100
DEFAULT_EXAMPLES = 8
TIMM_PREFIX = "timm:"
#: panels of standard classifiers per label space (ImageNet: the paper's ConvNeXt-XL, BEiT-L, Swin-B from timm)
DEFAULT_PANELS = {
    "digits": ("digits-vit.standard", "digits-resnet.standard"),
    "imagenet": ("timm:convnext_xlarge.fb_in22k_ft_in1k", "timm:beit_large_patch16_224.in22k_ft_in22k_in1k",
                 "timm:swin_base_patch4_window7_224.ms_in22k_ft_in1k"),
}
_CACHE_SIZE = 8


@dataclass(frozen=True)
class SemanticConfig:
    """norm / eps: the attack's threat model (default: the model's, else linf 4/255); steps, alpha_factor,
    random_start: the PGD; panel: zoo names or ``timm:ARCH.TAG`` (default: :data:`DEFAULT_PANELS`); exclude_self:
    drop the evaluated model from its panel; examples: images kept for the grid; n_examples: cap on the examples
    this suite evaluates (the engine applies it)."""

    norm: str | None = None
    eps: float | None = None
    steps: int = DEFAULT_STEPS
    alpha_factor: float = ALPHA_FACTOR_LIGHT
    random_start: bool = True
    panel: tuple[str, ...] = ()
    exclude_self: bool = True
    examples: int = DEFAULT_EXAMPLES
    n_examples: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm or DEFAULT_NORM))
        object.__setattr__(self, "eps", DEFAULT_EPS if self.eps is None else check_eps(self.norm, self.eps))
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.steps < 1 or self.alpha_factor <= 0:
            raise ValueError("steps must be >= 1 and alpha_factor > 0")
        if self.examples < 0:
            raise ValueError("examples must be >= 0 (images kept for the example grid)")
        if len(set(self.panel)) != len(self.panel):
            raise ValueError("panel lists a model twice")


def quantise_perturbation(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """(B, C, H, W) perturbation in [-eps, eps] -> uint8 round(255 * (delta + eps) / (2 eps)), clamped to [0, 255]."""
    p = (delta.float() + eps) / (2 * eps)
    return (p * 255).round().clamp(0, 255).to(torch.uint8)


def to_png_base64(image: torch.Tensor) -> str:
    """(C, H, W) uint8 image -> base64 PNG string (small data kept in records for the example grid)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def from_png_base64(text: str):
    """The inverse of :func:`to_png_base64`, as an (H, W, C) uint8 numpy array."""
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


# -- the panel ------------------------------------------------------------------------------------------------

def timm_entry(item: str):
    """A zoo entry for ``timm:ARCH.TAG`` (timm's pretrained ImageNet weights and preprocessing)."""
    from vitbench.zoo.register import default_preprocessing
    from vitbench.zoo.schema import Weights, ZooEntry
    name = item[len(TIMM_PREFIX):]
    arch, _, tag = name.partition(".")
    return ZooEntry(name=name, arch=arch, weights=Weights(source=f"{TIMM_PREFIX}{tag}"), num_classes=1000,
                    dataset="imagenet", preprocessing=default_preprocessing(name, {}))


def panel_names(config: SemanticConfig, entry) -> list[str]:
    """The panel for the evaluated entry: the config's, else the label space's default, minus the model itself.

    Raises:
        ConfigError: when there is no default panel for the label space, or nothing is left.
    """
    from vitbench.zoo.epochs import split_checkpoint_name
    names = list(config.panel) or list(DEFAULT_PANELS.get(entry.dataset, ()))
    if not names:
        raise ConfigError(f"semantic: no default panel for {entry.dataset} models such as {entry.name}: set the "
                          "suite's panel to standard classifiers of that label space (panel: [NAME, ...])")
    if config.exclude_self:
        names = [n for n in names if n not in (entry.name, split_checkpoint_name(entry.name)[0])]
    if not names:
        raise ConfigError(f"semantic: the panel of {entry.name} holds only the model itself: add other standard "
                          "classifiers to panel, or set exclude_self: false")
    return names


def panel_entries(names: Sequence[str], entry, input_size: int) -> list:
    """Zoo entries of the panel, checked against the evaluated entry's label set and input size.

    Raises:
        VitbenchError: for an unknown name, another label set, or another input size.
    """
    from vitbench.zoo.schema import BUNDLED_ZOO, load_zoo
    origin = Path(entry.origin) if entry.origin else None
    user = origin if origin and origin.is_file() and origin.resolve() != BUNDLED_ZOO.resolve() else None
    zoo = load_zoo(user) if any(not n.startswith(TIMM_PREFIX) for n in names) else None
    out = []
    for name in names:
        member = timm_entry(name) if name.startswith(TIMM_PREFIX) else _zoo_get(zoo, name)
        if (member.dataset, member.num_classes) != (entry.dataset, entry.num_classes):
            raise VitbenchError(
                f"semantic: panel model {member.name} predicts {member.dataset} labels ({member.num_classes} classes) "
                f"but {entry.name} predicts {entry.dataset} ({entry.num_classes}): set the suite's panel to standard "
                f"classifiers of the {entry.dataset} label space (panel: [NAME, ...])")
        if member.preprocessing.input_size != input_size:
            raise VitbenchError(
                f"semantic: panel model {member.name} takes {member.preprocessing.input_size}px inputs but "
                f"{entry.name}'s perturbations are {input_size}px: pick panel models with input_size {input_size}")
        out.append(member)
    return out


def _zoo_get(zoo, name: str):
    try:
        return zoo.get(name)
    except NotFoundError as exc:
        raise NotFoundError(f"semantic panel: {exc}; register it or set the suite's panel "
                            "(panel: [NAME, ...])") from None


# -- the suite ------------------------------------------------------------------------------------------------

def _perturbations(model, chunk: Chunk, config: SemanticConfig, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD-steps without early stop; returns (delta (B, C, H, W), the model's prediction at x + delta (B,))."""
    x, y = chunk.x, chunk.y
    alpha = step_size(config.eps, config.steps, alpha_factor=config.alpha_factor)
    start = (random_start(tuple(x.shape), norm=config.norm, eps=config.eps, generator=chunk.generator("start"),
                          device=x.device) if config.random_start else None)
    res = pgd(model, x, y, norm=config.norm, eps=config.eps, steps=config.steps, alpha=alpha, inits=[start],
              early_stop=False, batch_size=batch_size)
    delta = (res.x_adv - x).detach()
    return delta, predict(model, x + delta, batch_size).argmax(1).cpu()


def _records(chunk: Chunk, clean_ok: torch.Tensor, adv_pred: torch.Tensor, preds: dict[str, list[int]],
             q: torch.Tensor, examples: int) -> list[dict]:
    """Per-sample records; the first ``examples`` of chunk 0 also carry the image and p as base64 PNG."""
    records = []
    for i, label in enumerate(chunk.y.tolist()):
        record = {"label": label, "clean_correct": bool(clean_ok[i]), "adv_pred": int(adv_pred[i]),
                  "adv_correct": int(adv_pred[i]) == label,
                  "panel_pred": {name: pred[i] for name, pred in preds.items()}}
        if chunk.index == 0 and i < examples:
            image = (chunk.x[i] * 255).round().clamp(0, 255).to(torch.uint8)
            record.update(image_png=to_png_base64(image), perturbation_png=to_png_base64(q[i]))
        records.append(record)
    return records


@register
class SemanticSuite(Suite):
    name = "semantic"
    version = 1
    Config = SemanticConfig
    summary = "semantic score: a panel of standard classifiers labels the rescaled PGD-100 perturbation (light recipe)"

    def __init__(self) -> None:
        self._panel_cache: dict[tuple, torch.nn.Module] = {}

    def _panel_model(self, member, device: torch.device) -> torch.nn.Module:
        from vitbench.zoo.load import load_model
        key = (member.name, member.weights.source, member.weights.sha256, member.origin, str(device))
        if key not in self._panel_cache:
            if len(self._panel_cache) >= _CACHE_SIZE:
                self._panel_cache.clear()
            try:
                self._panel_cache[key] = load_model(member, device=device).model
            except VitbenchError as exc:
                raise type(exc)(f"semantic: cannot load panel model {member.name}: {exc}") from None
        return self._panel_cache[key]

    def key_facts(self, config: SemanticConfig, entry) -> dict:
        """The panel's fingerprints: retraining a panel model changes the scores."""
        from vitbench.zoo.load import model_fingerprint, weights_identity
        members = panel_entries(panel_names(config, entry), entry, entry.preprocessing.input_size)
        facts = {}
        for member in members:
            ident = weights_identity(member)
            facts[member.name] = model_fingerprint(member, ident[0]) if ident else member.weights.source
        return {"panel": facts}

    def run(self, model, chunk: Chunk, config: SemanticConfig, ctx: Context) -> SuiteOutput:
        if ctx.entry is None:
            raise VitbenchError("semantic: needs the evaluated model's zoo entry (run it through `vitbench bench`)")
        members = panel_entries(panel_names(config, ctx.entry), ctx.entry, chunk.x.shape[-1])
        clean_ok = (predict(model, chunk.x, ctx.batch_size).argmax(1) == chunk.y).cpu()
        delta, adv_pred = _perturbations(model, chunk, config, ctx.batch_size)
        q = quantise_perturbation(delta, config.eps)                           # (B, C, H, W) uint8
        p = q.float().div(255)
        preds = {m.name: predict(self._panel_model(m, ctx.device), p, ctx.batch_size).argmax(1).tolist()
                 for m in members}
        records = _records(chunk, clean_ok, adv_pred, preds, q, config.examples)
        return SuiteOutput(records)

    def aggregate(self, records, config: SemanticConfig) -> dict[str, Metric]:
        out = {"n_evaluated": Metric(float(len(records))),
               "clean_accuracy": Metric(accuracy([r["clean_correct"] for r in records])),
               "adv_accuracy": Metric(accuracy([r["adv_correct"] for r in records]))}
        names = list(records[0]["panel_pred"]) if records else []
        scores = [accuracy([r["panel_pred"][n] == r["label"] for r in records]) for n in names]
        for name, score in zip(names, scores):
            out[f"semantic_score[{name}]"] = Metric(score)
        out["semantic_score"] = Metric(statistics.fmean(scores) if scores else float("nan"))
        broken = [r for r in records if not r["adv_correct"]]
        if names and broken:  # diagnostic: does the panel see the class the attack moved the model to?
            out["adv_class_agreement"] = Metric(statistics.fmean(
                accuracy([r["panel_pred"][n] == r["adv_pred"] for r in broken]) for n in names))
        return out

    def columns(self, config: SemanticConfig, metrics) -> list[Column]:
        """One column per panel member: with ``exclude_self`` the panels of different models differ (a model never
        judges its own perturbations), so only scores by the same judge are compared; the panel mean is a metric."""
        prefix = "semantic_score["
        judges = sorted(k[len(prefix):-1] for k in metrics if k.startswith(prefix))
        return [Column(f"Semantic score by {j} {eps_label(config.norm, config.eps)}",
                       metrics[f"{prefix}{j}]"].value, rank=80) for j in judges]

    def plots(self, runs, out_dir) -> list:
        from vitbench.board.plots import latest_runs
        latest = latest_runs(runs, self.name, lambda run: (run.model, run.config["norm"], run.config["eps"]))
        if not latest:
            return []
        out = Path(out_dir)
        paths = [plot_scores(list(latest.values()), out / "semantic_scores.png")]
        for run in latest.values():
            paths.append(plot_examples(run, out / f"semantic_examples_{run.model}.png"))
        return [p for p in paths if p is not None]

    def cost(self, config: SemanticConfig) -> float:
        return config.steps + 2.0


# -- plots ----------------------------------------------------------------------------------------------------

def plot_scores(runs: Sequence, out: Path) -> Path:
    """Semantic score (%) per model: a bar for the panel mean, a dot per panel model."""
    from vitbench.board.plots import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(runs)), 4), dpi=120)
    runs = sorted(runs, key=lambda r: r.model)
    for i, run in enumerate(runs):
        ax.bar(i, 100 * run.metrics["semantic_score"][0], color="C0", alpha=0.6)
        prefix = "semantic_score["
        members = [(k[len(prefix):-1], v[0]) for k, v in run.metrics.items() if k.startswith(prefix)]
        for j, (name, value) in enumerate(sorted(members)):
            ax.plot(i, 100 * value, marker="o", color=f"C{j + 1}", label=name if i == 0 else None, linestyle="")
    ax.set_xticks(range(len(runs)), [f"{r.model}\n({eps_label(r.config['norm'], r.config['eps'])})" for r in runs],
                  fontsize=7)
    ax.set_ylabel("panel accuracy on the perturbation (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, title="panel", title_fontsize=7)
    return save_figure(fig, out)


def plot_examples(run, out: Path) -> Path | None:
    """Grid of the stored example images (top) and their quantised perturbations (bottom), panel predictions as
    titles; None when the run stored no examples."""
    from vitbench.store import open_store
    store = open_store()
    try:
        limit = run.config.get("examples", DEFAULT_EXAMPLES)
        examples = [r for r in store.first_records(run.eval_key, limit) if "perturbation_png" in r]
    finally:
        store.close()
    if not examples:
        return None
    from vitbench.board.plots import pyplot, save_figure
    plt = pyplot()
    fig, axes = plt.subplots(2, len(examples), figsize=(1.4 * len(examples), 3.2), dpi=120, squeeze=False)
    for j, rec in enumerate(examples):
        axes[0, j].imshow(from_png_base64(rec["image_png"]))
        axes[1, j].imshow(from_png_base64(rec["perturbation_png"]))
        axes[0, j].set_title(f"y={rec['label']}", fontsize=7)
        axes[1, j].set_title(" ".join(str(p) for p in rec["panel_pred"].values()), fontsize=7)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.suptitle(f"{run.model}: images and perturbations ({eps_label(run.config['norm'], run.config['eps'])}); "
                 f"panel predictions below", fontsize=8)
    return save_figure(fig, out)
