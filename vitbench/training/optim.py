"""Optimiser and schedule shared by the recipes: timm's own parts, as the authors' code uses them.

Optimiser: ``timm.optim.create_optimizer_v2(net, "adamw", ...)``. With ``decay_exempt`` (the default) timm's
parameter groups exempt from weight decay every tensor with ndim <= 1, every ``*.bias`` and the network's
``no_weight_decay()`` set (ViT: pos_embed, cls_token, dist_token; XCiT: pos_embeder, cls_token, ...), the rule of
timm's train.py that the light recipe and RSPC run on. ``decay_exempt: false`` decays every parameter
(NS-ViT's plain ``AdamW(model.parameters(), weight_decay=1e-4)``).

Schedule: timm's ``CosineLRScheduler`` through ``create_scheduler_v2`` with the authors' arguments: linear warm-up
from ``warmup_lr`` over ``warmup_epochs``, the cosine counted from epoch 0 (``warmup_prefix=False``: the warm-up
does not restart it), ``t_initial = epochs - cooldown_epochs``, one cycle, then ``min_lr`` for the cool-down
epochs. vitbench's ``epochs`` is the total trained (timm's ``--epochs`` plus ``--cooldown-epochs``). Stepped per
epoch (timm's train.py), or per optimiser step with ``lr_per_step`` (NS-ViT's CosineAnnealingLR).
"""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler
from torch import nn

from vitbench.training.config import TrainConfig


def scaled_lr(config: TrainConfig, world: int) -> float:
    """The peak lr: ``config.lr`` as is, or, with ``lr_base_size``, rescaled from that global batch to this one.

    ``lr * (global_batch / lr_base_size) ** p`` with p = 1 (``lr_base_scale: linear``) or 0.5 (``sqrt``), as
    the authors' setup_task.py does for ``lr_base``.
    """
    if not config.lr_base_size:
        return config.lr
    ratio = config.batch_size * world / config.lr_base_size
    return config.lr * (ratio ** 0.5 if config.lr_base_scale == "sqrt" else ratio)


def make_optimizer(net: nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW from timm's factory over ``net``'s parameters (see the module docstring for the decay groups)."""
    params = net if config.decay_exempt else [p for p in net.parameters() if p.requires_grad]
    return create_optimizer_v2(params, "adamw", lr=lr, weight_decay=config.weight_decay, betas=(0.9, 0.999),
                               eps=1e-8)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> Scheduler:
    """timm's cosine scheduler with the authors' arguments (module docstring); call ``step(epoch)`` at the start
    of every epoch and, with ``lr_per_step``, ``step_update(global_step)`` before every optimiser step."""
    scheduler, total = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=config.epochs - config.cooldown_epochs,
        cooldown_epochs=config.cooldown_epochs, min_lr=config.min_lr, warmup_lr=config.warmup_lr,
        warmup_epochs=config.warmup_epochs, warmup_prefix=False, cycle_limit=1,
        step_on_epochs=not config.lr_per_step, updates_per_epoch=steps_per_epoch)
    assert total == config.epochs, (total, config.epochs)  # timm's length (cosine + cool-down) is vitbench's
    return scheduler


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def eps_at(epoch: int, *, eps: float, warmup_epochs: int) -> float:
    """Training eps at an epoch: linear warm-up by epoch index, eps(e) = e / warmup * eps (epoch 0 is clean)."""
    if warmup_epochs <= 0:
        return eps
    return min(1.0, epoch / warmup_epochs) * eps
