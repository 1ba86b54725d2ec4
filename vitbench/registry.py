"""One registry type for everything vitbench finds by name: suites, recipes, dataset kinds.

A registry discovers its members by importing every module of its package once (no hand-kept import list: a new
suite is a new module), refuses a second member under a taken name with one line naming both, and answers an
unknown name with "did you mean ...".
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

from vitbench.errors import ConfigError, unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """Named members of one kind, discovered from the modules of a package.

    Args:
        kind: what a member is, for messages ("suite", "recipe", "dataset kind").
        package: dotted name of the package whose modules register members when imported.
        skip: module names of that package that register nothing (e.g. ``base``).
    """

    def __init__(self, kind: str, package: str, *, skip: tuple[str, ...] = ()) -> None:
        self.kind, self.package, self.skip = kind, package, skip
        self._members: dict[str, T] = {}
        self._where: dict[str, str] = {}
        self._discovered = False

    def add(self, name: str, member: T, *, where: str = "") -> T:
        """Register ``member`` under ``name``.

        Raises:
            ConfigError: when the name is taken by a member defined elsewhere.
        """
        if name in self._members and self._where.get(name) != where:
            raise ConfigError(f"{self.kind} {name!r} is defined twice ({self._where[name] or '?'} and "
                              f"{where or '?'}): rename one of them")
        self._members[name], self._where[name] = member, where
        return member

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_") and info.name not in self.skip:
                importlib.import_module(f"{self.package}.{info.name}")

    def get(self, name: str) -> T:
        """The member called ``name``.

        Raises:
            NotFoundError: for an unknown name, with the closest names.
        """
        self._discover()
        if name not in self._members:
            raise unknown(self.kind, name, self._members)
        return self._members[name]

    def all(self) -> dict[str, T]:
        """Every member by name."""
        self._discover()
        return dict(self._members)

    def names(self) -> list[str]:
        return sorted(self.all())

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
