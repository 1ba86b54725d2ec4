"""Training checkpoints: written every epoch (atomically), resumable, guarded by the config hash.

``last.pt`` holds model, optimiser and recipe state, the epoch, the best epoch so far (model selection) and the
torch RNG state (Python's and numpy's are re-seeded from (seed, rank, epoch) every epoch); it is read back with
``weights_only=True`` (plain tensors, numbers and strings only).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import torch

from vitbench.errors import CheckpointError, ConfigError
from vitbench.training.config import TrainConfig

LAST = "last.pt"


def save(out: Path, *, epoch: int, config: TrainConfig, model_state: dict, optim_state: dict,
         recipe_state: dict, step: int, selection: dict | None = None) -> Path:
    path = out / LAST
    tmp = out / f".{LAST}.tmp-{os.getpid()}"
    torch.save({"epoch": epoch, "step": step, "config_hash": config.hash(), "config": json.dumps(config.to_dict()),
                "model": model_state, "optimizer": optim_state, "recipe": recipe_state,
                "selection": selection or {},
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp)
    os.replace(tmp, path)
    return path


#: what every last.pt written by :func:`save` holds (the RNG state of CUDA only on GPU machines)
REQUIRED = ("epoch", "step", "config_hash", "model", "optimizer", "recipe", "rng_cpu")


def _read(path: Path) -> dict:
    """Read last.pt; a truncated, corrupt or foreign file is a CheckpointError that leaves it in place."""
    keep = "it is left as it is: restore a copy, or move it aside to train from scratch"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__}), so --resume cannot continue "
                              f"from it; {keep}") from None
    missing = [k for k in REQUIRED if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a vitbench training checkpoint (no {missing[0]!r}); {keep}")
    return state


def load(out: Path, config: TrainConfig) -> dict | None:
    """The last checkpoint in ``out``, or None.

    Raises:
        CheckpointError: when it is truncated, corrupt or not a vitbench checkpoint (the file is kept).
        ConfigError: when it belongs to another config.
    """
    path = out / LAST
    if not path.is_file():
        return None
    state = _read(path)
    if state.get("config_hash") != config.hash():
        theirs = json.loads(state.get("config", "{}"))
        ours = config.to_dict()
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise ConfigError(f"{path} was written by another config (differs in: {', '.join(diff[:5]) or '?'}); "
                          "resume with the same config or use another --out")
    return state
