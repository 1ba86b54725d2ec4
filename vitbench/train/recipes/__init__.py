"""Recipes: each supplies the training loss (and optional hooks) to the shared loop in loop.py.

standard      cross-entropy on clean inputs.
light-recipe  Debenedetti et al. 2023: PGD training attack (uniform start, alpha = 1.5 eps_final / steps, eps
              warm-up by epoch, attack model mode recorded), loss on adversarial logits only with label
              smoothing; light augmentation, AdamW with 1-D parameters exempt from decay (configs/light-recipe.yaml).
canonical-recipe  the same attack with the canonical DeiT recipe (RandAugment, MixUp, CutMix, random erasing,
              weight decay 0.05): the paper's ablation baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.train.attack import training_attack
from vitbench.train.config import TrainConfig
from vitbench.train.optim import eps_at


@dataclass
class StepOutput:
    loss: torch.Tensor
    logits: torch.Tensor        # logits the accuracy is logged on (adversarial for adversarial recipes)
    logs: dict[str, float]


class Recipe:
    """Base recipe: clean cross-entropy. Subclasses override ``loss`` and the hooks they need."""

    name: ClassVar[str] = "standard"
    summary: ClassVar[str] = "cross-entropy on clean inputs (AdamW, cosine with warm-up, light augmentation)"

    def check(self, model: nn.Module, config: TrainConfig) -> None:
        """Raise a VitbenchError when the recipe cannot serve this model."""

    def setup(self, model: nn.Module, config: TrainConfig, device: torch.device) -> dict[str, Any]:
        """Extra state (modules, optimisers) saved in checkpoints under ``recipe/``."""
        return {}

    def on_epoch_start(self, epoch: int, model: nn.Module, loader, config: TrainConfig, state: dict) -> dict:
        """Called before each epoch; returns values to log."""
        return {}

    def train_eps(self, epoch: int, config: TrainConfig) -> float:
        return 0.0

    def loss(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, epoch: int, config: TrainConfig,
             state: dict) -> StepOutput:
        logits = model(x)
        return StepOutput(F.cross_entropy(logits, target, label_smoothing=config.label_smoothing), logits, {})

    def after_backward(self, state: dict) -> None:
        """Called after loss.backward(), before the optimiser step."""


class LightRecipe(Recipe):
    name = "light-recipe"
    summary = "adversarial training for ViTs (Debenedetti et al. 2023): 1-2 step PGD, eps warm-up, wd 0.5, light aug"

    def train_eps(self, epoch: int, config: TrainConfig) -> float:
        return eps_at(epoch, eps=config.attack_eps, warmup_epochs=config.eps_warmup_epochs)

    def loss(self, model, x, target, epoch, config, state) -> StepOutput:
        eps = self.train_eps(epoch, config)
        alpha = config.attack_alpha_factor * config.attack_eps / max(config.attack_steps, 1)
        attacked = getattr(model, "module", model)  # attack the bare model: no DDP gradient sync
        x_adv = training_attack(attacked, x, target, norm=config.attack_norm, eps=eps, steps=config.attack_steps,
                                alpha=alpha, mode=config.attack_mode)
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, target, label_smoothing=config.label_smoothing), logits,
                          {"eps": eps})


class CanonicalRecipe(LightRecipe):
    name = "canonical-recipe"
    summary = "the light recipe's attack with the canonical DeiT recipe (heavy augmentation, wd 0.05): the ablation"


RECIPES: dict[str, Recipe] = {r.name: r for r in (Recipe(), LightRecipe(), CanonicalRecipe())}


def get_recipe(name: str) -> Recipe:
    from vitbench.errors import unknown
    if name not in RECIPES:
        raise unknown("recipe", name, RECIPES)
    return RECIPES[name]
