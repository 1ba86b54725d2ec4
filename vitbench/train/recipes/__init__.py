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

from vitbench.train.config import TrainConfig


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


RECIPES: dict[str, Recipe] = {"standard": Recipe()}


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: add a recipe to the registry under its ``name``."""
    RECIPES[cls.name] = cls()
    return cls


def recipes() -> dict[str, Recipe]:
    """All recipes (importing every module of this package once)."""
    import importlib
    import pkgutil
    from pathlib import Path
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"vitbench.train.recipes.{info.name}")
    return dict(RECIPES)


def get_recipe(name: str) -> Recipe:
    from vitbench.errors import unknown
    registry = recipes()
    if name not in registry:
        raise unknown("recipe", name, registry)
    return registry[name]
