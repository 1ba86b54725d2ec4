"""The evaluation dataset contract: a fixed, ordered list of labelled images served as [0, 1] tensors."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vitbench.data.transforms import pil_to_tensor, tensor_resize
from vitbench.zoo.schema import Preprocessing

DECODE_THREADS = 4


@dataclass(frozen=True)
class LabelSpace:
    """What the labels mean: a name shared with zoo entries' ``dataset`` key, and the class count."""

    name: str
    num_classes: int


def decode_all(items: Sequence, convert: Callable[[Any], torch.Tensor]) -> torch.Tensor:
    """torch.stack of convert(item) for each item, in order; on DECODE_THREADS threads for 16 items or more
    (image decoding and resizing release the GIL)."""
    if len(items) >= 16:
        with ThreadPoolExecutor(DECODE_THREADS) as pool:
            return torch.stack(list(pool.map(convert, items)))
    return torch.stack([convert(item) for item in items])


class EvalDataset(ABC):
    """An ordered, labelled image set. Example i is always the same image with the same label.

    Subclasses give ``__len__``, ``sample_ids`` and either ``_load_arrays`` (uint8 images at a native size)
    or ``_load_pil`` (decoded images at any size).
    """

    spec: str
    label_space: LabelSpace
    fingerprint: str
    #: the side of the images as stored, when all share it (digits 32, CIFAR 32); None for photos
    native_size: int | None = None
    #: labels kept for evaluation (e.g. ImageNet-A's 200 classes), or None for all
    class_subset: tuple[int, ...] | None = None
    #: the benchmark the set is (imagenet-a, imagenet-r), when it is one
    benchmark: str | None = None
    #: True for sets whose examples are frame sequences: load() returns (B, T, 3, S, S)
    is_sequence: bool = False

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def sample_ids(self, start: int, stop: int) -> list[str]:
        """Stable identifiers of examples start..stop-1 (file names, indices)."""

    @abstractmethod
    def labels(self, start: int, stop: int) -> torch.Tensor:
        """Labels of examples start..stop-1 as int64."""

    def load(self, start: int, stop: int, prep: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples start..stop-1 as ((B, 3, S, S) float in [0, 1], (B,) int64) at the model's input size.

        The images are contiguous in the default (NCHW) layout: attack code such as pyautoattack allocates
        buffers with ``zeros_like`` and ``view``s them.
        """
        return self.images(start, stop, prep).contiguous(), self.labels(start, stop)

    def images(self, start: int, stop: int, prep: Preprocessing) -> torch.Tensor:
        if self.native_size is not None:
            arrays = self._load_arrays(start, stop)  # (B, H, W, 3) uint8
            x = torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
            return tensor_resize(x, input_size=prep.input_size, crop_pct=prep.crop_pct,
                                 interpolation=prep.interpolation)
        pils = self._load_pil(start, stop)
        return decode_all(pils, lambda img: pil_to_tensor(img, input_size=prep.input_size, crop_pct=prep.crop_pct,
                                                          interpolation=prep.interpolation))

    def _load_arrays(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def _load_pil(self, start: int, stop: int) -> Sequence:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.spec} ({len(self)} examples, {self.label_space.name}, {self.label_space.num_classes} classes)"


def fingerprint_of(*parts: object) -> str:
    """A short sha256 over the given parts (strings, bytes, numbers)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]
