"""Optimiser and schedule shared by the recipes.

AdamW with 1-D parameters (norm weights, biases, layer-scale) exempt from weight decay (methods.md A).
The learning rate follows a per-step schedule: linear warm-up from ``warmup_lr`` over ``warmup_epochs``, cosine
decay to ``min_lr`` until ``epochs - cooldown_epochs``, then ``min_lr`` for the cool-down epochs.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: parameters with ndim >= 2 decay, 1-D parameters do not."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.999))


def lr_at(step: int, *, steps_per_epoch: int, epochs: int, lr: float, min_lr: float, warmup_epochs: int,
          warmup_lr: float, cooldown_epochs: int) -> float:
    """Learning rate at a global step (see the module docstring)."""
    warm = warmup_epochs * steps_per_epoch
    main_end = (epochs - cooldown_epochs) * steps_per_epoch
    if step < warm:
        return warmup_lr + (lr - warmup_lr) * step / max(warm, 1)
    if step >= main_end:
        return min_lr
    t = (step - warm) / max(main_end - warm, 1)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value


def eps_at(epoch: int, *, eps: float, warmup_epochs: int) -> float:
    """Training eps at an epoch: linear warm-up by epoch index, eps(e) = e / warmup * eps (epoch 0 is clean)."""
    if warmup_epochs <= 0:
        return eps
    return min(1.0, epoch / warmup_epochs) * eps
