"""Errors a user can fix.

Every error raised for bad input is a :class:`VitbenchError`. Its message is one line that says what was wrong,
where (file, entry, key) and how to fix it; the CLI prints it on stderr and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VitbenchError(Exception):
    """Base class for errors caused by input the user can correct."""


class ConfigError(VitbenchError):
    """A zoo file, preset or config value is malformed or unknown."""


class NotFoundError(VitbenchError):
    """A named thing (model, suite, dataset, preset, recipe) is not registered."""


class CheckpointError(VitbenchError):
    """A checkpoint is missing, has the wrong hash, cannot be loaded safely or does not fit."""


class DataError(VitbenchError):
    """A dataset is missing or laid out differently from what its spec promises."""


class StoreError(VitbenchError):
    """The results store is locked, corrupt or inconsistent."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choices, or a list of what exists."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    if len(choices) <= 12:
        return f" (known: {', '.join(choices)})" if choices else ""
    return f" ({len(choices)} known; list them with `vitbench list`)"


def unknown(kind: str, name: str, choices: Iterable[str]) -> NotFoundError:
    """Build the error for an unknown registry name, with suggestions."""
    return NotFoundError(f"unknown {kind} {name!r}{did_you_mean(name, choices)}")
