"""Safe checkpoint reading: safetensors, or torch files that load with ``weights_only=True``.

A checkpoint that needs arbitrary unpickling is refused before anything in it runs. Nested state dicts (under a
key such as ``state_dict`` or ``model``) and key prefixes (``module.``) are handled by the entry's
``state_dict_key`` / ``strip_prefix`` / ``add_prefix`` keys, never by model-specific code.
"""

from __future__ import annotations

import argparse
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vitbench.errors import CheckpointError

# Plain-data classes that real checkpoints carry next to the weights (training args); they execute no code.
_SAFE_EXTRA_GLOBALS = [argparse.Namespace]


def read_checkpoint(path: Path) -> Mapping:
    """Read a checkpoint file without running code from it.

    Raises:
        CheckpointError: if the file is neither safetensors nor a torch file loadable with weights_only=True.
    """
    with open(path, "rb") as fh:
        head = fh.read(16)
    if _is_safetensors(path, head):
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from None
    if head.startswith(b"<") and b"html" in head.lower():
        raise CheckpointError(f"{path} is an HTML page, not a checkpoint: download the real file")
    try:
        with torch.serialization.safe_globals(_SAFE_EXTRA_GLOBALS), warnings.catch_warnings():
            # torch warns about a plain pickle's protocol before refusing it: the refusal below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} needs arbitrary unpickling to load ({_unpickling_reason(exc)}); refused, nothing in it was run. "
            "Convert it to safetensors in an environment you trust, then register that file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}): "
                              "is the file complete?") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict: save model.state_dict()")
    return obj


def _unpickling_reason(exc: pickle.UnpicklingError) -> str:
    """What in the file torch's weights-only unpickler refused: the offending global when it names one."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it references the Python global {found.group(1)}"
    detail = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    if detail:
        return detail.group(1).strip()[:200]
    return text.strip().splitlines()[0][:200] if text.strip() else "unsupported content"


def _is_safetensors(path: Path, head: bytes) -> bool:
    if path.suffix == ".safetensors":
        return True
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < 100_000_000 and head[8:9] == b"{"


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(obj: Mapping, *, key: str | None, strip_prefix: tuple[str, ...] = (),
                       add_prefix: str | None = None, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensors of a checkpoint and rename their keys.

    Args:
        obj: what :func:`read_checkpoint` returned.
        key: dotted path to the nested state dict (``state_dict``, ``model``, ``ema.model``); when None, the
            checkpoint itself if it is flat, else its single nested mapping of tensors.
        strip_prefix: prefixes removed from every key that starts with them (``module.``).
        add_prefix: a prefix added to every key after stripping.
    """
    state = obj
    if key:
        for part in key.split("."):
            if not isinstance(state, Mapping) or part not in state:
                have = ", ".join(sorted(map(str, state))[:8]) if isinstance(state, Mapping) else type(state).__name__
                raise CheckpointError(f"{where}: state_dict_key {key!r} not found (top-level keys: {have})")
            state = state[part]
    elif not _is_tensor_dict(obj):
        nested = [k for k, v in obj.items() if _is_tensor_dict(v)]
        if len(nested) != 1:
            have = ", ".join(sorted(map(str, obj))[:8])
            raise CheckpointError(f"{where}: cannot tell where the weights are (top-level keys: {have}); "
                                  "set weights.state_dict_key (--state-dict-key)")
        state = obj[nested[0]]
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{where}: no tensors found")
    renamed = {}
    for name, value in tensors.items():
        for prefix in strip_prefix:
            if name.startswith(prefix):
                name = name[len(prefix):]
        renamed[(add_prefix or "") + name] = value
    return renamed


def load_into(net: nn.Module, state: dict[str, torch.Tensor], *, where: str, num_classes: int) -> None:
    """Load a state dict strictly, turning mismatches into one actionable error line."""
    own = net.state_dict()
    for name, value in state.items():
        if name in own and own[name].shape != value.shape:
            hint = ""
            if value.ndim >= 1 and own[name].ndim >= 1 and own[name].shape[0] == num_classes:
                hint = (f": the checkpoint predicts {value.shape[0]} classes, the entry declares {num_classes}; "
                        "fix num_classes")
            raise CheckpointError(f"{where}: weight {name} has shape {tuple(value.shape)}, the architecture "
                                  f"expects {tuple(own[name].shape)}{hint or ' (check arch and arch_args)'}")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        prefix = _extra_prefix(unexpected, set(own))
        fix = (f"its keys carry the prefix {prefix!r}: add `--strip-prefix {prefix}` to `vitbench zoo register` "
               f"(in a zoo file: weights.strip_prefix: [{prefix}])" if prefix else
               "check arch/arch_args or set weights.strip_prefix / add_prefix")
        raise CheckpointError(f"{where}: checkpoint does not fit the architecture "
                              f"({_describe_keys(missing, unexpected)}); {fix}")
    net.load_state_dict(state, strict=True)


def _extra_prefix(unexpected: list[str], own: set[str]) -> str | None:
    """A leading key segment (``module.``, ``model.``) whose removal turns the unexpected keys into the
    architecture's own keys, if there is one."""
    heads = {name.split(".", 1)[0] + "." for name in unexpected if "." in name}
    for head in sorted(heads):
        stripped = [name[len(head):] for name in unexpected if name.startswith(head)]
        if stripped and all(name in own for name in stripped) and len(stripped) == len(unexpected):
            return head
    return None


def _describe_keys(missing: list[str], unexpected: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    return "; ".join(parts)
