"""Patch sensitivity (RSPC evaluation protocol, Guo et al. CVPR 2023; methods.md C).

Occlusion. The input is cut into a grid of P x P patches (P: the config's ``patch_size``, else the model's patch
size, else input_size // 8, i.e. an 8 x 8 grid for CNNs). Per image, k = floor(rho * N + 1/2) of the N patches
are chosen uniformly at random without replacement (rank of a uniform score drawn from the chunk generator, so
the mask is fixed per image by the run seed and chunk, and independent of batch size) and replaced by uniform
noise: x_hat = m * u + (1 - m) * x. ``noise: pixel`` (default) draws u ~ U[0, 1) in pixel space, the same x_hat
for every model (comparable across models); ``noise: normalised`` follows the authors (and the rspc recipe):
U[0, 1) in the model's normalised space, clamped to the valid range, i.e. u = clamp(mean + std * U[0, 1), 0, 1).
Adversarial variant (``adversarial: true``): instead of noise, an L-inf/L2 PGD perturbation of radius ``eps``
restricted to the same patches (mask passed to PGD; ``eps: 1`` with linf is an unconstrained patch attack).

Accuracy metrics (every model): clean and occluded top-1 accuracy, and the mean confidence drop
mean_i [p_c(x_i) - p_c(x_hat_i)] with c = argmax p(x_i) the clean prediction and p the softmax.

Per-layer stability, a PROXY (the paper publishes no per-layer metric in code), for models with a ``blocks``
list (ViT, DeiT, XCiT, ...), clean and occluded inputs run as one 2B batch:
- attention stability of block l: the cosine similarity between the clean and the occluded attention rows,
  averaged over heads and query rows: mean_{h, q} cos(A_l(x)[h, q, :], A_l(x_hat)[h, q, :]), computed as
  1 - ||a_hat - b_hat||^2 / 2 with unit rows (exactly 1 for identical maps). Per head, not head-averaged, so the
  same formula serves ViT token maps (B, H, N, N) and XCiT's channel-by-channel cross-covariance maps
  (B, H, D/H, D/H): for XCiT the stability is that of the channel maps (flag ``channel-attention-maps``).
- representation change of block l: ||b_l(x_hat) - b_l(x)||_F / ||b_l(x)||_F over the block output (N, D).
Both are averaged over samples per layer; the headline numbers average over layers. Models without blocks (CNNs)
get accuracy metrics only: the per-layer metrics are absent (None in records) and the chunk is flagged
``no-transformer-blocks``; blocks whose attention probabilities cannot be captured give ``no-attention-maps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vitbench.attacks.pgd import ALPHA_FACTOR_MADRY, pgd, random_start, step_size
from vitbench.errors import ConfigError
from vitbench.metrics import Column, Metric, column, proportion, threat_id
from vitbench.suites import register
from vitbench.suites.base import Chunk, Context, Suite, SuiteOutput, eps_label
from vitbench.threat import check_eps, parse_norm
from vitbench.zoo import introspect

DEFAULT_RHO = 0.1
CNN_GRID = 8                      # patches per side when the model has no patch size
NOISE_MODES = ("pixel", "normalised")
FLAG_NO_BLOCKS = "no-transformer-blocks"
FLAG_NO_ATTENTION = "no-attention-maps"
FLAG_CHANNEL_MAPS = "channel-attention-maps"


@dataclass(frozen=True)
class PatchSensitivityConfig:
    """rho: fraction of patches occluded; patch_size: grid side (default: the model's, else input // 8); noise:
    pixel or normalised (see the module docstring);
    attention: capture attention maps (false: block outputs only, fused attention kept); adversarial: patch-PGD
    instead of noise, with norm / eps (default: the model's threat model), steps, alpha = alpha_factor * eps / steps
    and a random start. norm and eps are cleared when adversarial is false (they do not change the result)."""

    rho: float = DEFAULT_RHO
    patch_size: int | None = None
    noise: str = "pixel"
    attention: bool = True
    adversarial: bool = False
    norm: str | None = None
    eps: float | None = None
    steps: int = 10
    alpha_factor: float = ALPHA_FACTOR_MADRY
    random_start: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.rho <= 1:
            raise ValueError(f"rho {self.rho} must lie in [0, 1] (the fraction of patches occluded)")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise {self.noise!r} is not one of {', '.join(NOISE_MODES)}")
        if self.patch_size is not None and self.patch_size < 1:
            raise ValueError("patch_size must be >= 1 (or left out: the model's patch size)")
        if not self.adversarial:  # the threat model only matters for the adversarial variant
            object.__setattr__(self, "norm", None)
            object.__setattr__(self, "eps", None)
            return
        if self.norm is None or self.eps is None or self.eps <= 0:
            raise ValueError("adversarial: true needs norm and eps > 0: pass --norm/--eps or give the model a "
                             "threat_model")
        object.__setattr__(self, "norm", parse_norm(self.norm))
        check_eps(self.norm, self.eps)
        if self.steps < 1 or self.alpha_factor <= 0:
            raise ValueError("steps must be >= 1 and alpha_factor > 0")

    @property
    def variant(self) -> str:
        """The config in metric ids: ``rho0.1``, ``rho0.1,linf:0.1``, ``rho0.1,gaussian``."""
        if self.adversarial:
            return f"rho{self.rho:g},{threat_id(self.norm, self.eps)}"
        return f"rho{self.rho:g}" + ("" if self.noise == "pixel" else f",{self.noise}")

    @property
    def label(self) -> str:
        if self.adversarial:
            return f"rho {self.rho:g}, {eps_label(self.norm, self.eps)}"
        return f"rho {self.rho:g}" + ("" if self.noise == "pixel" else f", {self.noise} noise")


# -- occlusion ------------------------------------------------------------------------------------------------

def num_occluded(rho: float, n_patches: int) -> int:
    """k = floor(rho * N + 1/2): the number of patches occluded per image (round half up)."""
    return int(math.floor(rho * n_patches + 0.5))


def resolve_patch_size(model: torch.nn.Module, patch_size: int | None, height: int, width: int) -> int:
    """The grid's patch side: the configured one, else the model's, else height // CNN_GRID.

    Raises:
        ConfigError: when the patch side does not divide the input size.
    """
    patch = patch_size or getattr(model, "patch_size", None) or max(1, height // CNN_GRID)
    if height % patch or width % patch:
        raise ConfigError(f"patch_sensitivity: patch_size {patch} does not divide the input size {height}x{width}; "
                          "set the suite's patch_size to a divisor")
    return int(patch)


def patch_mask(batch: int, n_patches: int, rho: float, generator: torch.Generator) -> torch.Tensor:
    """(B, N) bool: for each image exactly num_occluded(rho, N) patches, chosen uniformly without replacement."""
    k = num_occluded(rho, n_patches)
    order = torch.rand(batch, n_patches, generator=generator).argsort(dim=1)  # (B, N) random permutations
    mask = torch.zeros(batch, n_patches, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask


def pixel_mask(mask: torch.Tensor, grid: tuple[int, int], patch: int) -> torch.Tensor:
    """(B, N) patch mask (row-major grid) -> (B, 1, H, W) float 0/1 pixel mask."""
    m = mask.view(len(mask), 1, grid[0], grid[1]).float()
    return m.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


def occlude(x: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_hat = noise where the (B, 1, H, W) mask is 1, x elsewhere (exactly x where it is 0)."""
    return torch.where(mask.bool(), noise, x)


# -- per-layer statistics (applied inside the hooks to (2B, ...) tensors: clean half, then occluded half) ----------

def row_cosine(maps: torch.Tensor) -> torch.Tensor:
    """(2B, H, Q, K) -> (B,): mean over heads and rows of cos(clean row, occluded row), 1 - ||a - b||^2 / 2."""
    half = len(maps) // 2
    a = torch.nn.functional.normalize(maps[:half].float().flatten(1, -2), dim=-1)  # (B, H * Q, K)
    b = torch.nn.functional.normalize(maps[half:].float().flatten(1, -2), dim=-1)
    return (1 - (a - b).pow(2).sum(-1) / 2).clamp(-1, 1).mean(-1)


def relative_change(out: torch.Tensor) -> torch.Tensor:
    """(2B, ...) -> (B,): ||b(x_hat) - b(x)|| / ||b(x)|| over all of a sample's block output."""
    half = len(out) // 2
    clean, occ = out[:half].float().flatten(1), out[half:].float().flatten(1)
    return (occ - clean).norm(dim=1) / clean.norm(dim=1).clamp_min(1e-12)


@dataclass
class PairedPass:
    """Logits and per-layer statistics of clean and occluded inputs (run as one 2B batch)."""

    clean: torch.Tensor                 # (B, classes)
    occluded: torch.Tensor              # (B, classes)
    repr_change: torch.Tensor | None    # (B, L)
    attn_stability: torch.Tensor | None  # (B, L)
    flags: list[str]


def paired_forward(model: torch.nn.Module, x: torch.Tensor, x_hat: torch.Tensor, *, batch_size: int,
                   attention: bool = True) -> PairedPass:
    """Run [x; x_hat] through the model in 2b-batches (b = batch_size // 2) and collect per-layer statistics."""
    step = max(1, batch_size // 2)
    logits, change, attn = [], [], []
    blocks = model.blocks
    with torch.no_grad(), introspect.capture(model, attention=attention, reduce_block=relative_change,
                                             reduce_attention=row_cosine) as cap:
        for i in range(0, len(x), step):
            cap.clear()
            logits.append(model(torch.cat([x[i:i + step], x_hat[i:i + step]])))
            change.append(list(cap.blocks))
            attn.append(list(cap.attention))
    clean = torch.cat([lg[:len(lg) // 2] for lg in logits])
    occ = torch.cat([lg[len(lg) // 2:] for lg in logits])
    flags = [] if blocks else [FLAG_NO_BLOCKS]
    repr_change = _stack(change) if blocks else None
    attn_stability = _stack(attn) if blocks and attention else None
    if blocks and attention and attn_stability is None:
        flags.append(FLAG_NO_ATTENTION)
    return PairedPass(clean, occ, repr_change, attn_stability, flags)


def _stack(per_batch: list[list]) -> torch.Tensor | None:
    """[[(b,) per layer] per batch] -> (B, L); None unless every layer was captured in every batch."""
    if not per_batch or any(v is None for layers in per_batch for v in layers):
        return None
    return torch.cat([torch.stack(layers, dim=1) for layers in per_batch]).cpu()


def channel_maps(model: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether the first block's attention maps are channel-by-channel (XCiT) rather than token-by-token.

    Token maps end in N, the number of tokens of the block output (1, N, D); XCiT's end in D / H.
    """
    shape_of = lambda t: tuple(t.shape)  # noqa: E731
    with torch.no_grad(), introspect.capture(model, reduce_block=shape_of, reduce_attention=shape_of) as cap:
        model(x[:1])
    if not cap.attention or cap.attention[0] is None or cap.blocks[0] is None or len(cap.blocks[0]) != 3:
        return False
    return cap.attention[0][-1] != cap.blocks[0][1]


# -- the suite -----------------------------------------------------------------------------------------------

def _occluded_input(model, chunk: Chunk, config: PatchSensitivityConfig, mask_px: torch.Tensor,
                    batch_size: int) -> torch.Tensor:
    """Noise-occluded x_hat, or (adversarial variant) PGD restricted to the masked patches."""
    x = chunk.x
    if not config.adversarial:
        noise = torch.rand(tuple(x.shape), generator=chunk.generator("noise")).to(x.device)
        if config.noise == "normalised":
            noise = (model.mean + model.std * noise).clamp(0, 1)  # the wrapper's per-channel normalisation
        return occlude(x, mask_px, noise)
    alpha = step_size(config.eps, config.steps, alpha_factor=config.alpha_factor)
    start = (random_start(tuple(x.shape), norm=config.norm, eps=config.eps, generator=chunk.generator("start"),
                          device=x.device) if config.random_start else None)
    return pgd(model, x, chunk.y, norm=config.norm, eps=config.eps, steps=config.steps, alpha=alpha, inits=[start],
               mask=mask_px, batch_size=batch_size).x_adv.detach()


def _records(paired: PairedPass, y: torch.Tensor, k: int, patch: int) -> list[dict]:
    p_clean, p_occ = paired.clean.float().cpu().softmax(1), paired.occluded.float().cpu().softmax(1)
    conf, pred = p_clean.max(1)
    conf_occ = p_occ.gather(1, pred[:, None]).squeeze(1)
    occ_pred = p_occ.argmax(1)
    records = []
    for i in range(len(y)):
        records.append({
            "clean_correct": bool(pred[i] == y[i]), "occluded_correct": bool(occ_pred[i] == y[i]),
            "confidence": float(conf[i]), "confidence_occluded": float(conf_occ[i]),
            "repr_change": None if paired.repr_change is None else paired.repr_change[i].tolist(),
            "attn_stability": None if paired.attn_stability is None else paired.attn_stability[i].tolist(),
            "occluded_patches": k, "patch_size": patch})
    return records


class _PerSample:
    """The non-proportion metrics as arrays (confidence drop, per-block stability), so that a bootstrap resample
    is one fancy index."""

    def __init__(self, records: Sequence[dict]) -> None:
        self.drop = np.array([r["confidence"] - r["confidence_occluded"] for r in records], dtype=float)
        self.layers = {key: np.array([r[key] for r in records], dtype=float)       # (n, blocks)
                       for key in ("attn_stability", "repr_change")
                       if records and all(r[key] is not None for r in records)}

    def values(self, idx: np.ndarray) -> dict[str, float]:
        out = {"confidence_drop": float(self.drop[idx].mean()) if len(idx) else math.nan}
        for key, table in self.layers.items():
            means = table[idx].mean(axis=0)
            out.update({f"{key}_l{i}": float(v) for i, v in enumerate(means)})
            out[key] = float(means.mean())
        return out


@register
class PatchSensitivitySuite(Suite):
    name = "patch_sensitivity"
    version = 2
    Config = PatchSensitivityConfig
    plots = ("layer_stability",)
    summary = ("RSPC patch-occlusion protocol: occluded accuracy, confidence drop, per-block attention and "
               "representation stability (proxy); adversarial patch-PGD variant")

    def run(self, model, chunk: Chunk, config: PatchSensitivityConfig, ctx: Context) -> SuiteOutput:
        _, _, height, width = chunk.x.shape
        patch = resolve_patch_size(model, config.patch_size, height, width)
        grid = (height // patch, width // patch)
        n_patches = grid[0] * grid[1]
        if config.rho > 0 and num_occluded(config.rho, n_patches) == 0:
            raise ConfigError(f"patch_sensitivity: rho {config.rho:g} occludes no patch of a {grid[0]}x{grid[1]} grid: "
                              f"use rho >= {0.5 / n_patches:.3g} or a smaller patch_size")
        mask = patch_mask(len(chunk.y), n_patches, config.rho, chunk.generator("mask"))
        mask_px = pixel_mask(mask, grid, patch).to(chunk.x.device)
        x_hat = _occluded_input(model, chunk, config, mask_px, ctx.batch_size)
        paired = paired_forward(model, chunk.x, x_hat, batch_size=ctx.batch_size, attention=config.attention)
        flags = list(paired.flags)
        if paired.attn_stability is not None and channel_maps(model, chunk.x):
            flags.append(FLAG_CHANNEL_MAPS)
        return SuiteOutput(_records(paired, chunk.y.cpu(), num_occluded(config.rho, mask.shape[1]), patch), flags)

    def aggregate(self, records, config: PatchSensitivityConfig) -> dict[str, Metric]:
        out = {"clean_accuracy": proportion([r["clean_correct"] for r in records]),
               "occluded_accuracy": proportion([r["occluded_correct"] for r in records])}
        for name, value in _PerSample(records).values(np.arange(len(records))).items():
            out[name] = Metric(value, higher_is_better=not name.startswith(("confidence_drop", "repr_change")),
                               n=len(records))
        return out

    def resampler(self, records, config: PatchSensitivityConfig):
        return _PerSample(records).values

    def columns(self, config: PatchSensitivityConfig, metrics) -> list[Column]:
        what = "Patch-PGD acc" if config.adversarial else "Occluded acc"
        base, label = f"patch_sensitivity/{config.variant}", config.label
        shown = [("occluded_accuracy", what, 75, True), ("confidence_drop", "Conf drop", 76, True),
                 ("attn_stability", "Attn stability", 77, True), ("repr_change", "Repr change", 78, True)]
        return [column(metrics, name, id=f"{base}/{name}", label=f"{text} ({label})", rank=rank, percent=percent,
                       kind="analysis") for name, text, rank, percent in shown if name in metrics]

    def cost(self, config: PatchSensitivityConfig) -> float:
        return 1.0 + (config.steps if config.adversarial else 0)
