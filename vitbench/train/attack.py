"""The training attack (methods.md A): L-inf or L2 PGD with a uniform random start, step size
``alpha_factor * eps_final / steps`` (it does not follow the eps warm-up; projection clips it), projection onto
the current eps-ball and [0, 1]; the loss is cross-entropy on hard or soft (MixUp) targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.attacks.pgd import ascent, project, random_start


def training_attack(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, norm: str, eps: float, steps: int,
                    alpha: float, mode: str) -> torch.Tensor:
    """Adversarial examples for a training batch; the model is put in ``mode`` for the attack and restored."""
    if eps <= 0 or steps <= 0:
        return x
    was_training = model.training
    model.train(mode == "train")
    delta = random_start(tuple(x.shape), norm=norm, eps=eps, device=x.device)
    delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
    for _ in range(steps):
        loss = F.cross_entropy(model(x + delta), target)
        grad = torch.autograd.grad(loss, delta)[0]
        with torch.no_grad():
            delta = project(delta + alpha * ascent(grad, norm), norm=norm, eps=eps)
            delta = (x + delta).clamp(0, 1) - x
        delta.requires_grad_(True)
    model.train(was_training)
    return (x + delta).detach()
