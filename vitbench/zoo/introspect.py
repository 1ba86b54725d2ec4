"""Model introspection for the analysis suites: transformer block outputs and attention probabilities.

A ViT-like network (timm ViT, DeiT, XCiT, CaiT, ...) keeps its transformer blocks in a ``blocks`` list; each
block's attention module is ``block.attn``. timm computes attention with fused SDPA, which never materialises the
attention probabilities, so :func:`capture` temporarily sets ``attn.fused_attn = False`` (timm's own switch; the
explicit path computes the same function) and reads the probabilities where the explicit path passes them
through ``attn.attn_drop`` (a forward pre-hook on that module: the input of dropout is the post-softmax map).
Everything is restored on exit, also after an exception.

What the attention maps are depends on the family: token-by-token maps (B, H, N, N) for ViT/DeiT/CaiT, channel-
by-channel maps (B, H, D/H, D/H) for XCiT's cross-covariance attention (XCA). Window attention that folds windows
into the batch ((B * windows, H, w^2, w^2)) is unfolded to (B, windows * H, w^2, w^2). Networks without a
``blocks`` list (CNNs, Swin's ``layers``) have no blocks here: ``RobustModel.blocks`` is None.

Captured tensors are passed through caller-given ``reduce`` functions inside the hooks, so a suite can turn each
(2B, ...) map into a (B,) statistic at once instead of keeping every block's maps in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from vitbench.zoo.wrapper import RobustModel

Reduce = Callable[[torch.Tensor], Any]


@dataclass
class Capture:
    """What the hooks saw during the latest forward pass, one entry per block (None: nothing captured)."""

    blocks: list[Any] = field(default_factory=list)       # reduce_block(block output (B, N, D))
    attention: list[Any] = field(default_factory=list)    # reduce_attention(probabilities (B, H, Q, K))

    def clear(self) -> None:
        """Forget the previous pass (call before each forward)."""
        self.blocks[:] = [None] * len(self.blocks)
        self.attention[:] = [None] * len(self.attention)


def attention_probe(block: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(attention module, the module its probabilities pass through) for a block, or None when not found."""
    attn = getattr(block, "attn", None)
    drop = getattr(attn, "attn_drop", None)
    if isinstance(attn, nn.Module) and isinstance(drop, nn.Module):
        return attn, drop
    return None


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def unfold_windows(maps: torch.Tensor, batch: int) -> torch.Tensor | None:
    """(B * w, H, Q, K) -> (B, w * H, Q, K) for batch-folded window attention; None when shapes do not fit."""
    if maps.ndim != 4 or maps.shape[0] % batch:
        return None
    return maps if maps.shape[0] == batch else maps.reshape(batch, -1, *maps.shape[2:])


@contextmanager
def capture(model: RobustModel, *, attention: bool = True, reduce_block: Reduce = lambda t: t,
            reduce_attention: Reduce = lambda t: t) -> Iterator[Capture]:
    """Record every block's output (and attention probabilities) during forward passes inside the context.

    Args:
        model: a RobustModel (its ``blocks`` are hooked; none for CNNs).
        attention: also capture attention probabilities (disables fused attention inside the context).
        reduce_block: applied in the hook to each block output (B, ...); its result is stored.
        reduce_attention: applied to each attention map (B, H, Q, K) (window maps unfolded first).

    Yields:
        A :class:`Capture` whose lists have one slot per block (None where nothing was captured). For a model
        without blocks both lists are empty.
    """
    blocks = model.blocks or []                           # a RobustModel's transformer blocks
    state = Capture([None] * len(blocks), [None] * len(blocks))
    handles, restore = [], []
    batch: list[int] = [0]

    def on_block(i: int):
        def hook(_module, _inputs, output):
            out = _first_tensor(output)
            if out is not None:
                state.blocks[i] = reduce_block(out.detach())
        return hook

    def on_attention(i: int):
        def hook(_module, inputs):
            maps = _first_tensor(inputs)
            maps = None if maps is None else unfold_windows(maps.detach(), batch[0])
            if maps is not None:
                state.attention[i] = reduce_attention(maps)
        return hook

    def on_input(_module, inputs):
        x = _first_tensor(inputs)
        if x is not None:
            batch[0] = len(x)

    try:
        handles.append(model.register_forward_pre_hook(on_input))
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_hook(on_block(i)))
            probe = attention_probe(block) if attention else None
            if probe is not None:
                attn, drop = probe
                if hasattr(attn, "fused_attn"):
                    restore.append((attn, attn.fused_attn))
                    attn.fused_attn = False
                handles.append(drop.register_forward_pre_hook(on_attention(i)))
        yield state
    finally:
        for handle in handles:
            handle.remove()
        for attn, fused in restore:
            attn.fused_attn = fused
