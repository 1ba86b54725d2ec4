"""The light recipe (Debenedetti et al. 2023, methods.md A) and its canonical-recipe ablation.

light-recipe      PGD training attack (uniform start, alpha = 1.5 eps_final / steps, eps warm-up by epoch, the
                  attack's model mode a recorded config value), loss on adversarial logits only with label
                  smoothing; light augmentation, AdamW with 1-D parameters exempt from decay (configs/light-recipe.yaml).
canonical-recipe  the same attack with the canonical DeiT recipe (RandAugment, MixUp, CutMix, random erasing,
                  weight decay 0.05): the paper's ablation baseline (configs/canonical-recipe.yaml).
"""

from __future__ import annotations

import torch.nn.functional as F

from vitbench.train.attack import training_attack
from vitbench.train.recipes import AdversarialRecipe, StepOutput, register_recipe


@register_recipe
class LightRecipe(AdversarialRecipe):
    name = "light-recipe"
    summary = "adversarial training for ViTs (Debenedetti et al. 2023): 1-2 step PGD, eps warm-up, wd 0.5, light aug"

    def loss(self, model, x, target, epoch, config, state) -> StepOutput:
        eps = self.train_eps(epoch, config)
        x_adv = training_attack(self.attacked(model), x, target, norm=config.attack_norm, eps=eps,
                                steps=config.attack_steps, alpha=self.attack_alpha(config), mode=config.attack_mode)
        logits = model(x_adv)
        return StepOutput(F.cross_entropy(logits, target, label_smoothing=config.label_smoothing), logits,
                          {"eps": eps})


@register_recipe
class CanonicalRecipe(LightRecipe):
    name = "canonical-recipe"
    summary = "the light recipe's attack with the canonical DeiT recipe (heavy augmentation, wd 0.05): the ablation"
