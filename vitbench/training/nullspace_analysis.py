"""The exact nullspace of a ViT's patch embedding (Liu et al. 2024, methods.md B; an analysis tool).

The patch embedding is one linear map per patch: a patch z_p in R^{C P^2} (normalised pixels, flattened in the
conv weight's (C, P, P) order) becomes W z_p + b, with W in R^{D x C P^2} the ``patch_embed.proj`` conv weight.
Its nullspace is spanned by the right singular vectors of W whose singular value is at most

    tol = sigma_max * eps * max(D, C P^2)          (numpy's matrix_rank rule, eps: float64's machine epsilon)

The SVD and the tolerance are both float64: a float32 weight is an exact float64 matrix, and float32's eps in
the tolerance (what numpy would use for a float32 array, whose SVD is only float32-accurate) is large enough
to count the smallest singular value of a square random 768 x 768 embedding as zero for about 1 seed in 4. So
its dimension is C P^2 - rank(W) >= C P^2 - D (ViT-S/32: >= 2688, ViT-B/16: 0 generically). Adding one
nullspace vector v to every patch, z -> z + s * tile(v), leaves every token embedding, hence the logits,
unchanged. The check runs on the network in float64 (so it measures the nullspace, not float32 rounding) and on
normalised input without clamping: in pixel space the same shift is s * std_c * v, which is not kept in [0, 1].
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from vitbench.errors import ConfigError


@dataclass(frozen=True)
class Nullspace:
    """The nullspace of a patch embedding W in R^{D x C P^2}."""

    basis: torch.Tensor            # (K, C, P, P): orthonormal as K vectors of R^{C P^2}
    singular_values: torch.Tensor  # (min(D, C P^2),) descending
    tolerance: float
    embed_dim: int                 # D
    in_chans: int                  # C
    patch_size: int                # P

    @property
    def dimension(self) -> int:
        return int(self.basis.shape[0])

    @property
    def rank(self) -> int:
        return self.in_dim - self.dimension

    @property
    def in_dim(self) -> int:
        """C P^2, the dimension of a flattened patch."""
        return self.in_chans * self.patch_size ** 2

    @property
    def lower_bound(self) -> int:
        """max(0, C P^2 - D): the dimension any W of this shape has at least."""
        return max(0, self.in_dim - self.embed_dim)


@dataclass(frozen=True)
class Invariance:
    """Largest absolute logit change per direction, over a batch of images and every class."""

    basis_change: torch.Tensor   # (K,) for the first K nullspace basis vectors (empty if the nullspace is)
    random_change: torch.Tensor  # (R,) for random unit directions of R^{C P^2}, the control
    scale: float


def patch_projection(net: nn.Module, name: str | None = None) -> nn.Conv2d:
    """The conv that embeds patches (``patch_embed.proj``, kernel == stride, no padding), or a ConfigError."""
    proj = getattr(getattr(net, "patch_embed", None), "proj", None)
    if not isinstance(proj, nn.Conv2d) or proj.kernel_size != proj.stride or proj.padding not in ((0, 0), 0) \
            or proj.groups != 1 or proj.dilation != (1, 1):
        raise ConfigError(f"model {name or type(net).__name__!r} ({type(net).__name__}) has no linear patch embedding "
                          "(a patch_embed.proj Conv2d with kernel == stride): the nullspace analysis needs a ViT")
    return proj


def exact_nullspace(weight: torch.Tensor) -> Nullspace:
    """Nullspace of the patch-embedding conv weight (D, C, P, P), by SVD in float64."""
    d, c, p, _ = weight.shape
    w = weight.detach().reshape(d, c * p * p).to(torch.float64)                 # (D, C P^2)
    _, s, vh = torch.linalg.svd(w, full_matrices=True)                           # vh (C P^2, C P^2)
    tol = float(s.max()) * torch.finfo(torch.float64).eps * max(w.shape) if s.numel() else 0.0
    rank = int((s > tol).sum())
    basis = vh[rank:].reshape(-1, c, p, p)                                       # (K, C, P, P)
    return Nullspace(basis, s, tol, d, c, p)


def tile_patches(vectors: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Repeat patch vectors (K, C, P, P) over an image grid -> (K, C, height, width) (partial edge patches cut)."""
    p = vectors.shape[-1]
    gh, gw = -(-height // p), -(-width // p)
    return vectors.repeat(1, 1, gh, gw)[..., :height, :width]


@torch.no_grad()
def max_logit_change(net: nn.Module, z: torch.Tensor, directions: torch.Tensor, scale: float) -> torch.Tensor:
    """max_{b,k} |net(z_b + scale * d)_k - net(z_b)_k| for each image-sized direction d; z (B, C, H, W) -> (K,)."""
    base = net(z)                                                                # (B, classes)
    return torch.stack([(net(z + scale * d) - base).abs().max() for d in directions]) if len(directions) \
        else torch.zeros(0, dtype=z.dtype)


def check_invariance(model: nn.Module, x: torch.Tensor, space: Nullspace, *, scale: float = 1.0,
                     n_vectors: int = 16, n_random: int = 4, seed: int = 0) -> Invariance:
    """Add each of the first ``n_vectors`` basis vectors (and ``n_random`` random unit directions) to every patch.

    Args:
        model: a RobustModel ([0, 1] input, ``mean``/``std`` buffers, ``.net`` the timm network).
        x: (B, C, H, W) images in [0, 1].
        space: the nullspace of ``model.net``'s patch embedding.
        scale: L2 norm of the shift added to each patch, in normalised units.
    """
    net = copy.deepcopy(model.net).to("cpu", torch.float64).eval()
    z = ((x.cpu().double() - model.mean.cpu().double()) / model.std.cpu().double())   # (B, C, H, W) normalised
    gen = torch.Generator().manual_seed(seed)
    rand = torch.randn((n_random, space.in_chans, space.patch_size, space.patch_size), generator=gen,
                       dtype=torch.float64)
    rand = rand / rand.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    h, w = z.shape[-2:]
    basis = tile_patches(space.basis[:n_vectors], h, w)
    return Invariance(max_logit_change(net, z, basis, scale),
                      max_logit_change(net, z, tile_patches(rand, h, w), scale), scale)


def analyze(model: nn.Module, x: torch.Tensor, *, scale: float = 1.0, n_vectors: int = 16,
            seed: int = 0) -> tuple[Nullspace, Invariance]:
    """The nullspace of ``model``'s patch embedding and the logit-invariance check on images ``x``."""
    space = exact_nullspace(patch_projection(model.net, getattr(model, "name", None)).weight)
    return space, check_invariance(model, x, space, scale=scale, n_vectors=n_vectors, seed=seed)
