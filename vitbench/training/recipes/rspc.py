"""RSPC: reducing sensitivity to patch corruptions (Guo, Stutz, Schiele, CVPR 2023; methods.md C).

Patch corruption model C (its own parameters, trained adversarially alongside the classifier):

    s = Linear_{N->N, no bias}( flatten( GELU( Conv2d_{3->1, kernel=stride=P, no bias}(x) ) ) )   # (B, N) scores
    m = binarise(s): per sample the patches whose score is at or below the rho-quantile of the N scores get 0
        (corrupted), the others 1: the authors' ``s > torch.quantile(s, rho)``, i.e. k = floor(rho (N - 1)) + 1
        patches (7 of 64 at rho 0.1, 2 of 16, 20 of 196), computed once with torch.quantile itself
        straight-through: forward the hard mask, backward dL/ds = clip(dL/dm, -1, 1)
    x_hat = m * x + (1 - m) * u,   u uniform noise drawn fresh every step                    # (B, 3, H, W)

C sees the [0, 1] pixels the vitbench model takes (the authors' C sees normalised input; C's own weights absorb
the affine difference). The authors draw u ~ U[0, 1) in normalised space and clamp it to the valid range; in
vitbench's pixel space that is u = clamp(mean + std * U[0, 1), 0, 1) per channel (``noise: normalised``, the
default; with mean = std = 0.5 it is U[0.5, 1)); ``noise: pixel`` draws U[0, 1) in pixel space instead.

Loss, on one 2B batch [x; x_hat] in train mode, with h_l the output of block l (L blocks):

    L = CE(f(x), y) + lambda * (1/L) sum_l MSE(h_l(x), h_l(x_hat))        lambda = 0.005, clean h_l not detached

One backward serves both players: the classifier descends L (the loop's optimiser); C ascends it. In
``after_backward`` C's gradient is averaged over DDP ranks, negated, rescaled to norm 5 (see ``corruptor_step``:
the step the authors' code takes in effect) and applied by SGD (lr 1e-4, momentum 0.9, Nesterov, weight decay
0.05). C and its optimiser are recipe state (checkpointed). C is initialised from ``seed`` alone, so every rank
starts from the same C.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vitbench import _config
from vitbench.training.config import TrainConfig
from vitbench.training.recipes import Recipe, StepOutput, register_recipe, require_vit

NOISE_MODES = ("normalised", "pixel")


@dataclass(frozen=True)
class RspcArgs:
    """``recipe_args`` of the rspc recipe (values in configs/rspc.yaml)."""

    rho: float                   # fraction of patches corrupted per image (paper: 0.1)
    align_weight: float          # lambda (paper: 0.005)
    noise: str                   # normalised (authors: U[0, 1) in normalised space, clamped) or pixel
    ste_clip: float              # straight-through gradient clipped to [-ste_clip, ste_clip] (paper: 1)
    corruptor_lr: float          # SGD (paper: 1e-4)
    corruptor_momentum: float    # Nesterov momentum (paper: 0.9)
    corruptor_weight_decay: float  # (paper: 0.05)
    corruptor_grad_norm: float   # C's (negated) gradient is rescaled to this norm (paper: clipped to 5 under AMP)

    def __post_init__(self) -> None:
        if not 0 < self.rho < 1:
            raise ValueError("rho must be in (0, 1)")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise {self.noise!r} must be one of {', '.join(NOISE_MODES)}")
        if min(self.align_weight, self.corruptor_lr, self.corruptor_weight_decay) < 0 or self.ste_clip <= 0 \
                or self.corruptor_grad_norm <= 0 or self.corruptor_momentum <= 0:
            raise ValueError("align_weight, corruptor_lr, corruptor_weight_decay must be >= 0; ste_clip, "
                             "corruptor_grad_norm and corruptor_momentum (Nesterov) > 0")


def rspc_args(config: TrainConfig) -> RspcArgs:
    return _config.build(RspcArgs, config.recipe_args, f"train {config.recipe} config: recipe_args")


def num_corrupted(num_patches: int, rho: float) -> int:
    """The patches the authors' quantile rule corrupts per image: those of N distinct scores at or below
    ``torch.quantile(scores, rho)`` (linear interpolation; float32, as their STE casts), floor(rho (N - 1)) + 1."""
    ranks = torch.arange(num_patches, dtype=torch.float32)                     # stands for any N distinct scores
    return int((ranks <= torch.quantile(ranks, rho)).sum())


class _LowestToZero(torch.autograd.Function):
    """Hard mask forward (the k lowest scores -> 0, the rest -> 1); gradient passed through, clipped."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int, clip: float) -> torch.Tensor:
        ctx.clip = clip
        mask = torch.ones_like(scores)                                         # (B, N)
        if k > 0:
            mask.scatter_(1, scores.topk(k, dim=1, largest=False).indices, 0.0)
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.clamp(-ctx.clip, ctx.clip), None, None


def binarize(scores: torch.Tensor, k: int, clip: float = 1.0) -> torch.Tensor:
    """Keep-mask (B, N) with exactly k zeros per row at the lowest scores; straight-through clipped gradient."""
    return _LowestToZero.apply(scores, k, clip)


class PatchCorruptor(nn.Module):
    """C: images (B, 3, H, W) -> patch scores (B, N) -> keep-mask (B, N) (see the module docstring)."""

    def __init__(self, patch_size: int, grid: tuple[int, int], in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size, self.grid = patch_size, grid
        self.conv = nn.Conv2d(in_chans, 1, kernel_size=patch_size, stride=patch_size, bias=False)
        self.fc = nn.Linear(grid[0] * grid[1], grid[0] * grid[1], bias=False)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.gelu(self.conv(x)).flatten(1))                        # (B, N)

    def forward(self, x: torch.Tensor, k: int, clip: float = 1.0) -> torch.Tensor:
        return binarize(self.scores(x), k, clip)                               # (B, N)

    def to_pixels(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) patch mask -> (B, 1, H, W) pixel mask (each patch's value over its P x P pixels)."""
        p, (gh, gw) = self.patch_size, self.grid
        return mask.view(-1, 1, gh, gw).repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)


def uniform_noise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, mode: str) -> torch.Tensor:
    """u like x (B, 3, H, W) in [0, 1]: clamp(mean + std * U[0, 1)) ("normalised") or U[0, 1) ("pixel")."""
    u = torch.rand_like(x)
    return u if mode == "pixel" else (mean + std * u).clamp(0, 1)


@contextmanager
def block_outputs(blocks: Sequence[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Collect each block's output (in order) during the forward passes run inside the block."""
    outs: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda m, i, o: outs.append(o[0] if isinstance(o, tuple) else o))
               for b in blocks]
    try:
        yield outs
    finally:
        for h in handles:
            h.remove()


def alignment_loss(outs: Sequence[torch.Tensor], batch: int) -> torch.Tensor:
    """(1/L) sum_l MSE(h_l[:B], h_l[B:]) over block outputs h_l of a [clean; corrupted] (2B, ...) batch."""
    return torch.stack([F.mse_loss(h[:batch].float(), h[batch:].float()) for h in outs]).mean()


def corruptor_step(corruptor: nn.Module, optimizer: torch.optim.Optimizer, step_norm: float) -> None:
    """Ascend: average C's gradient over ranks, negate it, rescale it to norm ``step_norm``, step, clear.

    Why rescale rather than clip: the authors clip C's gradient to norm 5 while it still carries the mixed-precision
    loss scale (timm's NativeScaler unscales only the classifier's optimiser; GradScaler starts at 2^16 and doubles
    every 2000 overflow-free steps), so a raw gradient of ~1e-4 arrives as ~10 and every clipped step is a full
    norm-5 step: in effect SGD on the normalised ascent direction. vitbench has no loss scale (bf16 autocast or
    fp32), and clipping the raw gradient (~2e-4 here, 20,000x below the clip) leaves C nearly still, with
    weight decay ~500x the gradient: C was a fixed random function. Rescaling gives the authors' step on any device.
    Weight decay acts as theirs does: SGD adds wd * theta after the clip, a pull of 0.05 |theta| (~0.1 for the
    digits ViT's C, ~0.4 for ImageNet's 196 patches) against the norm-5 ascent, shrinking C slowly without
    turning the step around. A zero gradient (lambda = 0) stays zero.
    """
    import torch.distributed as dist
    grads = [p.grad for p in corruptor.parameters() if p.grad is not None]
    if dist.is_available() and dist.is_initialized():
        for g in grads:
            dist.all_reduce(g)
            g.div_(dist.get_world_size())
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else None
    if norm is not None and norm > 0:
        for g in grads:
            g.mul_(-step_norm / norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@register_recipe
class RspcRecipe(Recipe):
    name = "rspc"
    summary = "RSPC (Guo et al. 2023): CE + lambda * block-feature alignment under adversarially chosen patch noise"

    def check(self, model: nn.Module, config: TrainConfig) -> None:
        require_vit(model, config.recipe, blocks=True)
        rspc_args(config)

    def setup(self, model: nn.Module, config: TrainConfig, device: torch.device) -> dict:
        args = rspc_args(config)
        grid = (model.input_size // model.patch_size,) * 2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            corruptor = PatchCorruptor(model.patch_size, grid).to(device)
        opt = torch.optim.SGD(corruptor.parameters(), lr=args.corruptor_lr, momentum=args.corruptor_momentum,
                              nesterov=True, weight_decay=args.corruptor_weight_decay)
        return {"corruptor": corruptor, "corruptor_opt": opt, "args": args,
                "k": num_corrupted(grid[0] * grid[1], args.rho)}

    def loss(self, model, x, target, epoch, config, state) -> StepOutput:
        args, corruptor = state["args"], state["corruptor"]
        bare = getattr(model, "module", model)
        keep = corruptor.to_pixels(corruptor(x, state["k"], args.ste_clip))    # (B, 1, H, W)
        x_hat = keep * x + (1 - keep) * uniform_noise(x, bare.mean, bare.std, args.noise)
        with block_outputs(bare.blocks) as outs:
            logits = model(torch.cat([x, x_hat])).float()                     # (2B, K)
        ce = F.cross_entropy(logits[:len(x)], target, label_smoothing=config.label_smoothing)
        align = alignment_loss(outs, len(x))
        return StepOutput(ce + args.align_weight * align, logits[:len(x)], {"align": align.detach()})

    def after_backward(self, state: dict) -> None:
        corruptor_step(state["corruptor"], state["corruptor_opt"], state["args"].corruptor_grad_norm)
