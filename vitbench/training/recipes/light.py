"""The light recipe (Debenedetti et al. 2023, methods.md A) and its canonical-recipe ablation.

light-recipe      PGD training attack (uniform start, alpha = 1.5 eps_final / steps, eps warm-up by epoch, the
                  attack's model mode a recorded config value), loss on adversarial logits only with label
                  smoothing; light augmentation, AdamW with timm's weight-decay exemptions, the epoch of best
                  held-out PGD-10 accuracy kept (configs/light-recipe.yaml).
canonical-recipe  the same attack with the canonical DeiT recipe (RandAugment, MixUp, CutMix, random erasing,
                  weight decay 0.05): the paper's ablation baseline (configs/canonical-recipe.yaml).

BatchNorm models (XCiT, ResNets): after the attack the authors' ``AdvTrainingLoss`` runs ``model(x)`` and then
``model(x_adv)`` in train mode, and only the second enters the loss; the clean forward still moves the running
statistics. vitbench runs that clean forward too (without a graph: it only updates the statistics), and skips it
for models without batch statistics, where it changes nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitbench.training.attack import training_attack
from vitbench.training.recipes import AdversarialRecipe, StepOutput, has_batch_norm, register_recipe


@register_recipe
class LightRecipe(AdversarialRecipe):
    name = "light-recipe"
    summary = "adversarial training for ViTs (Debenedetti et al. 2023): 1-2 step PGD, eps warm-up, wd 0.5, light aug"

    def setup(self, model, config, device) -> dict:
        return {"batch_norm": has_batch_norm(model)}

    def loss(self, model, x, target, epoch, config, state) -> StepOutput:
        eps = self.train_eps(epoch, config)
        bare = self.attacked(model)
        x_adv = training_attack(bare, x, target, norm=config.attack_norm, eps=eps, steps=config.attack_steps,
                                alpha=self.attack_alpha(config), mode=config.attack_mode)
        if state.get("batch_norm"):
            with torch.no_grad():
                bare(x)                          # train mode: the clean batch's running-statistics update
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, target, label_smoothing=config.label_smoothing), logits,
                          {"eps": eps})


@register_recipe
class CanonicalRecipe(LightRecipe):
    name = "canonical-recipe"
    summary = "the light recipe's attack with the canonical DeiT recipe (heavy augmentation, wd 0.05): the ablation"
