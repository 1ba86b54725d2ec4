"""What identifies a model in the store: its weights' sha256 and its input pipeline (no torch needed).

A leaderboard row belongs to one model *version*: (name, weights sha256, architecture and preprocessing). When an
entry is re-registered with other weights, its old results stay in the store under the old fingerprint and are
never shown as the current entry's; :func:`current_fingerprint` tells which version the zoo holds now without
downloading or building anything.
"""

from __future__ import annotations

from vitbench._config import stable_hash
from vitbench.zoo import sources
from vitbench.zoo.schema import Zoo, ZooEntry


def model_fingerprint(entry: ZooEntry, weights_sha256: str) -> str:
    """What identifies a model's behaviour: weights, architecture and the input pipeline."""
    return stable_hash({"weights": weights_sha256, "arch": entry.arch, "arch_args": entry.arch_args,
                        "adapter": entry.adapter, "num_classes": entry.num_classes,
                        "preprocessing": entry.preprocessing})


def known_sha256(entry: ZooEntry) -> str | None:
    """The entry's weights sha256 when it is known without a download or a network build: pinned in the entry,
    recorded on first use, or the hash of a local file; None otherwise (timm/robustbench/hub sources)."""
    src = entry.weights.source
    if entry.weights.sha256:
        return entry.weights.sha256
    if sources.is_remote(src):
        record = sources.recorded_sha256(src)
        return None if record is None else record["sha256"]
    if src.startswith(("timm:", "robustbench:", "hf-hub:")):
        return None
    path = sources.local_path(src, entry.base_dir)
    try:
        return sources.cached_sha256(path) if path.is_file() else None
    except OSError:
        return None


def _entry_for(zoo: Zoo, name: str) -> ZooEntry | None:
    if name in zoo.entries:
        return zoo.entries[name]
    from vitbench.zoo.epochs import expand_checkpoints, split_checkpoint_name
    parent, epoch = split_checkpoint_name(name)
    if epoch is None or parent not in zoo.entries:
        return None
    return next((e for e in expand_checkpoints(zoo.entries[parent]) if e.name == name), None)


def current_fingerprint(zoo: Zoo, name: str) -> str | None:
    """The fingerprint of the version of ``name`` the zoo holds now; None when the name is not in the zoo or its
    weights cannot be identified without fetching them."""
    entry = _entry_for(zoo, name)
    if entry is None:
        return None
    sha = known_sha256(entry)
    return None if sha is None else model_fingerprint(entry, sha)
