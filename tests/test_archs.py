"""Architecture adapters and vitbench-registered architectures."""

import pytest
import torch

from vitbench.errors import ConfigError
from vitbench.zoo.archs import build_network


@pytest.mark.parametrize("adapter, patch, grid", [("xcit-patch4", 4, 8), ("xcit-patch8", 8, 4)])
def test_xcit_low_resolution_keeps_imagenet_weights(adapter, patch, grid):
    """Stride changes only: an ImageNet (patch 16, 224 px) XCiT state dict loads unchanged into the 32 px model."""
    torch.manual_seed(0)
    imagenet = build_network("xcit_nano_12_p16_224", num_classes=10)
    low = build_network("xcit_nano_12_p16_224", num_classes=10, arch_args={"img_size": 32}, adapter=adapter)
    low.load_state_dict(imagenet.state_dict(), strict=True)
    tokens = low.patch_embed(torch.rand(2, 3, 32, 32))
    tokens = tokens[0] if isinstance(tokens, tuple) else tokens
    size = low.patch_embed.patch_size
    assert tokens.shape[1] == grid * grid and (size[0] if isinstance(size, tuple) else size) == patch
    assert low.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_adapter_on_a_non_xcit_is_refused():
    with pytest.raises(ConfigError, match="needs an XCiT"):
        build_network("test_resnet", num_classes=10, adapter="xcit-patch4")


def test_light_recipe_xcit_m12_l12_shapes():
    """The 12-layer XCiT-M and -L of the light recipe (timm registers only the 24-layer ones)."""
    m = build_network("xcit_medium_12_p16_224", num_classes=1000)
    assert len(m.blocks) == 12 and m.embed_dim == 512 and m.blocks[0].attn.num_heads == 8
    assert round(sum(p.numel() for p in m.parameters()) / 1e6) == 46  # the paper's 46M
    large = build_network("xcit_large_12_p16_224", num_classes=1000)
    assert len(large.blocks) == 12 and large.embed_dim == 768 and large.blocks[0].attn.num_heads == 16
    assert round(sum(p.numel() for p in large.parameters()) / 1e6) == 104
