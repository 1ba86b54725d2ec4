"""From a zoo entry to a :class:`RobustModel` with verified weights."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

from vitbench.errors import CheckpointError
from vitbench.zoo import sources
from vitbench.zoo.archs import build_network
from vitbench.zoo.checkpoint import extract_state_dict, load_into, read_checkpoint
from vitbench.zoo.identity import model_fingerprint
from vitbench.zoo.schema import ZooEntry
from vitbench.zoo.wrapper import RobustModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model with the facts that identify it in the store."""

    model: RobustModel
    weights_sha256: str
    trust: str
    fingerprint: str


def _validator(entry: ZooEntry):
    """Check a downloaded file before it is kept: it must read as a checkpoint (not an HTML page)."""
    def validate(path) -> None:
        read_checkpoint(path)
    return validate


def resolve_weights(entry: ZooEntry) -> sources.Resolved | None:
    """Verified local file for a file-based source; None for timm/robustbench sources."""
    src = entry.weights.source
    if src.startswith(("timm:", "robustbench:")):
        return None
    return sources.resolve_file(src, sha256=entry.weights.sha256, base_dir=entry.base_dir, entry=entry.name,
                                validate=_validator(entry))


def state_dict_sha256(net: nn.Module) -> str:
    """A hash of a network's weights (used when the weights do not come from a file)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def weights_identity(entry: ZooEntry) -> tuple[str, str] | None:
    """(sha256, trust) of a file-based entry without building the network; None otherwise."""
    resolved = resolve_weights(entry)
    return None if resolved is None else (resolved.sha256, resolved.trust)


def _build_from_source(entry: ZooEntry) -> tuple[nn.Module, str, str]:
    src = entry.weights.source
    where = f"{entry.origin}: models.{entry.name}" if entry.origin else entry.name
    if src.startswith("timm:"):
        tag = src.split(":", 1)[1]
        arch = f"{entry.arch}.{tag}" if tag else entry.arch
        try:
            net = build_network(arch, num_classes=entry.num_classes, arch_args=entry.arch_args,
                                adapter=entry.adapter, pretrained=True, where=where)
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(f"{entry.name}: cannot fetch timm weights {arch}: {type(exc).__name__} "
                                  "(offline?)") from None
        return net, state_dict_sha256(net), "timm"
    if src.startswith("robustbench:"):
        from vitbench.zoo.extras import load_robustbench
        net = load_robustbench(entry)
        return net, state_dict_sha256(net), "robustbench"
    net = build_network(entry.arch, num_classes=entry.num_classes, arch_args=entry.arch_args,
                        adapter=entry.adapter, where=where)
    resolved = resolve_weights(entry)
    assert resolved is not None
    state = extract_state_dict(read_checkpoint(resolved.path), key=entry.weights.state_dict_key,
                               strip_prefix=entry.weights.strip_prefix, add_prefix=entry.weights.add_prefix,
                               where=f"{entry.name} ({resolved.path.name})")
    if entry.weights.timm_filter:
        state = timm_checkpoint_filter(net, state)
    load_into(net, state, where=f"{entry.name} ({resolved.path.name})", num_classes=entry.num_classes)
    return net, resolved.sha256, resolved.trust


def timm_checkpoint_filter(net: nn.Module, state: dict) -> dict:
    """Apply timm's own converter for the network's family (e.g. official XCiT or Swin checkpoints to timm keys)."""
    import sys
    module = sys.modules.get(type(net).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    return dict(fn(state, net)) if fn is not None else state


def load_model(entry: ZooEntry, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the network, load verified weights and wrap it; the result is in eval mode on ``device``.

    Raises:
        CheckpointError: missing/unsafe/mismatched checkpoint, or weights holding NaN/inf. ConfigError: unknown
            architecture or adapter.
    """
    net, sha, trust = _build_from_source(entry)
    check_finite(net, entry)
    prep = entry.preprocessing
    model = RobustModel(net, mean=prep.mean, std=prep.std, name=entry.name, num_classes=entry.num_classes,
                        input_size=prep.input_size)
    model.eval().to(device)
    model.entry = entry if entry.weights.sha256 == sha else replace(entry, weights=replace(entry.weights, sha256=sha))
    return LoadedModel(model, sha, trust, model_fingerprint(entry, sha))


def check_finite(net: nn.Module, entry: ZooEntry) -> None:
    """Refuse weights holding NaN or inf (a diverged run, a broken export): every output would be NaN."""
    for name, tensor in net.state_dict().items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise CheckpointError(f"{entry.name}: weight {name} holds {bad} NaN or inf value"
                                      f"{'s' if bad != 1 else ''} (of {tensor.numel()}): the checkpoint is broken "
                                      "(a diverged training run?); nothing was evaluated, fix or replace the file")


def check_logits(model: RobustModel, entry: ZooEntry, device: str | torch.device = "cpu") -> int:
    """One forward pass on a blank image; raise unless it yields ``num_classes`` finite logits."""
    size = entry.preprocessing.input_size
    with torch.no_grad():
        out = model(torch.full((2, 3, size, size), 0.5, device=device))
    if out.ndim != 2 or out.shape[1] != entry.num_classes:
        raise CheckpointError(f"{entry.name}: a forward pass gives output of shape {tuple(out.shape)}, expected "
                              f"(batch, {entry.num_classes}): fix num_classes or the architecture")
    if not torch.isfinite(out).all():
        raise CheckpointError(f"{entry.name}: a forward pass gives non-finite logits: the weights are broken")
    return int(out.shape[1])
