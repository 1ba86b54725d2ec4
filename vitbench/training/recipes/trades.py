"""TRADES fine-tuning (Zhang et al. 2019) as the light-recipe paper uses it on CIFAR (methods.md A).

Inner attack (model in ``attack_mode``, eval by default as in the authors' code): L-inf PGD with a uniform start in
[-eps, eps] that maximises

    KL(f(x) || f(x_adv)) = sum_k p_k(x) (log p_k(x) - log p_k(x_adv)),   p = softmax(logits), p(x) held fixed

with sign-gradient steps of size alpha = attack_alpha_factor * eps / attack_steps; projection onto the eps-ball
and [0, 1]. The paper's alpha 1.2/255 at eps 8/255 with PGD-10 is 0.15 eps, i.e. attack_alpha_factor 1.5 with
attack_steps 10 (the defaults in configs/trades.yaml). Outer loss, in train mode:

    L = CE(f(x), y) + beta * KL(f(x) || f(x_adv))      (KL averaged over the batch; gradient through both terms)

The clean and adversarial batches are two forwards, as in the authors' ``TRADESLoss`` (``model(x)``,
``model(x_adv)``), whenever the model has batch statistics (BatchNorm: XCiT, ResNets), where one 2B batch would
normalise each half with the statistics of both; without them (LayerNorm ViTs) one 2B forward computes the same.

The authors' values (configs/trades-paper.yaml, from their xcit-adv-finetuning.yaml: XCiT-S12 fine-tuned on
CIFAR-10): 20 + 2 cool-down epochs, 5 warm-up, AdamW lr 2e-4 per 512 (sqrt scaling), min lr 5e-6, wd 0.5,
drop-path 0.05, RandomCrop(32, pad 4), flip, ColorJitter 0.25, RandomRotation(2), the epoch of best robust
accuracy kept. configs/trades.yaml is that recipe sized for digits: no flip (a flipped digit is another glyph),
no rotation, no drop-path, lr 5e-4 -> 1e-6 without cool-down (a choice for digits, not compared with the
authors' schedule there), eps 0.1 (the digits threat model); model selection on a held-out 10% of the training
set. Start from a zoo entry with ``init: NAME`` (``--init NAME``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vitbench import _config
from vitbench.errors import ConfigError
from vitbench.training.attack import training_attack
from vitbench.training.config import TrainConfig
from vitbench.training.recipes import AdversarialRecipe, StepOutput, has_batch_norm, register_recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TradesArgs:
    """``recipe_args`` of the trades recipe (values in configs/trades.yaml)."""

    beta: float         # weight of the KL robustness term (paper: 6)

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError("beta must be >= 0")


def trades_args(config: TrainConfig) -> TradesArgs:
    return _config.build(TradesArgs, config.recipe_args, f"train {config.recipe} config: recipe_args")


def kl_clean_adv(logits_clean: torch.Tensor, logits_adv: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """KL(softmax(logits_clean) || softmax(logits_adv)); logits (B, K)."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits_clean, dim=1), reduction=reduction,
                    log_target=True)


def _kl_objective(model: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        clean = model(x).float()                                        # (B, K), fixed target distribution
    return lambda logits: kl_clean_adv(clean, logits.float(), reduction="sum")


def trades_attack(model: nn.Module, x: torch.Tensor, *, eps: float, steps: int, alpha: float, mode: str
                  ) -> torch.Tensor:
    """x_adv maximising KL(f(x) || f(x_adv)) by L-inf PGD from a uniform start; x (B, 3, H, W) in [0, 1].

    The model is put in ``mode`` ("eval" or "train") for the attack and restored; its parameters get no gradient.
    """
    return training_attack(model, x, None, norm="linf", eps=eps, steps=steps, alpha=alpha, mode=mode,
                           objective=_kl_objective).detach()


@register_recipe
class TradesRecipe(AdversarialRecipe):
    name = "trades"
    summary = "TRADES fine-tuning: CE(f(x), y) + beta KL(f(x) || f(x_adv)), PGD-10 on the KL (light-recipe paper)"

    def check(self, model: nn.Module, config: TrainConfig) -> None:
        trades_args(config)
        if config.attack_norm != "linf":
            raise ConfigError(f"train {config.recipe} config: attack_norm {config.attack_norm} is not supported "
                              "(the TRADES inner attack is L-inf): set attack_norm=linf")
        if config.init is None:
            log.warning("trades is a fine-tuning recipe and no init entry is set: training from scratch")

    def setup(self, model: nn.Module, config: TrainConfig, device: torch.device) -> dict:
        return {"args": trades_args(config), "batch_norm": has_batch_norm(model)}

    def loss(self, model, x, target, epoch, config, state) -> StepOutput:
        beta = state["args"].beta
        eps = self.train_eps(epoch, config)
        x_adv = trades_attack(self.attacked(model), x, eps=eps, steps=config.attack_steps,
                              alpha=self.attack_alpha(config), mode=config.attack_mode)
        if state.get("batch_norm"):                                      # each batch its own statistics
            clean, adv = model(x).float(), model(x_adv).float()          # (B, K) each
        else:
            logits = model(torch.cat([x, x_adv])).float()                # (2B, K): the same, in one forward
            clean, adv = logits[:len(x)], logits[len(x):]
        natural = F.cross_entropy(clean, target, label_smoothing=config.label_smoothing)
        robust = kl_clean_adv(clean, adv)
        return StepOutput(natural + beta * robust, adv, {"kl": robust.detach(), "eps": eps})
