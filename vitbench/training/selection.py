"""Model selection: which epoch's weights a run exports, chosen on a split held out of the training set.

The light recipe and TRADES keep the epoch of best robust accuracy (the authors' ``eval_metric: robust_top1``,
which the paper calls early stopping); NS-ViT keeps the epoch of best clean accuracy on a 90/10 split of the
training set (``select_by``: robust / clean). vitbench holds the split out of the *training* set for both
(``holdout_fraction``, drawn from the seed): the authors of the light recipe select on their validation split,
which is also the split they report, and a benchmark's test images should not choose the epoch. Ties keep the
earlier epoch (the authors' strict ``>``). The last epoch's weights are kept beside the chosen ones.

Robust accuracy is PGD-10 at the final training eps (alpha 2.5 eps / 10, one seeded uniform start, eval mode);
clean is top-1 accuracy; both over every held-out example, on rank 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from vitbench.training.config import TrainConfig

METRICS = {"clean": "holdout_clean", "robust": "holdout_pgd10"}    # select_by -> the epoch record's key


@dataclass
class Best:
    """The best epoch so far (1-based, as epoch checkpoints count; 0 before any) and its metric value."""

    metric: str
    epoch: int = 0
    value: float = float("-inf")

    def offer(self, epoch: int, value: float) -> bool:
        """Take ``epoch`` if it beats the best so far; True when it did."""
        if value > self.value:
            self.epoch, self.value = epoch, float(value)
            return True
        return False

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.value = int(state["epoch"]), float(state["value"])


def make_best(config: TrainConfig) -> Best | None:
    return None if config.select_by == "last" else Best(METRICS[config.select_by])


def rule(config: TrainConfig) -> str:
    """The selection rule in words, as the zoo entry records it."""
    share = f"{100 * config.holdout_fraction:g}% of the training set held out"
    if config.select_by == "robust":
        return f"best held-out PGD-10 accuracy at {config.attack_norm} eps {config.attack_eps:g} ({share})"
    return f"best held-out clean accuracy ({share})"


def selection_record(config: TrainConfig, best: Best) -> dict:
    """What the zoo entry's ``provenance.selection`` says: the rule, the metric, the chosen and the last epoch."""
    return {"rule": rule(config), "metric": best.metric, "epoch": best.epoch, "value": best.value,
            "last_epoch": config.epochs}


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    return int((model(x).argmax(1) == y).sum())


def accuracy_counts(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], config: TrainConfig,
                    device: torch.device, *, robust: bool) -> tuple[int, int, int]:
    """(examples, clean correct, PGD-10 correct) over ``batches``; the model is in eval mode and restored."""
    from vitbench.attacks.pgd import pgd, random_start, step_size
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(0)
    n = clean = adv = 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        n, clean = n + len(y), clean + _correct(model, x, y)
        if robust:
            init = random_start(tuple(x.shape), norm=config.attack_norm, eps=config.attack_eps, generator=gen,
                                device=device)
            res = pgd(model, x, y, norm=config.attack_norm, eps=config.attack_eps, steps=10,
                      alpha=step_size(config.attack_eps, 10), inits=[init])
            adv += int((~res.success).sum())
    model.train(was_training)
    return n, clean, adv


def accuracies(model: nn.Module, batches, config: TrainConfig, device: torch.device, prefix: str) -> dict:
    """{prefix_clean, [prefix_pgd10]} accuracies (PGD-10 when the config attacks at all)."""
    robust = config.attack_eps > 0
    n, clean, adv = accuracy_counts(model, batches, config, device, robust=robust)
    out = {f"{prefix}_clean": clean / max(n, 1)}
    if robust:
        out[f"{prefix}_pgd10"] = adv / max(n, 1)
    return out
