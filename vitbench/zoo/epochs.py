"""Checkpoints along training as zoo entries (for the attack-effectiveness suite's gap-vs-epoch analysis).

A zoo entry may list ``checkpoints: [{epoch, source, sha256}]`` (written by ``vitbench train`` with
``keep_epoch_checkpoints``). :func:`expand_checkpoints` turns each into an entry of its own, named
``NAME+eEPOCH`` (e.g. ``digits-vit.light+e14``; ``+`` because entry names allow letters, digits and ``. _ + -``
only), with the parent's architecture, preprocessing, label space and threat model, and the checkpoint file as
its weights. Loading it goes through the ordinary source resolution, so a pinned ``sha256`` is verified exactly
as for any weight source (a checkpoint without one is hashed on use and identified by that hash in the store).
"""

from __future__ import annotations

import re
from dataclasses import replace

from vitbench.errors import ConfigError
from vitbench.zoo.schema import ZooEntry

EPOCH_SEP = "+e"
_SUFFIX_RE = re.compile(re.escape(EPOCH_SEP) + r"(\d+)$")


def checkpoint_name(name: str, epoch: int) -> str:
    """The derived entry name of epoch ``epoch`` of entry ``name``: ``NAME+eEPOCH``."""
    return f"{name}{EPOCH_SEP}{epoch}"


def split_checkpoint_name(name: str) -> tuple[str, int | None]:
    """(parent name, epoch) of a derived name; (name, None) for an ordinary entry name."""
    match = _SUFFIX_RE.search(name)
    if match is None:
        return name, None
    return name[:match.start()], int(match.group(1))


def expand_checkpoints(entry: ZooEntry) -> list[ZooEntry]:
    """One zoo entry per epoch checkpoint of ``entry``, ordered by epoch.

    Args:
        entry: a zoo entry whose ``checkpoints`` list its epoch checkpoints.

    Returns:
        Entries named ``NAME+eEPOCH`` whose weights are the checkpoint (source and sha256 from the list; the
        parent's state_dict_key / prefix options carry over), with no checkpoints or published numbers of their
        own (those describe the final model).

    Raises:
        ConfigError: when the entry lists no checkpoints, or lists an epoch twice.
    """
    if not entry.checkpoints:
        raise ConfigError(f"model {entry.name} lists no epoch checkpoints: train it with "
                          "`--set keep_epoch_checkpoints=true` or add `checkpoints: [{epoch, source, sha256}]` "
                          "to its zoo entry")
    epochs = [c.epoch for c in entry.checkpoints]
    if len(set(epochs)) != len(epochs):
        raise ConfigError(f"{entry.origin or 'zoo'}: models.{entry.name}.checkpoints lists an epoch twice: "
                          "keep one source per epoch")
    parent_notes = f"; {entry.provenance.notes}" if entry.provenance.notes else ""
    out = []
    for ckpt in sorted(entry.checkpoints, key=lambda c: c.epoch):
        weights = replace(entry.weights, source=ckpt.source, sha256=ckpt.sha256)
        provenance = replace(entry.provenance, notes=f"epoch {ckpt.epoch} checkpoint of {entry.name}{parent_notes}")
        out.append(replace(entry, name=checkpoint_name(entry.name, ckpt.epoch), weights=weights, checkpoints=(),
                           published=(), provenance=provenance))
    return out
