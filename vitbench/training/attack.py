"""The training attack (methods.md A): L-inf or L2 PGD with a uniform random start, step size
``alpha_factor * eps_final / steps`` (it does not follow the eps warm-up; projection clips it), projection onto
the current eps-ball and [0, 1]; the loss is cross-entropy against the hard label (under MixUp/CutMix the argmax
of the soft target, as the authors' ``pgd`` does), or another objective (TRADES: the KL to the clean
prediction)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.attacks.pgd import ascent, project, random_start

Objective = Callable[[nn.Module, torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def training_attack(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, *, norm: str, eps: float,
                    steps: int, alpha: float, mode: str, objective: Objective | None = None) -> torch.Tensor:
    """Adversarial examples for a training batch; the model is put in ``mode`` for the attack and restored.

    ``objective(model, x)``, called once in attack mode before the random start, returns the function of the logits
    the attack maximises; the default is cross-entropy against ``target``.
    """
    if eps <= 0 or steps <= 0:
        return x
    was_training = model.training
    model.train(mode == "train")
    if objective is None and target is not None and target.ndim > 1:
        target = target.argmax(1)                                               # (B, K) soft -> (B,) label
    loss_of = objective(model, x) if objective is not None else (lambda logits: F.cross_entropy(logits, target))
    delta = random_start(tuple(x.shape), norm=norm, eps=eps, device=x.device)
    delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
    for _ in range(steps):
        loss = loss_of(model(x + delta))
        grad = torch.autograd.grad(loss, delta)[0]
        with torch.no_grad():
            delta = project(delta + alpha * ascent(grad, norm), norm=norm, eps=eps)
            delta = (x + delta).clamp(0, 1) - x
        delta.requires_grad_(True)
    model.train(was_training)
    return (x + delta).detach()
