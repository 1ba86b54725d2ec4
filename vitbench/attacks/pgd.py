"""Projected gradient descent in [0, 1] pixel space, L-inf and L2.

Random starts are passed in (drawn by the caller from the chunk's generator), so a sample's attack does not
depend on which other samples share its batch. A sample counts as broken as soon as any iterate misclassifies
it (early stop keeps that iterate); restarts attack only the samples still unbroken.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.errors import ConfigError
from vitbench.threat import NORMS

#: step-size rule constants: alpha = c * eps / steps (2.5 from Madry et al.; 1.5 from the light recipe)
ALPHA_FACTOR_MADRY = 2.5
ALPHA_FACTOR_LIGHT = 1.5


def step_size(eps: float, steps: int, *, alpha: float | None = None, alpha_factor: float = ALPHA_FACTOR_MADRY) -> float:
    """The step size: a fixed ``alpha`` when given, else ``alpha_factor * eps / steps``."""
    if alpha is not None:
        return float(alpha)
    return alpha_factor * eps / max(steps, 1)


def random_start(shape: tuple[int, ...], *, norm: str, eps: float, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """A random perturbation inside the eps-ball.

    L-inf: uniform in [-eps, eps]^d. L2: a uniformly random direction scaled by eps * u, u ~ U(0, 1).
    """
    if norm == "linf":
        noise = torch.rand(shape, generator=generator) * 2 - 1
        return (noise * eps).to(device)
    if norm == "l2":
        direction = torch.randn(shape, generator=generator)
        flat = direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (len(shape) - 1)))
        radius = torch.rand((shape[0],) + (1,) * (len(shape) - 1), generator=generator)
        return (direction / flat * radius * eps).to(device)
    raise ConfigError(f"norm {norm!r} is not one of {', '.join(NORMS)}")


def project(delta: torch.Tensor, *, norm: str, eps: float) -> torch.Tensor:
    """Project perturbations onto the eps-ball of the norm."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (delta.ndim - 1)))
    return delta * torch.clamp(eps / norms, max=1.0)


def ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of the norm: sign for L-inf, the unit-L2 gradient for L2."""
    if norm == "linf":
        return grad.sign()
    g_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))
    return grad / g_norm


@dataclass
class PGDResult:
    """Per-sample outcome of a PGD attack."""

    x_adv: torch.Tensor      # (B, C, H, W) the returned adversarial examples
    success: torch.Tensor    # (B,) bool: misclassified at x_adv
    loss: torch.Tensor       # (B,) cross-entropy at x_adv
    steps_used: torch.Tensor  # (B,) gradient steps spent on the sample (all restarts)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float, steps: int, alpha: float,
        inits: list[torch.Tensor | None], early_stop: bool = True, mask: torch.Tensor | None = None,
        batch_size: int | None = None) -> PGDResult:
    """Attack one batch with PGD, one run per entry of ``inits`` (random starts, or None for x itself).

    Args:
        model: maps [0, 1] images to logits; used as is (the caller sets eval/train mode).
        x, y: (B, C, H, W) clean images in [0, 1] and (B,) labels.
        norm, eps, steps, alpha: threat model, number of gradient steps and step size.
        inits: one starting perturbation per restart, each (B, C, H, W) or None.
        early_stop: stop attacking a sample once an iterate misclassifies it (keeps that iterate).
        mask: optional (B, 1 or C, H, W) 0/1 tensor; the perturbation is restricted to where it is 1.
        batch_size: attack at most this many samples at a time (None: all); results do not depend on it beyond
            floating-point rounding, since each sample's start and steps are its own.

    Returns:
        PGDResult; for samples never broken, x_adv is the final iterate of the last restart.
    """
    if batch_size is not None and len(x) > batch_size:
        parts = [pgd(model, x[i:i + batch_size], y[i:i + batch_size], norm=norm, eps=eps, steps=steps, alpha=alpha,
                     inits=[None if n is None else n[i:i + batch_size] for n in inits], early_stop=early_stop,
                     mask=None if mask is None else mask[i:i + batch_size])
                 for i in range(0, len(x), batch_size)]
        return PGDResult(*(torch.cat([getattr(r, f.name) for r in parts]) for f in fields(PGDResult)))
    x = x.detach()
    out = None
    for init in inits:
        if out is None:  # the first run attacks every sample: no gathering
            out = PGDResult(*_pgd_run(model, x, y, norm=norm, eps=eps, steps=steps, alpha=alpha, init=init,
                                      early_stop=early_stop, mask=mask))
            continue
        active = (~out.success).nonzero().flatten() if early_stop else torch.arange(len(x), device=x.device)
        if len(active) == 0:
            break
        run = _pgd_run(model, x[active], y[active], norm=norm, eps=eps, steps=steps, alpha=alpha,
                       init=None if init is None else init[active], early_stop=early_stop,
                       mask=None if mask is None else mask[active])
        _merge(out, active, *run)
    if out is None:  # no runs: the clean images, unbroken
        zeros = torch.zeros(len(x), device=x.device)
        return PGDResult(x.clone(), zeros.bool(), zeros, zeros.long())
    return out


def _merge(out: PGDResult, active: torch.Tensor, adv, broke, loss, used) -> None:
    """Fold a restart on samples ``active`` into ``out``: its example replaces the kept one unless only the kept
    one is misclassified."""
    take = broke | ~out.success[active]
    out.x_adv[active[take]] = adv[take]
    out.loss[active[take]] = loss[take]
    out.success[active] |= broke
    out.steps_used[active] += used


def _start(x, init, *, norm, eps, mask):
    """The first perturbation: ``init`` (or zero) restricted to the mask, projected into the ball and the box."""
    delta = torch.zeros_like(x) if init is None else init.to(x)
    if mask is not None:
        delta = delta * mask
    return (x + project(delta, norm=norm, eps=eps)).clamp(0, 1) - x


def _update(delta, grad, x, *, norm, eps, alpha):
    """One ascent step of the perturbation, projected into the ball and then the box (x + delta in [0, 1])."""
    delta = project(delta + alpha * ascent(grad, norm), norm=norm, eps=eps)
    return (x + delta).clamp_(0, 1).sub_(x)


class _Outcome:
    """Per-sample results of one run, written once per sample: when it leaves the attack, or at the end."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x_adv = torch.empty_like(x)
        self.broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.loss = torch.zeros(len(x), device=x.device)
        self.used = torch.zeros(len(x), dtype=torch.long, device=x.device)

    def record(self, pos, xa, losses, broken, used: int) -> None:
        self.x_adv[pos] = xa
        self.loss[pos] = losses.to(self.loss.dtype)  # float32 whatever the model computes in
        self.broken[pos] = broken
        self.used[pos] = used

    def result(self):
        return self.x_adv, self.broken, self.loss, self.used


def _pgd_run(model, x, y, *, norm, eps, steps, alpha, init, early_stop, mask):
    """One PGD run. Returns (x_adv, broken, loss at x_adv, steps used) for the batch.

    The samples still attacked are kept as compact tensors (A, C, H, W), ``pos`` their places in the batch. With
    early stop a sample leaves at its first misclassified iterate, recorded then; a step that breaks every sample
    left skips its backward pass. The others are recorded after one scoring pass (no graph) at the final iterate.
    Without early stop nothing leaves and the loop never reads a value back from the device.
    """
    delta = _start(x, init, norm=norm, eps=eps, mask=mask)
    out = _Outcome(x)
    pos = torch.arange(len(x), device=x.device)
    for step in range(steps):
        xa = (x + delta).requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            losses = F.cross_entropy(logits, y, reduction="none")
        keep = None
        if early_stop:
            wrong = logits.argmax(1) != y
            if bool(wrong.any()):
                out.record(pos[wrong], xa.detach()[wrong], losses.detach()[wrong], True, step)
                keep = ~wrong
                if not bool(keep.any()):
                    return out.result()
        grad = torch.autograd.grad(losses.sum(), xa)[0]
        if keep is not None:
            grad, pos, x, y, delta = grad[keep], pos[keep], x[keep], y[keep], delta[keep]
            mask = None if mask is None else mask[keep]
        if mask is not None:  # before normalising: the whole L2 step lands inside the mask
            grad = grad * mask
        delta = _update(delta, grad, x, norm=norm, eps=eps, alpha=alpha)
    with torch.no_grad():  # the final iterate only needs a score
        xa = x + delta
        logits = model(xa)
        out.record(pos, xa, F.cross_entropy(logits, y, reduction="none"), logits.argmax(1) != y, steps)
    return out.result()
