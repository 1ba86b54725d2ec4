"""Training configs: one frozen dataclass, read from YAML (``--config``) with ``--set KEY=VALUE`` overrides.

Recipe-specific defaults live in ``configs/<recipe>.yaml``; values a paper does not publish are config values
with a documented choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from vitbench import _config
from vitbench.errors import ConfigError
from vitbench.paths import package_file

CONFIG_DIR = package_file("train", "configs")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (its hash guards resume)."""

    recipe: str
    arch: str = "vit_tiny_patch16_224"
    arch_args: dict = field(default_factory=dict)
    adapter: str | None = None
    init: str | None = None            # zoo entry to start from (fine-tuning recipes)
    data: str = "digits?split=train"
    val_data: str | None = "digits"
    val_examples: int = 200
    input_size: int = 32
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: int = 3
    warmup_lr: float = 1e-6
    cooldown_epochs: int = 0
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    drop_path: float = 0.0
    # light augmentation
    rrc_scale: tuple[float, float] = (0.5, 1.0)
    crop_padding: int = 0              # > 0: RandomCrop(input_size, padding) replaces RandomResizedCrop (CIFAR style)
    hflip: float = 0.0
    color_jitter: float = 0.4
    # heavy (canonical DeiT) augmentation, for the light-recipe ablation
    randaugment: str | None = None
    mixup: float = 0.0
    cutmix: float = 0.0
    random_erasing: float = 0.0
    # the training attack
    attack_norm: str = "linf"
    attack_eps: Any = 0.0
    attack_steps: int = 1
    attack_alpha_factor: float = 1.5
    eps_warmup_epochs: int = 10
    attack_mode: str = "eval"
    # recipe parameters (TRADES, nullspace, RSPC) live here, validated by the recipe
    recipe_args: dict = field(default_factory=dict)
    seed: int = 0
    keep_epoch_checkpoints: bool = False
    checkpoint_every: int = 1          # with keep_epoch_checkpoints: keep every N-th epoch (and the last)
    amp: bool = True

    def __post_init__(self) -> None:
        from vitbench.limits import MAX_INPUT_SIZE
        from vitbench.threat import check_eps, parse_eps, parse_norm
        object.__setattr__(self, "attack_norm", parse_norm(self.attack_norm))
        object.__setattr__(self, "attack_eps", check_eps(self.attack_norm, parse_eps(self.attack_eps)))
        if not 8 <= self.input_size <= MAX_INPUT_SIZE:
            raise ValueError(f"input_size {self.input_size} must lie in [8, {MAX_INPUT_SIZE}] pixels")
        if self.attack_mode not in ("eval", "train"):
            raise ValueError(f"attack_mode {self.attack_mode!r} must be eval or train")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.warmup_epochs + self.cooldown_epochs > self.epochs:
            raise ValueError("warmup_epochs + cooldown_epochs exceed epochs")
        if not 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1:
            raise ValueError("rrc_scale must satisfy 0 < low <= high <= 1")
        if self.crop_padding < 0:
            raise ValueError("crop_padding must be >= 0")

    def hash(self) -> str:
        return _config.stable_hash(self)

    def to_dict(self) -> dict:
        return _config.to_plain(self)


def _parse_sets(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r} is not KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _merge(raw: dict, layer: dict) -> None:
    """Lay ``layer`` over ``raw``; two ``recipe_args`` mappings merge key by key."""
    for key, value in layer.items():
        if key == "recipe_args" and isinstance(value, dict) and isinstance(raw.get(key), dict):
            value = {**raw[key], **value}
        raw[key] = value


def recipe_defaults(recipe: str) -> dict:
    path = CONFIG_DIR / f"{recipe}.yaml"
    if not path.is_file():
        return {}
    return _config.load_yaml(path.read_text(), str(path)) or {}


def load_config(recipe: str, *, config_file: str | None = None, sets: list[str] = (),
                cli: dict | None = None) -> TrainConfig:
    """Recipe defaults < config file < CLI flags < --set overrides (``recipe_args`` merge key by key)."""
    raw: dict[str, Any] = dict(recipe_defaults(recipe))
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        _merge(raw, _config.load_yaml(path.read_text(), str(path)) or {})
    _merge(raw, {k: v for k, v in (cli or {}).items() if v is not None})
    _merge(raw, _parse_sets(list(sets)))
    raw["recipe"] = recipe
    names = {f.name for f in fields(TrainConfig)}
    for key in list(raw):
        if key.startswith("recipe_args.") and key not in names:
            raw.setdefault("recipe_args", {})
            raw["recipe_args"] = dict(raw["recipe_args"], **{key.split(".", 1)[1]: raw.pop(key)})
    return _config.build(TrainConfig, raw, f"train {recipe} config")


def with_overrides(config: TrainConfig, **kwargs) -> TrainConfig:
    return replace(config, **kwargs)
