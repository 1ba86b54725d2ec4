"""Recipes: each supplies the training loss (and optional hooks) to the shared loop in loop.py.

The base :class:`Recipe` (``standard``: cross-entropy on clean inputs) lives here; every other module of this
package defines recipes and registers them with :func:`register_recipe` (light.py: the light recipe and its
canonical-recipe ablation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.registry import Registry
from vitbench.training.config import TrainConfig


@dataclass
class StepOutput:
    loss: torch.Tensor
    logits: torch.Tensor        # logits the accuracy is logged on (adversarial for adversarial recipes)
    logs: dict[str, float | torch.Tensor]  # last batch values, converted to float once per epoch


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


class AdversarialRecipe(Recipe):
    """Shared by recipes that train against an attack: the eps warm-up by epoch, the step size
    ``attack_alpha_factor * attack_eps / attack_steps`` (from the final eps), and the model the attack runs on."""

    def train_eps(self, epoch: int, config: TrainConfig) -> float:
        from vitbench.training.optim import eps_at
        return eps_at(epoch, eps=config.attack_eps, warmup_epochs=config.eps_warmup_epochs)

    @staticmethod
    def attack_alpha(config: TrainConfig) -> float:
        return config.attack_alpha_factor * config.attack_eps / max(config.attack_steps, 1)

    @staticmethod
    def attacked(model: nn.Module) -> nn.Module:
        """The bare model under DDP: the attack's backward passes need no gradient sync."""
        return getattr(model, "module", model)


def has_batch_norm(model: nn.Module) -> bool:
    """True when some layer normalises with batch statistics and keeps running ones (BatchNorm; XCiT, ResNets),
    so how many forwards a batch takes, and with which images, changes the model. LayerNorm ViTs: False."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules())


def require_vit(model: nn.Module, recipe: str, *, blocks: bool = False) -> nn.Module:
    """The network's ``patch_embed`` (and, with ``blocks``, a list of transformer blocks whose input size is a
    multiple of the patch size), or a ConfigError naming the model and the fix."""
    from vitbench.errors import ConfigError
    needs = "a patch embedding and a list of transformer blocks (timm `patch_embed`, `blocks`)" if blocks else \
        "a patch embedding (timm `patch_embed`)"
    if getattr(model, "patch_size", None) is None or (blocks and getattr(model, "blocks", None) is None):
        raise ConfigError(f"recipe {recipe} needs a ViT with {needs}; model "
                          f"{getattr(model, 'name', type(model).__name__)!r} has none: pick a ViT --arch or --init")
    if blocks and model.input_size % model.patch_size:
        raise ConfigError(f"recipe {recipe}: input size {model.input_size} is not a multiple of the patch size "
                          f"{model.patch_size}; set input_size to a multiple")
    return model.net.patch_embed


#: every recipe, discovered from the modules of this package (the base ``standard`` recipe lives here)
RECIPES: Registry[Recipe] = Registry("recipe", __name__)
RECIPES.add("standard", Recipe(), where=__name__)


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: add a recipe to the registry under its ``name`` (a taken name is refused)."""
    RECIPES.add(cls.name, cls(), where=cls.__module__)
    return cls


def recipes() -> dict[str, Recipe]:
    """All recipes by name."""
    return RECIPES.all()


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (NotFoundError with suggestions otherwise)."""
    return RECIPES.get(name)
