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

CONFIG_DIR = package_file("training", "configs")
SELECT_BY = ("last", "clean", "robust")


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
    epochs: int = 30                   # epochs trained in all (timm's --epochs plus --cooldown-epochs)
    batch_size: int = 64               # per process
    lr: float = 1e-3                   # peak lr (at lr_base_size global batch when that is set)
    lr_base_size: int | None = None    # set: lr is rescaled to the global batch (the authors' lr_base_size)
    lr_base_scale: str = "linear"      # linear or sqrt (the authors' rule for AdamW)
    min_lr: float = 1e-5
    warmup_epochs: int = 3
    warmup_lr: float = 1e-6
    cooldown_epochs: int = 0           # the last epochs, held at min_lr
    lr_per_step: bool = False          # timm's scheduler stepped per optimiser step instead of per epoch
    weight_decay: float = 0.05
    decay_exempt: bool = True          # timm's rule: ndim <= 1, *.bias and no_weight_decay() are not decayed
    label_smoothing: float = 0.0
    drop_path: float = 0.0
    # light augmentation
    rrc_scale: tuple[float, float] = (0.5, 1.0)
    crop_padding: int = 0              # > 0: RandomCrop(input_size, padding) replaces RandomResizedCrop (CIFAR style)
    hflip: float = 0.0
    color_jitter: float = 0.4          # off under RandAugment, as in timm's transform factory
    rotation: float = 0.0              # > 0: RandomRotation(degrees) after colour jitter (the authors' rand_rotation)
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
    # model selection: which epoch's weights the run exports (the last one is kept beside it)
    holdout_fraction: float = 0.0      # this share of the training set is held out (never trained on)
    select_by: str = "last"            # last, clean (best held-out accuracy) or robust (best held-out PGD-10)
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
        if self.warmup_epochs + self.cooldown_epochs > self.epochs or self.cooldown_epochs >= self.epochs:
            raise ValueError("warmup_epochs + cooldown_epochs exceed epochs (the cosine needs at least one epoch)")
        if self.lr_base_scale not in ("linear", "sqrt"):
            raise ValueError(f"lr_base_scale {self.lr_base_scale!r} must be linear or sqrt")
        if self.rotation < 0:
            raise ValueError("rotation must be >= 0 (degrees)")
        self._check_selection()
        if not 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1:
            raise ValueError("rrc_scale must satisfy 0 < low <= high <= 1")
        if self.crop_padding < 0:
            raise ValueError("crop_padding must be >= 0")

    def _check_selection(self) -> None:
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by {self.select_by!r} must be one of {', '.join(SELECT_BY)}")
        if not 0 <= self.holdout_fraction < 1:
            raise ValueError("holdout_fraction must be in [0, 1)")
        if self.select_by != "last" and self.holdout_fraction == 0:
            raise ValueError(f"select_by {self.select_by} needs a held-out split: set holdout_fraction > 0 "
                             "(e.g. 0.1) or select_by=last")
        if self.select_by == "robust" and self.attack_eps <= 0:
            raise ValueError("select_by robust needs attack_eps > 0: set select_by=clean or select_by=last")

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


def config_path(name: str) -> Path:
    """A YAML file, or the name of a bundled config (``vitbench/training/configs/NAME.yaml``, e.g. ``trades-paper``)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / f"{name}.yaml"
    if bundled.is_file() and path.suffix == "":
        return bundled
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config file {path} does not exist (nor is it a bundled config: {', '.join(known)})")


def load_config(recipe: str, *, config_file: str | None = None, sets: list[str] = (),
                cli: dict | None = None) -> TrainConfig:
    """Recipe defaults < config file < CLI flags < --set overrides (``recipe_args`` merge key by key)."""
    raw: dict[str, Any] = dict(recipe_defaults(recipe))
    if config_file:
        path = config_path(config_file)
        _merge(raw, _config.load_yaml(path.read_text(), str(path)) or {})
    _merge(raw, {k: v for k, v in (cli or {}).items() if v is not None})
    _merge(raw, _parse_sets(list(sets)))
    raw["recipe"] = recipe
    names = {f.name for f in fields(TrainConfig)}
    for key in list(raw):
        if key.startswith("recipe_args.") and key not in names:
            raw.setdefault("recipe_args", {})
            raw["recipe_args"] = dict(raw["recipe_args"], **{key.split(".", 1)[1]: raw.pop(key)})
    return fit_input_size(_config.build(TrainConfig, raw, f"train {recipe} config"))


def fit_input_size(config: TrainConfig) -> TrainConfig:
    """A fixed-resolution architecture (a ViT built for timm's 224 px) gets ``img_size`` = the training input size
    unless its ``arch_args`` set one: the network is built for the images it will see, and the zoo entry says so."""
    if config.init or "img_size" in config.arch_args:
        return config
    import timm
    pretrained = timm.models.get_pretrained_cfg(config.arch.split(".")[0])
    if pretrained is None or not pretrained.fixed_input_size or pretrained.input_size[-1] == config.input_size:
        return config
    return replace(config, arch_args={**config.arch_args, "img_size": config.input_size})


def with_overrides(config: TrainConfig, **kwargs) -> TrainConfig:
    return replace(config, **kwargs)
