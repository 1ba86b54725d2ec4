"""Zoo entries: frozen dataclasses parsed from ``model_zoo.yaml`` files.

A zoo file is YAML with a ``version`` and a ``models`` mapping from entry name to entry. The bundled zoo ships
inside the package; a user zoo (``--zoo``, ``VITBENCH_ZOO`` or ``./model_zoo.yaml``) overlays it: an entry of the
same name in the user zoo replaces the bundled one. Every key is documented in docs/zoo.md ("Zoo schema").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vitbench import _config
from vitbench.errors import ConfigError, unknown
from vitbench.limits import MAX_INPUT_SIZE, MAX_NUM_CLASSES
from vitbench.paths import package_file
from vitbench.threat import ThreatModel, check_eps, parse_eps, parse_norm

ZOO_VERSION = 1
BUNDLED_ZOO = package_file("zoo", "model_zoo.yaml")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class Weights:
    """Where a checkpoint comes from and how to read it.

    source: a local path (relative to the zoo file), ``bundled:FILE``, an ``https://`` URL, ``gdrive:ID``,
    ``hf-hub:ORG/REPO[/FILE]``, ``timm:ARCH.TAG`` (timm's pretrained weights) or ``robustbench:NAME`` (extra).
    """

    source: str
    sha256: str | None = None
    state_dict_key: str | None = None
    strip_prefix: tuple[str, ...] = ()
    add_prefix: str | None = None
    timm_filter: bool = False

    def __post_init__(self) -> None:
        if self.sha256 is not None and not SHA256_RE.match(self.sha256.lower()):
            raise ValueError(f"sha256 {self.sha256!r} is not 64 hex digits (quote it in YAML: sha256: '...')")
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())


@dataclass(frozen=True)
class Preprocessing:
    """How images become the model's input, in [0, 1]; mean/std are applied inside the model wrapper."""

    input_size: int = 224
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct {self.crop_pct} must lie in (0, 1]")
        if not 8 <= self.input_size <= MAX_INPUT_SIZE:
            raise ValueError(f"input_size {self.input_size} must lie in [8, {MAX_INPUT_SIZE}] pixels")
        if self.input_size / self.crop_pct > MAX_INPUT_SIZE:
            raise ValueError(f"crop_pct {self.crop_pct:g} resizes to {self.input_size / self.crop_pct:.0f} px before "
                             f"the crop, above {MAX_INPUT_SIZE}: use a crop_pct near 0.875 or 1")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be > 0")


@dataclass(frozen=True)
class ThreatSpec:
    """The threat model a checkpoint was trained for (YAML form of :class:`ThreatModel`)."""

    norm: str
    eps: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm))
        object.__setattr__(self, "eps", check_eps(self.norm, parse_eps(self.eps)))

    def threat_model(self) -> ThreatModel:
        return ThreatModel(self.norm, self.eps)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Published:
    """One number the checkpoint's authors published (accuracy as a fraction in [0, 1])."""

    metric: str
    value: float
    dataset: str
    source: str
    norm: str | None = None
    eps: Any = None
    n_examples: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.value <= 1:
            raise ValueError(f"published {self.metric} value {self.value} must be a fraction in [0, 1]")
        if self.norm is not None:
            object.__setattr__(self, "norm", parse_norm(self.norm))
        if self.eps is not None:
            object.__setattr__(self, "eps", parse_eps(self.eps))
            if self.norm is not None:
                check_eps(self.norm, self.eps)


@dataclass(frozen=True)
class Provenance:
    """Where a checkpoint comes from: paper, code, recipe and training config, and the facts a RobustBench card
    states about it (authors, venue, a human architecture name, extra training data, forward passes per
    prediction). Unset card facts stay None (unknown), never a guessed constant."""

    paper: str | None = None
    url: str | None = None
    robustbench_name: str | None = None
    recipe: str | None = None
    config: dict | None = None
    selection: dict | None = None  # vitbench train's model selection: rule, metric, epoch, value, last_epoch
    notes: str | None = None
    authors: str | None = None
    venue: str | None = None
    architecture: str | None = None
    additional_data: bool | None = None
    number_forward_passes: int | None = None

    def __post_init__(self) -> None:
        if self.number_forward_passes is not None and self.number_forward_passes < 1:
            raise ValueError(f"number_forward_passes {self.number_forward_passes} must be >= 1")


@dataclass(frozen=True)
class EpochCheckpoint:
    """A checkpoint saved along training (read by the attack-effectiveness suite)."""

    epoch: int
    source: str
    sha256: str | None = None


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo: architecture, weights, preprocessing, label space, threat model, provenance."""

    name: str
    arch: str
    weights: Weights
    num_classes: int
    dataset: str
    arch_args: dict = field(default_factory=dict)
    adapter: str | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    threat_model: ThreatSpec | None = None
    provenance: Provenance = field(default_factory=Provenance)
    published: tuple[Published, ...] = ()
    checkpoints: tuple[EpochCheckpoint, ...] = ()
    origin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"name {self.name!r} may use letters, digits and . _ + - only")
        if not 2 <= self.num_classes <= MAX_NUM_CLASSES:
            raise ValueError(f"num_classes {self.num_classes} must lie in [2, {MAX_NUM_CLASSES}]")
        size = self.arch_args.get("img_size")
        if isinstance(size, int) and not 1 <= size <= MAX_INPUT_SIZE:
            raise ValueError(f"arch_args.img_size {size} must lie in [1, {MAX_INPUT_SIZE}] pixels")

    @property
    def base_dir(self) -> Path:
        """Folder that relative weight paths are resolved against (the zoo file's folder)."""
        return Path(self.origin).resolve().parent if self.origin else Path.cwd()

    def to_yaml_dict(self) -> dict:
        """The entry as it is written into a zoo file (defaults omitted, no origin)."""
        out: dict[str, Any] = {"arch": self.arch}
        if self.arch_args:
            out["arch_args"] = dict(self.arch_args)
        if self.adapter:
            out["adapter"] = self.adapter
        out["weights"] = _drop_defaults(self.weights, Weights(source=self.weights.source))
        out["num_classes"] = self.num_classes
        out["dataset"] = self.dataset
        out["preprocessing"] = _config.to_plain(self.preprocessing)
        if self.threat_model is not None:
            out["threat_model"] = {"norm": self.threat_model.norm, "eps": self.threat_model.eps}
        prov = _drop_defaults(self.provenance, Provenance())
        if prov:
            out["provenance"] = prov
        if self.published:
            out["published"] = [{k: v for k, v in _config.to_plain(p).items() if v is not None}
                                 for p in self.published]
        if self.checkpoints:
            out["checkpoints"] = [_config.to_plain(c) for c in self.checkpoints]
        return out


def _drop_defaults(obj: Any, default: Any) -> dict:
    plain, base = _config.to_plain(obj), _config.to_plain(default)
    return {k: v for k, v in plain.items() if v != base.get(k) or k == "source"}


def parse_entry(name: str, mapping: Any, origin: str) -> ZooEntry:
    """Parse one entry; errors name the file, the entry and the key."""
    where = f"{origin}: models.{name}"
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {mapping!r}")
    data = dict(mapping)
    if "origin" in data or "name" in data:
        raise ConfigError(f"{where}: unknown key {'origin' if 'origin' in data else 'name'!r} "
                          "(the entry's name is its key under models)")
    data["name"] = str(name)
    entry = _config.build(ZooEntry, data, where)
    return replace(entry, origin=origin)


def parse_zoo(text: str, origin: str) -> dict[str, ZooEntry]:
    """Parse a zoo file's text into entries by name."""
    doc = _config.load_yaml(text, origin)
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{origin}: a zoo file is a mapping with keys 'version' and 'models'")
    extra = set(doc) - {"version", "models"}
    if extra:
        key = sorted(extra)[0]
        raise ConfigError(f"{origin}: unknown top-level key {key!r} (a zoo file has 'version' and 'models')")
    version = doc.get("version", ZOO_VERSION)
    if version != ZOO_VERSION:
        raise ConfigError(f"{origin}: zoo version {version!r} is not supported "
                          f"(this vitbench reads version {ZOO_VERSION})")
    models = doc.get("models") or {}
    if not isinstance(models, dict):
        raise ConfigError(f"{origin}: 'models' must map entry names to entries")
    return {str(name): parse_entry(str(name), body, origin) for name, body in models.items()}


def read_zoo_file(path: Path) -> dict[str, ZooEntry]:
    """Read and parse one zoo file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"zoo file {path} does not exist: pass an existing file with --zoo") from None
    except OSError as exc:
        raise ConfigError(f"zoo file {path} cannot be read: {exc.strerror}") from None
    return parse_zoo(text, str(path))


def user_zoo_path(explicit: str | os.PathLike | None = None) -> Path:
    """The user's zoo file: --zoo, else $VITBENCH_ZOO, else ./model_zoo.yaml."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("VITBENCH_ZOO")
    return Path(env).expanduser() if env else Path.cwd() / "model_zoo.yaml"


@dataclass(frozen=True)
class Zoo:
    """The bundled zoo with the user's zoo laid over it."""

    entries: dict[str, ZooEntry]
    user_path: Path

    def get(self, name: str) -> ZooEntry:
        """Return the entry called ``name``; raise NotFoundError with suggestions when unknown."""
        try:
            return self.entries[name]
        except KeyError:
            raise unknown("model", name, self.entries) from None

    def names(self) -> list[str]:
        return sorted(self.entries)


def load_zoo(user: str | os.PathLike | None = None, *, require_user: bool = False) -> Zoo:
    """Load the bundled zoo and overlay the user's zoo file when it exists.

    Args:
        user: explicit user zoo path (``--zoo``); when given it must exist unless ``require_user`` is False.
        require_user: raise if the explicit user zoo file does not exist.
    """
    entries = read_zoo_file(BUNDLED_ZOO)
    path = user_zoo_path(user)
    if path.exists():
        if path.resolve() != BUNDLED_ZOO.resolve():
            entries.update(read_zoo_file(path))
    elif user and require_user:
        raise ConfigError(f"zoo file {path} does not exist: check the path given to --zoo")
    elif not user and os.environ.get("VITBENCH_ZOO"):
        raise ConfigError(f"zoo file {path} named by VITBENCH_ZOO does not exist: fix or unset VITBENCH_ZOO")
    return Zoo(entries, path)
