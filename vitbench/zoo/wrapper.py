"""The model contract: NCHW float images in [0, 1] in, logits out; normalisation lives inside."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RobustModel(nn.Module):
    """Wrap a network so every attack and suite sees [0, 1] pixels.

    Args:
        net: the classifier, taking normalised input.
        mean, std: per-channel normalisation applied inside ``forward``.
        name: the zoo entry's name.
        num_classes: number of logits.
        input_size: the square input resolution the network expects.
    """

    def __init__(self, net: nn.Module, *, mean: Sequence[float], std: Sequence[float], name: str,
                 num_classes: int, input_size: int) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.name = name
        self.num_classes = num_classes
        self.input_size = input_size
        self.entry = None  # the zoo entry (or wrap()'s in-memory entry) that identifies these weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [0, 1] -> (B, num_classes)
        return self.net((x - self.mean) / self.std)

    @property
    def patch_size(self) -> int | None:
        """Side of a patch for patch-embedding models (ViT, XCiT, ...), else None."""
        embed = getattr(self.net, "patch_embed", None)
        size = getattr(embed, "patch_size", None)
        if size is None:
            return None
        return int(size[0]) if isinstance(size, (tuple, list)) else int(size)

    @property
    def blocks(self) -> list[nn.Module] | None:
        """The transformer blocks, in order, where the architecture has a ``blocks`` list."""
        blocks = getattr(self.net, "blocks", None)
        if isinstance(blocks, (nn.ModuleList, nn.Sequential)) and len(blocks) > 0:
            return list(blocks)
        return None
