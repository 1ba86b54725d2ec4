"""Training data: any dataset spec served with per-sample augmentation (light by default, heavy for the
canonical DeiT recipe), batch-level MixUp/CutMix, and the held-out split model selection evaluates on.

Augmentation order (timm's transform factory, with the authors' additions): crop (RandomResizedCrop, or
RandomCrop with ``crop_padding``), horizontal flip, then timm's RandAugment (``rand_augment_transform``: magnitude
m of timm's 10 levels) or, without RandAugment, colour jitter (timm turns it off under RandAugment), the
authors' RandomRotation (``rotation``), conversion to [0, 1] floats, and timm's per-pixel RandomErasing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.transforms import InterpolationMode, v2

from vitbench.data.base import EvalDataset
from vitbench.training.config import TrainConfig

_MODES = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR,
          "bicubic": InterpolationMode.BICUBIC}

# Per-pixel erasing noise in [0, 1] pixels: timm's RandomErasing(mode="pixel") draws N(0, 1) for normalised
# input; the authors' light-recipe code (inputs in [0, 1], no normalisation) draws N(0.5, 0.25) truncated to
# [0, 1]. vitbench runs timm's on (x - 0.5) / 0.25 and maps back, clamped: the same normal, with the 4.6% of
# draws beyond 2 sigma set to 0 or 1 instead of redrawn.
ERASE_MEAN, ERASE_STD = 0.5, 0.25


def augmentation(config: TrainConfig) -> v2.Compose:
    """Per-sample transforms of a uint8 (3, H, W) image into a float (3, S, S) one in [0, 1] (module docstring)."""
    ops: list = [_crop(config)]
    if config.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(config.hflip))
    if config.randaugment:
        ops += [v2.ToPILImage(), randaugment(config), v2.PILToTensor()]
    elif config.color_jitter > 0:
        cj = config.color_jitter
        ops.append(v2.ColorJitter(cj, cj, cj))
    if config.rotation > 0:
        ops.append(v2.RandomRotation(config.rotation))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if config.random_erasing > 0:
        ops.append(PixelErasing(config.random_erasing))
    return v2.Compose(ops)


def _crop(config: TrainConfig) -> v2.Transform:
    """RandomCrop(size, padding) when ``crop_padding`` > 0 (zero padding, CIFAR style), else RandomResizedCrop."""
    if config.crop_padding > 0:
        return v2.Compose([v2.Resize(config.input_size, interpolation=_MODES[config.interpolation], antialias=True),
                           v2.RandomCrop(config.input_size, padding=config.crop_padding)])
    return v2.RandomResizedCrop(config.input_size, scale=tuple(config.rrc_scale),
                                interpolation=_MODES[config.interpolation], antialias=True)


def randaugment(config: TrainConfig) -> Callable:
    """timm's ``rand_augment_transform(config.randaugment, hparams)`` on PIL images, with the hyper-parameters
    timm's transform factory passes: translate 45% of the image side, fill colour the mean, the interpolation."""
    from timm.data import rand_augment_transform
    from timm.data.transforms import str_to_pil_interp
    hparams = {"translate_const": int(config.input_size * 0.45),
               "img_mean": tuple(min(255, round(255 * m)) for m in config.mean),
               "interpolation": str_to_pil_interp(config.interpolation)}
    transform = rand_augment_transform(config.randaugment, hparams)
    for op in transform.ops:
        if op.name.startswith("Posterize"):
            op.aug_fn = _posterize
    return transform


def _posterize(img, bits_to_keep: int, **_):
    """timm's posterize, also at 0 bits: PosterizeIncreasing reaches 0 bits at level 10 (magnitude 9 plus its
    noise), which the Pillow timm was written against turned into a black image and Pillow 13 refuses."""
    from PIL import Image, ImageOps
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)                                  # every bit masked: black
    return ImageOps.posterize(img, bits_to_keep)


class PixelErasing:
    """timm's ``RandomErasing(p, mode="pixel")`` for [0, 1] images (see ERASE_MEAN): rectangles of per-pixel noise."""

    def __init__(self, probability: float) -> None:
        from timm.data.random_erasing import RandomErasing
        self.erase = RandomErasing(probability, mode="pixel", device="cpu")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:                     # (3, H, W) float in [0, 1]
        z = self.erase((img - ERASE_MEAN) / ERASE_STD)
        return (z * ERASE_STD + ERASE_MEAN).clamp_(0, 1)


def split_holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) indices: a seeded permutation cut at int((1 - fraction) n), as NS-ViT's 90/10 split."""
    if fraction <= 0:
        return list(range(n)), []
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int((1 - fraction) * n)
    return sorted(order[:cut]), sorted(order[cut:])


class AugmentedDataset(Dataset):
    """The examples ``indices`` of an EvalDataset, served one augmented (3, S, S) float image at a time."""

    def __init__(self, base: EvalDataset, config: TrainConfig, indices: Sequence[int] | None = None) -> None:
        self.base, self.transform = base, augmentation(config)
        self.indices = list(range(len(base))) if indices is None else list(indices)
        self.labels = base.labels(0, len(base))
        self._arrays = base._load_arrays(0, len(base)) if base.native_size is not None else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = self.indices[i]
        if self._arrays is not None:
            img = torch.from_numpy(np.ascontiguousarray(self._arrays[j])).permute(2, 0, 1)  # (3, H, W) uint8
        else:
            img = v2.functional.pil_to_tensor(self.base._load_pil(j, j + 1)[0].convert("RGB"))
        return self.transform(img), self.labels[j]


class EpochSampler(Sampler):
    """A shuffling sampler whose order depends only on (seed, epoch), so a resumed run sees the same order."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


def seed_host_rngs(seed: int, rank: int, epoch: int) -> None:
    """Seed Python's and numpy's RNGs from (seed, rank, epoch): timm's RandAugment and RandomErasing draw from them
    in this process (workers are seeded by the DataLoader), so a resumed epoch augments as the first run did."""
    value = (seed * 1_000_003 + rank * 10_007 + epoch) % 2 ** 32
    random.seed(value)
    np.random.seed(value)


def make_loader(base: EvalDataset, config: TrainConfig, *, rank: int, world: int, workers: int,
                indices: Sequence[int] | None = None) -> DataLoader:
    """Shuffled batches of ``indices`` (dropping the last partial one); under DDP each rank gets a disjoint share."""
    ds = AugmentedDataset(base, config, indices)
    if world > 1:
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    else:
        sampler = EpochSampler(len(ds), config.seed)
    return DataLoader(ds, batch_size=config.batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                      persistent_workers=workers > 0)


def held_out_batches(base: EvalDataset, indices: Sequence[int], config: TrainConfig,
                     batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The held-out examples, unaugmented at the input size: ((B, 3, S, S) in [0, 1], (B,)) batches."""
    from vitbench.zoo.schema import Preprocessing
    prep = Preprocessing(input_size=config.input_size, interpolation=config.interpolation, crop_pct=1.0)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        pairs = [base.load(i, i + 1, prep) for i in chunk]
        yield torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])


def mix_batch(x: torch.Tensor, y: torch.Tensor, config: TrainConfig, num_classes: int):
    """Apply MixUp/CutMix (one of them per batch, as timm does) -> (x, soft targets); identity when both are 0."""
    choices = []
    if config.mixup > 0:
        choices.append(v2.MixUp(alpha=config.mixup, num_classes=num_classes))
    if config.cutmix > 0:
        choices.append(v2.CutMix(alpha=config.cutmix, num_classes=num_classes))
    if not choices:
        return x, y
    return v2.RandomChoice(choices)(x, y)

