"""Approximate-nullspace-noise fine-tuning for ViTs (Liu, Singh, Li, Wang 2024; methods.md B).

Noise lives in token space: one tensor delta shaped like a single image's patch embedding, (1, N, D) for a timm
ViT, shared by all images and added to the output of ``patch_embed`` (before the class token and the position
embedding) by a forward hook. Write E(x) for the patch embedding and f(E(x) + delta) for the rest of the network.

Synthesis (every epoch, for the current model, frozen in eval mode; only delta is optimised):

    delta_0 ~ U(-lim, lim)                                                     lim = 3
    minimise  d(delta) = mean_b || f(E(x_b) + delta) - f(E(x_b)) ||_2         on logits (B, K)
    with AdamW (lr 0.1), for at most ``rounds`` (3) passes over a random ``fraction`` (10%) of the training set,
    stopping early once
              g(delta) = mean_b sum_k (softmax f(E(x_b) + delta) - softmax f(E(x_b)))_k^2  <  tau (0.01)

    The lr follows the authors' CosineAnnealingLR, whose period is ``rounds`` passes over the *whole* training
    loader while synthesis stops after ``fraction`` of each: it ends at 0.5 (1 + cos(0.1 pi)) = 97.6% of 0.1, so
    in effect it stays at 0.1. tau 0.01 is the authors' default (their sweep: 0.01, 0.1).

    g is measured on each batch before its update. Not published, chosen here (recipe_args): AdamW weight decay
    0.01 on delta (torch's default), betas (0.9, 0.999), the synthesis batch size (``synth_batch_size``: the
    budget in steps is rounds * ceil(fraction * n / synth_batch_size)); the subset is drawn anew each epoch from
    (seed, epoch) (the authors' synthesis sampler never has its epoch set, so theirs is the same subset every
    epoch); d and g before and after synthesis are logged on the subset's first batch. The early stop looks at
    one batch, so small batches make it noisier.

Fine-tuning (every sample, one 2B batch so DDP syncs once):

    L = CE(f(E(x)), y) + CE(f(E(x) + delta), y)

10 epochs, AdamW lr 1e-4, weight decay 1e-4 on every parameter (the authors' plain ``AdamW(model.parameters())``:
``decay_exempt: false``), cosine per step to 0 (their CosineAnnealingLR), no warm-up; RandomResizedCrop + flip
only (configs/nullspace.yaml: on digits no flip, scale (0.5, 1)). As the authors do, 10% of the training set is
held out (never trained on) and the epoch of best clean accuracy on it is kept. Under DDP each rank synthesises
and rank 0's delta is broadcast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from vitbench import _config
from vitbench.training.config import TrainConfig
from vitbench.training.recipes import Recipe, StepOutput, register_recipe, require_vit


@dataclass(frozen=True)
class NullspaceArgs:
    """``recipe_args`` of the nullspace recipe (values in configs/nullspace.yaml)."""

    lim: float                  # delta init ~ U(-lim, lim) (paper: 3; swept 1, 2, 3)
    tau: float                  # early stop on the mean squared softmax gap (authors' code: 0.01; swept 0.01, 0.1)
    rounds: int                 # passes over the synthesis subset (paper: 3)
    fraction: float             # share of the training set used for synthesis (paper: 0.1)
    synth_lr: float             # AdamW lr for delta (authors: 0.1, its cosine barely moves; see the docstring)
    synth_weight_decay: float   # AdamW weight decay on delta (not published: 0.01, torch's default)
    synth_batch_size: int       # images per synthesis step (not published; digits: 16)

    def __post_init__(self) -> None:
        if self.lim <= 0 or self.tau <= 0 or self.synth_lr <= 0 or self.synth_weight_decay < 0:
            raise ValueError("lim, tau and synth_lr must be > 0 and synth_weight_decay >= 0")
        if self.rounds < 1 or self.synth_batch_size < 1 or not 0 < self.fraction <= 1:
            raise ValueError("rounds and synth_batch_size must be >= 1 and fraction in (0, 1]")


def nullspace_args(config: TrainConfig) -> NullspaceArgs:
    return _config.build(NullspaceArgs, config.recipe_args, f"train {config.recipe} config: recipe_args")


class TokenNoise(nn.Module):
    """Adds a perturbation to the output of a patch embedding through a forward hook.

    The hook is inert until :meth:`adding` switches it on; ``delta`` (a buffer, checkpointed) holds the current
    epoch's noise. The patch embedding's output may be a tensor (B, N, D) / (B, H, W, D) or a tuple whose first
    item is that tensor (XCiT).
    """

    def __init__(self, patch_embed: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("delta", torch.zeros(shape))                    # (1, N, D)
        self._active: torch.Tensor | None = None
        self._start = 0
        self._handle = patch_embed.register_forward_hook(self._hook)

    @contextmanager
    def adding(self, delta: torch.Tensor, start: int = 0) -> Iterator[None]:
        """Within the block, add ``delta`` to the embeddings of batch rows ``start:``."""
        self._active, self._start = delta, start
        try:
            yield
        finally:
            self._active = None

    def _hook(self, module, inputs, output):
        if self._active is None:
            return None
        if isinstance(output, tuple):
            return (self._add(output[0]),) + output[1:]
        return self._add(output)

    def _add(self, tokens: torch.Tensor) -> torch.Tensor:
        rows = (torch.arange(len(tokens), device=tokens.device) >= self._start).to(tokens.dtype)
        return tokens + rows.view(-1, *[1] * (tokens.ndim - 1)) * self._active.to(tokens.dtype)


@dataclass(frozen=True)
class Synthesis:
    """The outcome of one delta synthesis (distances on the first batch)."""

    delta: torch.Tensor
    steps: int
    initial_distance: float
    final_distance: float
    final_gap: float
    stopped_early: bool
    last_lr: float              # the lr of the last step taken


def _gaps(model: nn.Module, noise: TokenNoise, x: torch.Tensor, delta: torch.Tensor):
    """(d, g) of delta on batch x: mean logit L2 distance (differentiable in delta) and mean squared softmax gap."""
    with torch.no_grad():
        clean = model(x).float()                                               # (B, K)
    with noise.adding(delta):
        noisy = model(x).float()                                               # (B, K)
    distance = (noisy - clean).norm(dim=1).mean()
    gap = (noisy.softmax(1) - clean.softmax(1)).pow(2).sum(1).mean()
    return distance, float(gap.detach())


def _images(batches: Iterable) -> Iterator[torch.Tensor]:
    for batch in batches:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def synthesis_lr(step: int, args: NullspaceArgs, period: int) -> float:
    """The authors' CosineAnnealingLR value at ``step``: 0.5 synth_lr (1 + cos(pi step / period))."""
    return 0.5 * args.synth_lr * (1 + math.cos(math.pi * step / period))


def synthesize_delta(model: nn.Module, noise: TokenNoise, batches: Iterable, args: NullspaceArgs, *,
                     generator: torch.Generator, period: int | None = None) -> Synthesis:
    """Approximate nullspace noise for ``model`` (see the module docstring); ``batches`` is re-iterable.

    Args:
        model: the classifier ([0, 1] images -> logits) whose patch embedding ``noise`` is hooked on.
        batches: a DataLoader or list of (x, y) batches or image tensors (B, 3, H, W), on any device.
        generator: draws the initial delta (CPU generator).
        period: the lr cosine's period in steps; the recipe passes ``rounds`` passes over the whole training
            set (the authors'), the default is the budget itself (``rounds * len(batches)``).
    """
    device = noise.delta.device
    was_training = model.training
    model.eval()
    delta = ((torch.rand(noise.delta.shape, generator=generator) * 2 - 1) * args.lim).to(device).requires_grad_()
    opt = torch.optim.AdamW([delta], lr=args.synth_lr, weight_decay=args.synth_weight_decay)
    period = period or args.rounds * len(batches)
    first = next(_images(batches)).to(device)
    initial = float(_gaps(model, noise, first, delta)[0].detach())
    step, stopped = 0, False
    for _ in range(args.rounds):
        for x in _images(batches):
            distance, gap = _gaps(model, noise, x.to(device), delta)
            if gap < args.tau:
                stopped = True
                break
            for group in opt.param_groups:
                group["lr"] = synthesis_lr(step, args, period)
            delta.grad = torch.autograd.grad(distance, delta)[0]
            opt.step()
            step += 1
        if stopped:
            break
    final, gap = _gaps(model, noise, first, delta)
    model.train(was_training)
    return Synthesis(delta.detach(), step, initial, float(final.detach()), gap, stopped,
                     synthesis_lr(max(step - 1, 0), args, period))


def synthesis_loader(loader: DataLoader, args: NullspaceArgs, generator: torch.Generator) -> DataLoader:
    """Batches of a random ``args.fraction`` of the training loader's (augmented) dataset."""
    n = len(loader.dataset)
    idx = torch.randperm(n, generator=generator)[:max(1, math.ceil(args.fraction * n))].tolist()
    return DataLoader(Subset(loader.dataset, idx), batch_size=args.synth_batch_size, num_workers=loader.num_workers)


def _broadcast(delta: torch.Tensor) -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(delta, src=0)


@register_recipe
class NullspaceRecipe(Recipe):
    name = "nullspace"
    summary = "approximate nullspace noise (Liu et al. 2024): CE(f(x)) + CE(f(E(x) + delta)), a new delta each epoch"

    def check(self, model: nn.Module, config: TrainConfig) -> None:
        require_vit(model, config.recipe)
        nullspace_args(config)

    def setup(self, model: nn.Module, config: TrainConfig, device: torch.device) -> dict:
        embed = require_vit(model, config.recipe)
        with torch.no_grad():
            out = embed(torch.zeros(1, 3, model.input_size, model.input_size, device=device))
        shape = tuple((out[0] if isinstance(out, tuple) else out).shape)    # (1, N, D)
        return {"noise": TokenNoise(embed, shape).to(device), "args": nullspace_args(config)}

    def on_epoch_start(self, epoch: int, model: nn.Module, loader, config: TrainConfig, state: dict) -> dict:
        noise, args = state["noise"], state["args"]
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        period = args.rounds * math.ceil(len(loader.dataset) / args.synth_batch_size)   # the whole training set
        result = synthesize_delta(model, noise, synthesis_loader(loader, args, gen), args, generator=gen,
                                  period=period)
        noise.delta.copy_(result.delta)
        _broadcast(noise.delta)
        return {"delta_steps": result.steps, "delta_dist_init": result.initial_distance,
                "delta_dist": result.final_distance, "delta_gap": result.final_gap,
                "delta_early_stop": float(result.stopped_early), "delta_rms": float(noise.delta.pow(2).mean().sqrt()),
                "delta_lr": result.last_lr}

    def loss(self, model, x, target, epoch, config, state) -> StepOutput:
        noise = state["noise"]
        with noise.adding(noise.delta, start=len(x)):
            logits = model(torch.cat([x, x])).float()                         # (2B, K): clean, then noisy
        clean, noisy = logits[:len(x)], logits[len(x):]
        ce_clean = F.cross_entropy(clean, target, label_smoothing=config.label_smoothing)
        ce_noisy = F.cross_entropy(noisy, target, label_smoothing=config.label_smoothing)
        return StepOutput(ce_clean + ce_noisy, clean, {"ce_noisy": ce_noisy.detach()})
