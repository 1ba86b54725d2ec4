"""Architectures: timm's factory plus adapters that change a network after creation.

An adapter is a named, entry-level quirk (``adapter: xcit-patch4``) rather than a model-specific branch in the
generic code. The XCiT low-resolution adapters follow the light recipe (methods.md A): the patch embedding is
four 3x3 stride-2 convs; setting the stride of the first two (patch 4) or the first one (patch 8) to 1 keeps every
kernel shape, so ImageNet weights load unchanged, while XCiT's Fourier positional encoding adapts to the grid.
"""

from __future__ import annotations

from collections.abc import Callable

import timm
from timm.models import register_model
from torch import nn

from vitbench.errors import ConfigError, unknown

ADAPTERS: dict[str, Callable[[nn.Module], nn.Module]] = {}


def _xcit_12(embed_dim: int, num_heads: int, pretrained: bool, **kwargs) -> nn.Module:
    from timm.models import xcit
    cls = getattr(xcit, "Xcit", None) or xcit.XCiT  # the class was renamed in timm 1.0
    if pretrained:
        raise ConfigError("timm has no pretrained weights for the 12-layer XCiT-M/L; use a zoo checkpoint")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # passed by timm.create_model
        kwargs.pop(key, None)
    return cls(patch_size=16, embed_dim=embed_dim, depth=12, num_heads=num_heads, eta=1.0, tokens_norm=True, **kwargs)


# The light recipe's XCiT-M12 and XCiT-L12 are 12 layers deep; timm registers only the 24-layer M and L.
@register_model
def xcit_medium_12_p16_224(pretrained: bool = False, **kwargs) -> nn.Module:
    """XCiT-M12: dim 512, 8 heads, depth 12, eta 1.0, tokens_norm (Debenedetti et al. 2023)."""
    return _xcit_12(512, 8, pretrained, **kwargs)


@register_model
def xcit_large_12_p16_224(pretrained: bool = False, **kwargs) -> nn.Module:
    """XCiT-L12: dim 768, 16 heads, depth 12, eta 1.0, tokens_norm (Debenedetti et al. 2023)."""
    return _xcit_12(768, 16, pretrained, **kwargs)


def register_adapter(name: str) -> Callable:
    def deco(fn: Callable[[nn.Module], nn.Module]) -> Callable[[nn.Module], nn.Module]:
        ADAPTERS[name] = fn
        return fn
    return deco


def _xcit_strides(net: nn.Module, n_unit: int, patch: int) -> nn.Module:
    embed = getattr(net, "patch_embed", None)
    proj = getattr(embed, "proj", None)
    if proj is None or not isinstance(proj, nn.Sequential):
        raise ConfigError(f"adapter xcit-patch{patch} needs an XCiT convolutional patch embedding")
    convs = [m[0] for m in proj if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d)]
    if len(convs) != 4:
        raise ConfigError(f"adapter xcit-patch{patch} needs the patch-16 XCiT embedding (4 convs), found {len(convs)}")
    for conv in convs[:n_unit]:
        conv.stride = (1, 1)
    embed.patch_size = (patch, patch) if isinstance(embed.patch_size, tuple) else patch
    return net


@register_adapter("xcit-patch4")
def xcit_patch4(net: nn.Module) -> nn.Module:
    """XCiT patch 16 -> 4: first two patch-embedding convs at stride 1."""
    return _xcit_strides(net, 2, 4)


@register_adapter("xcit-patch8")
def xcit_patch8(net: nn.Module) -> nn.Module:
    """XCiT patch 16 -> 8: first patch-embedding conv at stride 1."""
    return _xcit_strides(net, 1, 8)


def build_network(arch: str, *, num_classes: int, arch_args: dict | None = None, adapter: str | None = None,
                  pretrained: bool = False, where: str = "") -> nn.Module:
    """Create a timm network (plus an optional adapter) with random or timm-pretrained weights.

    Raises:
        ConfigError: for an unknown architecture or adapter, or keyword arguments the architecture rejects.
    """
    if not timm.is_model(arch.split(".")[0]):
        raise unknown("architecture" + (f" in {where}" if where else ""), arch, timm.list_models())
    try:
        net = timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, **(arch_args or {}))
    except TypeError as exc:
        raise ConfigError(f"{where or arch}: arch_args rejected by {arch}: {exc}") from None
    if adapter:
        if adapter not in ADAPTERS:
            raise unknown("adapter", adapter, ADAPTERS)
        net = ADAPTERS[adapter](net)
    return net
