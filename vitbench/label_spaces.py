"""The label spaces vitbench knows by name: how many classes each has and the side of its images as released.

One place for these facts: zoo registration checks a model's class count against them, the engine refuses a model
on data of another known label space, and dataset openers name their label space from them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownSpace:
    """A named label space: its class count and the native side of its images (None for photos of any size)."""

    name: str
    num_classes: int
    native_size: int | None


LABEL_SPACES: dict[str, KnownSpace] = {s.name: s for s in (
    KnownSpace("digits", 10, 32),      # the embedded UCI digits, served at 32 x 32
    KnownSpace("cifar10", 10, 32),
    KnownSpace("cifar100", 100, 32),
    KnownSpace("imagenet", 1000, None),
)}


def num_classes(name: str) -> int | None:
    """The class count of a known label space, or None for another name."""
    space = LABEL_SPACES.get(name)
    return None if space is None else space.num_classes
