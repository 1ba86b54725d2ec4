"""Finding the other models a suite names (a judge panel): zoo names, or ``timm:ARCH.TAG`` for timm's weights."""

from __future__ import annotations

from pathlib import Path

from vitbench.errors import NotFoundError
from vitbench.zoo.schema import BUNDLED_ZOO, Weights, Zoo, ZooEntry, load_zoo

TIMM_PREFIX = "timm:"


def timm_entry(item: str) -> ZooEntry:
    """A zoo entry for ``timm:ARCH.TAG`` (timm's pretrained ImageNet weights and preprocessing)."""
    from vitbench.zoo.register import default_preprocessing
    name = item[len(TIMM_PREFIX):]
    arch, _, tag = name.partition(".")
    return ZooEntry(name=name, arch=arch, weights=Weights(source=f"{TIMM_PREFIX}{tag}"), num_classes=1000,
                    dataset="imagenet", preprocessing=default_preprocessing(name, {}))


def entry_zoo(entry: ZooEntry) -> Zoo:
    """The zoo an entry comes from: its own zoo file laid over the bundled one."""
    origin = Path(entry.origin) if entry.origin else None
    user = origin if origin and origin.is_file() and origin.resolve() != BUNDLED_ZOO.resolve() else None
    return load_zoo(user)


def resolve_member(name: str, zoo: Zoo | None, entry: ZooEntry) -> ZooEntry:
    """The entry of a model named by a suite's config for evaluating ``entry``.

    Raises:
        NotFoundError: for a name that is neither ``timm:...`` nor in the zoo.
    """
    if name.startswith(TIMM_PREFIX):
        return timm_entry(name)
    try:
        return (zoo or entry_zoo(entry)).get(name)
    except NotFoundError as exc:
        raise NotFoundError(f"{exc}: register it, or name another model in the suite's config") from None
