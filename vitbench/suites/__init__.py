"""Suites (one module per evaluation family) and battery presets (YAML files listing suites and configs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitbench import _config
from vitbench.errors import ConfigError, unknown
from vitbench.paths import package_file
from vitbench.registry import Registry

PRESET_DIR = package_file("suites", "presets")
DEFAULT_NORM = "linf"
SUITES: Registry = Registry("suite", "vitbench.suites", skip=("base",))


def register(cls):
    """Class decorator: add a Suite subclass to the registry under its ``name``."""
    SUITES.add(cls.name, cls(), where=cls.__module__)
    return cls


def suites() -> dict[str, Any]:
    """All registered suites by name: every module of this package (except base) registers its suites."""
    return SUITES.all()


def get_suite(name: str):
    """The suite called ``name`` (NotFoundError with suggestions otherwise)."""
    return SUITES.get(name)


@dataclass(frozen=True)
class PresetItem:
    """One suite of a preset with its raw config mapping (resolved per model by :func:`resolve`)."""

    suite: str
    config: dict


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    items: tuple[PresetItem, ...]


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str) -> Preset:
    """A bundled preset by name, or a preset YAML file by path."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        if name_or_path not in preset_names():
            raise unknown("preset", name_or_path, preset_names())
        path = PRESET_DIR / f"{name_or_path}.yaml"
    doc = _config.load_yaml(path.read_text(), str(path)) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("suites"), list):
        raise ConfigError(f"{path}: a preset is a mapping with a 'suites' list")
    extra = set(doc) - {"description", "suites"}
    if extra:
        raise ConfigError(f"{path}: unknown key {sorted(extra)[0]!r} (a preset has description and suites)")
    items = []
    for i, raw in enumerate(doc["suites"]):
        if not isinstance(raw, dict) or "suite" not in raw:
            raise ConfigError(f"{path}: suites[{i}] needs a 'suite' key")
        body = {k: v for k, v in raw.items() if k != "suite"}
        get_suite(str(raw["suite"]))
        items.append(PresetItem(str(raw["suite"]), body))
    return Preset(path.stem, str(doc.get("description", "")), tuple(items))


def preset_from_suites(names: str) -> Preset:
    """An ad-hoc preset from ``--suite a,b`` (default configs)."""
    items = tuple(PresetItem(n.strip(), {}) for n in names.split(",") if n.strip())
    for item in items:
        get_suite(item.suite)
    if not items:
        raise ConfigError("--suite needs at least one suite name")
    return Preset("custom", "suites from the command line", items)


def resolve(item: PresetItem, *, overrides: dict, default_threat: tuple[str, float] | None, where: str,
            dataset: Any = None):
    """Build a suite's frozen config: CLI overrides over preset values, then the model's threat model.

    ``overrides`` (from --norm/--eps) apply to configs that have those fields; a norm or eps still unset is taken
    from the model's zoo threat model; an eps with no norm from anywhere means L-inf.
    """
    suite = get_suite(item.suite)
    fields = {f.name for f in dataclasses.fields(suite.Config)}
    raw = dict(item.config)
    for key, value in overrides.items():
        if key in fields and value is not None:
            raw[key] = value
    if default_threat is not None:
        if "norm" in fields and raw.get("norm") is None:
            raw["norm"] = default_threat[0]
        if "eps" in fields and raw.get("eps") is None:
            raw["eps"] = default_threat[1]
    if "norm" in fields and raw.get("norm") is None and raw.get("eps") is not None:
        raw["norm"] = DEFAULT_NORM  # an eps with no norm anywhere: the usual L-inf
    if dataset is not None:
        raw = suite.configure(raw, dataset)
    return _config.build(suite.Config, raw, f"{where}: suite {item.suite}")
