"""Registering a checkpoint: validate, hash, test-load, then append to the user's zoo file atomically."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import yaml

from vitbench._fs import atomic_write_text, locked
from vitbench.errors import ConfigError
from vitbench.label_spaces import LABEL_SPACES
from vitbench.zoo import schema, sources
from vitbench.zoo.load import check_logits, load_model
from vitbench.zoo.schema import Preprocessing, ZooEntry, parse_zoo, read_zoo_file
from vitbench.zoo.sources import BUNDLED_WEIGHTS

log = logging.getLogger(__name__)

_HEADER = "# vitbench model zoo (schema: see docs/zoo.md, 'Zoo schema')\nversion: 1\nmodels:\n"


def default_preprocessing(arch: str, arch_args: dict) -> Preprocessing:
    """timm's pretrained config for the architecture, with img_size from arch_args when given."""
    import timm
    cfg = timm.models.get_pretrained_cfg(arch.split(".")[0] if "." not in arch else arch)
    size = arch_args.get("img_size")
    if cfg is None:
        return Preprocessing(input_size=int(size or 224))
    input_size = int(size if isinstance(size, int) else cfg.input_size[-1])
    crop = 1.0 if size and int(size) <= 64 else float(cfg.crop_pct)
    return Preprocessing(input_size=input_size, interpolation=cfg.interpolation if cfg.interpolation in
                         schema.INTERPOLATIONS else "bicubic", crop_pct=crop,
                         mean=tuple(cfg.mean), std=tuple(cfg.std))


def source_for(checkpoint: str, zoo_file: Path) -> str:
    """How a checkpoint is written into a zoo file: URLs as given, bundled files as ``bundled:NAME``, local
    files relative to the zoo file when below it, else absolute."""
    if sources.is_remote(checkpoint) or checkpoint.startswith(("hf-hub:", "timm:", "robustbench:", "bundled:")):
        return checkpoint
    path = Path(checkpoint).expanduser().resolve()
    if path.parent == BUNDLED_WEIGHTS.resolve():
        return f"bundled:{path.name}"
    try:
        return str(path.relative_to(zoo_file.resolve().parent))
    except ValueError:
        return str(path)


def input_warnings(entry: ZooEntry) -> list[str]:
    """Warnings for preprocessing that does not fit the images of the entry's dataset (e.g. timm's 224 px default
    for a model of 32 px digits), each naming the flag to set."""
    space = LABEL_SPACES.get(entry.dataset)
    prep = entry.preprocessing
    if space is None or space.native_size is None:
        return []
    out = []
    if prep.input_size != space.native_size:
        out.append(f"{entry.dataset} images are {space.native_size} px but {entry.name} takes {prep.input_size} px "
                   f"(so they are upsampled): if the model was trained at {space.native_size} px, register it with "
                   f"--input-size {space.native_size}")
    if prep.crop_pct != 1.0:
        out.append(f"{entry.dataset} images are used whole by convention, but {entry.name} crops the centre "
                   f"{prep.crop_pct:g} of each: pass --crop-pct 1 unless the model was trained that way")
    return out


def check_classes(dataset: str, num_classes: int | None) -> int:
    """The class count of a registration: the known label space's, and any contradicting count refused.

    Raises:
        ConfigError: when ``num_classes`` contradicts a known label space, or is missing for an unknown one.
    """
    known = LABEL_SPACES.get(dataset)
    if known is None:
        if num_classes is None:
            raise ConfigError(f"--num-classes is needed for dataset {dataset!r} (known label spaces: "
                              f"{', '.join(LABEL_SPACES)})")
        return num_classes
    if num_classes is not None and num_classes != known.num_classes:
        raise ConfigError(f"--num-classes {num_classes} contradicts --dataset {dataset}, which has "
                          f"{known.num_classes} classes: drop --num-classes, or name the label space the model "
                          "predicts with --dataset")
    return known.num_classes


def prepare(entry: ZooEntry, *, device: str = "cpu") -> ZooEntry:
    """Hash the weights (pinning sha256), load the model and check one forward pass; return the pinned entry.

    Raises:
        CheckpointError / ConfigError: when anything does not fit; nothing is written.
    """
    src = entry.weights.source
    if not src.startswith(("timm:", "robustbench:")):
        resolved = sources.resolve_file(src, sha256=entry.weights.sha256, base_dir=entry.base_dir, entry=entry.name)
        entry = replace(entry, weights=replace(entry.weights, sha256=resolved.sha256))
    loaded = load_model(entry, device=device)
    check_logits(loaded.model, entry, device)
    return entry


def writable_zoo(zoo_file: Path) -> Path:
    """The file a registration writes: ``zoo_file`` through its symlinks, never the zoo shipped in the package.

    Raises:
        ConfigError: when the path leads to the bundled zoo (the repository's ``./model_zoo.yaml`` links to it).
    """
    target = Path(zoo_file).resolve()
    if target == schema.BUNDLED_ZOO.resolve():
        raise ConfigError(f"{zoo_file} is the bundled zoo shipped with vitbench (a link to {target}); it is never "
                          "written by register: pass --zoo FILE (or set VITBENCH_ZOO) to name your own zoo file")
    return target


def append_entry(zoo_file: Path, entry: ZooEntry, *, replace_existing: bool = False) -> None:
    """Add an entry to a zoo file, keeping its text (and comments); the file is replaced atomically, under a lock
    held across the read-modify-write, so concurrent registrations all land.

    Raises:
        ConfigError: when the name exists in that file (unless ``replace_existing``), the file is invalid or it is
            the bundled zoo.
    """
    target = writable_zoo(zoo_file)
    with locked(target):
        _append_locked(zoo_file, target, entry, replace_existing)


def _append_locked(zoo_file: Path, target: Path, entry: ZooEntry, replace_existing: bool) -> None:
    existing = read_zoo_file(target) if target.exists() else {}
    if entry.name in existing and not replace_existing:
        raise ConfigError(f"{zoo_file}: an entry named {entry.name!r} exists; pick another name or pass --force")
    block = yaml.safe_dump({entry.name: entry.to_yaml_dict()}, sort_keys=False, default_flow_style=None, width=110)
    block = "".join(f"  {line}\n" for line in block.splitlines())
    text = target.read_text(encoding="utf-8") if target.exists() else _HEADER
    expected = dict(existing)
    expected[entry.name] = entry
    candidate = text if text.endswith("\n") else text + "\n"
    candidate += block
    if entry.name in existing or not _same(candidate, target, expected):
        entries = {name: e.to_yaml_dict() for name, e in expected.items()}
        candidate = _HEADER.replace("models:\n", "") + yaml.safe_dump({"models": entries}, sort_keys=False,
                                                                       default_flow_style=None, width=110)
        if not _same(candidate, target, expected):
            raise ConfigError(f"{zoo_file}: could not write the entry back consistently; check the file")
    atomic_write_text(target, candidate)


def _same(text: str, path: Path, expected: dict[str, ZooEntry]) -> bool:
    try:
        parsed = parse_zoo(text, str(path))
    except ConfigError:
        return False
    strip = {n: replace(e, origin="") for n, e in parsed.items()}
    want = {n: replace(e, origin="") for n, e in expected.items()}
    return strip == want

