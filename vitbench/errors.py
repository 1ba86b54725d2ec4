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


#: where a user lists the names of each kind of registered thing
LISTINGS = {"model": "vitbench zoo list", "suite": "vitbench list suites", "preset": "vitbench list presets",
            "recipe": "vitbench list recipes", "dataset kind": "vitbench list datasets",
            "reference leaderboard": "vitbench list references", "architecture": "timm.list_models()"}


def did_you_mean(name: str, choices: Iterable[str], listing: str | None = None) -> str:
    """Return ' (did you mean X?)' for the closest choices, else what exists: all of it when short, else how to
    list it (``listing``) or the first few."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    if len(choices) <= 12:
        return f" (known: {', '.join(choices)})" if choices else ""
    if listing:
        return f" ({len(choices)} known; list them with `{listing}`)"
    return f" ({len(choices)} known: {', '.join(choices[:12])}, ...)"


def unknown(kind: str, name: str, choices: Iterable[str]) -> NotFoundError:
    """Build the error for an unknown registry name, with suggestions (and the command that lists them)."""
    listing = LISTINGS.get(kind.split(" in ")[0])
    return NotFoundError(f"unknown {kind} {name!r}{did_you_mean(name, choices, listing)}")
