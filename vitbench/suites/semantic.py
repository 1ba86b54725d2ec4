"""Semantic perturbations (light recipe, Debenedetti et al. 2023; methods.md A, "Analyses").

Do a model's adversarial perturbations carry the semantics of the image's class? PGD-``steps`` (default 100) with
alpha = ``alpha_factor`` * eps / steps (1.5), a uniform random start, untargeted, no early stop, model in eval mode,
on the evaluation images. The perturbation delta = x_adv - x (|delta_i| <= eps, also for L2) is rescaled and
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
a clear error). The engine loads the panel through the zoo (the evaluated model's own zoo file overlays the
bundled one), each with its own entry's normalisation; they must predict the evaluated model's label set and take its
input size (errors otherwise). With ``exclude_self`` (default) a model never judges its own perturbations.
``n_examples: N`` (the engine's per-suite cap) evaluates only the first N examples (a quicker battery).
For the example grid, the first ``examples`` evaluated records of chunk 0 carry the image and p as base64 PNG
strings; ``vitbench.board.plots`` draws them.
Caching: the evaluation key holds the panel models' fingerprints (weights and input pipeline), so retraining a
panel model forces recomputation.
"""

from __future__ import annotations

import base64
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vitbench.attacks.pgd import ALPHA_FACTOR_LIGHT, pgd, random_start, step_size
from vitbench.errors import ConfigError, VitbenchError
from vitbench.metrics import Column, Metric, column, proportion, threat_id
from vitbench.suites import DEFAULT_NORM, register
from vitbench.suites.base import Chunk, Context, Suite, SuiteOutput, accuracy, eps_label
from vitbench.suites.clean import predict
from vitbench.threat import check_eps, parse_norm

DEFAULT_EPS = 4 / 255
DEFAULT_STEPS = 100
DEFAULT_EXAMPLES = 8
#: panels of standard classifiers per label space (ImageNet: the paper's ConvNeXt-XL, BEiT-L, Swin-B from timm)
DEFAULT_PANELS = {
    "digits": ("digits-vit.standard", "digits-resnet.standard"),
    "imagenet": ("timm:convnext_xlarge.fb_in22k_ft_in1k", "timm:beit_large_patch16_224.in22k_ft_in22k_in1k",
                 "timm:swin_base_patch4_window7_224.ms_in22k_ft_in1k"),
}


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


# -- the panel ------------------------------------------------------------------------------------------------

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


def check_panel(members: Sequence, entry, input_size: int) -> None:
    """The panel must predict the evaluated entry's label set and take its input size.

    Raises:
        VitbenchError: for another label set or another input size.
    """
    for member in members:
        if (member.dataset, member.num_classes) != (entry.dataset, entry.num_classes):
            raise VitbenchError(
                f"semantic: panel model {member.name} predicts {member.dataset} labels ({member.num_classes} classes) "
                f"but {entry.name} predicts {entry.dataset} ({entry.num_classes}): set the suite's panel to standard "
                f"classifiers of the {entry.dataset} label space (panel: [NAME, ...])")
        if member.preprocessing.input_size != input_size:
            raise VitbenchError(
                f"semantic: panel model {member.name} takes {member.preprocessing.input_size}px inputs but "
                f"{entry.name}'s perturbations are {input_size}px: pick panel models with input_size {input_size}")


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
    smoke_config = {"steps": 3}
    plots = ("semantic",)

    def models(self, config: SemanticConfig, entry) -> list[str]:
        """The judge panel (the engine loads it, and its fingerprints join the evaluation key)."""
        return panel_names(config, entry)

    def check_models(self, config: SemanticConfig, entry, members) -> None:
        check_panel(members, entry, entry.preprocessing.input_size)

    def run(self, model, chunk: Chunk, config: SemanticConfig, ctx: Context) -> SuiteOutput:
        if not ctx.models:
            raise VitbenchError("semantic: needs its judge panel "
                                "(run it through vitbench.evaluate or `vitbench bench`)")
        clean_ok = (predict(model, chunk.x, ctx.batch_size).argmax(1) == chunk.y).cpu()
        delta, adv_pred = _perturbations(model, chunk, config, ctx.batch_size)
        q = quantise_perturbation(delta, config.eps)                           # (B, C, H, W) uint8
        p = q.float().div(255)
        preds = {name: predict(judge, p, ctx.batch_size).argmax(1).tolist() for name, judge in ctx.models.items()}
        records = _records(chunk, clean_ok, adv_pred, preds, q, config.examples)
        return SuiteOutput(records)

    def aggregate(self, records, config: SemanticConfig) -> dict[str, Metric]:
        out = {"n_evaluated": Metric(float(len(records)), uncertain=False),
               "clean_accuracy": proportion([r["clean_correct"] for r in records]),
               "adv_accuracy": proportion([r["adv_correct"] for r in records])}
        names = list(records[0]["panel_pred"]) if records else []
        for name in names:
            out[f"semantic_score[{name}]"] = proportion([r["panel_pred"][name] == r["label"] for r in records])
        scores = [out[f"semantic_score[{name}]"].value for name in names]
        out["semantic_score"] = Metric(statistics.fmean(scores) if scores else float("nan"), n=len(records))
        broken = [r for r in records if not r["adv_correct"]]
        if names and broken:  # diagnostic: does the panel see the class the attack moved the model to?
            out["adv_class_agreement"] = Metric(statistics.fmean(
                accuracy([r["panel_pred"][n] == r["adv_pred"] for r in broken]) for n in names), n=len(broken),
                uncertain=False)
        return out

    def columns(self, config: SemanticConfig, metrics) -> list[Column]:
        """One column per panel member: with ``exclude_self`` the panels of different models differ (a model never
        judges its own perturbations), so only scores by the same judge are compared; the panel mean is a metric."""
        prefix = "semantic_score["
        judges = sorted(k[len(prefix):-1] for k in metrics if k.startswith(prefix))
        threat = threat_id(config.norm, config.eps)
        return [column(metrics, f"{prefix}{j}]", id=f"semantic/{prefix}{j}]@{threat}",
                       label=f"Semantic score by {j} {eps_label(config.norm, config.eps)}", rank=80, kind="analysis",
                       threat=(config.norm, config.eps)) for j in judges]

    def cost(self, config: SemanticConfig) -> float:
        return config.steps + 2.0
