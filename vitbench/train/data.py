"""Training data: any dataset spec served with per-sample augmentation (light by default, heavy for the
canonical DeiT recipe), plus batch-level MixUp/CutMix."""

from __future__ import annotations

import re

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from vitbench.data.base import EvalDataset
from vitbench.train.config import TrainConfig

_MODES = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR,
          "bicubic": InterpolationMode.BICUBIC}


def augmentation(config: TrainConfig) -> v2.Compose:
    """Per-sample transforms: RandomResizedCrop (or RandomCrop with ``crop_padding``), flip, colour jitter,
    [RandAugment], [random erasing]."""
    ops: list = [_crop(config)]
    if config.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(config.hflip))
    if config.color_jitter > 0:
        cj = config.color_jitter
        ops.append(v2.ColorJitter(cj, cj, cj))
    if config.randaugment:
        ops.append(_randaugment(config.randaugment))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if config.random_erasing > 0:
        ops.append(v2.RandomErasing(config.random_erasing, value=0))
    return v2.Compose(ops)


def _crop(config: TrainConfig) -> v2.Transform:
    """RandomCrop(size, padding) when ``crop_padding`` > 0 (zero padding, CIFAR style), else RandomResizedCrop."""
    if config.crop_padding > 0:
        return v2.Compose([v2.Resize(config.input_size, interpolation=_MODES[config.interpolation], antialias=True),
                           v2.RandomCrop(config.input_size, padding=config.crop_padding)])
    return v2.RandomResizedCrop(config.input_size, scale=tuple(config.rrc_scale),
                                interpolation=_MODES[config.interpolation], antialias=True)


def _randaugment(spec: str) -> v2.RandAugment:
    """timm-style 'rand-m9-mstd0.5-inc1' -> torchvision RandAugment(magnitude 9, 2 ops); mstd/inc are approximated."""
    parts = dict(re.match(r"([a-z]+)(.*)", p).groups() for p in spec.split("-")[1:] if re.match(r"[a-z]", p))
    return v2.RandAugment(num_ops=int(parts.get("n", 2)), magnitude=int(parts.get("m", 9)))


class AugmentedDataset(Dataset):
    """An EvalDataset served one augmented (3, S, S) float image at a time."""

    def __init__(self, base: EvalDataset, config: TrainConfig) -> None:
        self.base, self.transform = base, augmentation(config)
        self.labels = base.labels(0, len(base))
        self._arrays = base._load_arrays(0, len(base)) if base.native_size is not None else None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        if self._arrays is not None:
            img = torch.from_numpy(np.ascontiguousarray(self._arrays[i])).permute(2, 0, 1)  # (3, H, W) uint8
        else:
            img = v2.functional.pil_to_tensor(self.base._load_pil(i, i + 1)[0].convert("RGB"))
        return self.transform(img), self.labels[i]


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


def make_loader(base: EvalDataset, config: TrainConfig, *, rank: int, world: int, workers: int) -> DataLoader:
    """Shuffled batches (dropping the last partial one); under DDP each rank gets a disjoint share."""
    ds = AugmentedDataset(base, config)
    if world > 1:
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    else:
        sampler = EpochSampler(len(ds), config.seed)
    return DataLoader(ds, batch_size=config.batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                      persistent_workers=workers > 0)


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
