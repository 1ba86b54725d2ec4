"""The embedded set: UCI optical digits (8x8, 16 grey levels), served as 32x32 RGB.

1797 images with a fixed split (500 test, 1297 train) stored in ``files/digits.parquet``; credit in
``files/README.md``. Images are upsampled bilinearly (8 -> 32, align_corners=False) and repeated to 3 channels.
"""

from __future__ import annotations

import functools
import io

import datasets
import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from PIL import Image

from vitbench.data.base import EvalDataset, LabelSpace, fingerprint_of
from vitbench.data.specs import DatasetSpec, register_kind
from vitbench.errors import ConfigError
from vitbench.paths import package_file

DIGITS_FILE = package_file("data", "files", "digits.parquet")
DIGITS_SIZE = 32
SPLITS = ("test", "train", "all")
LABEL_SPACE = LabelSpace("digits", 10)


@functools.lru_cache(maxsize=1)
def _table() -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """All 1797 images as (N, 32, 32, 3) uint8, labels, split names, and the file's fingerprint."""
    ds = datasets.Dataset(pq.read_table(DIGITS_FILE))
    raw = np.stack([np.asarray(Image.open(io.BytesIO(item["bytes"])), dtype=np.uint8)
                    for item in ds.with_format("arrow")["image"].to_pylist()])  # (N, 8, 8)
    small = torch.from_numpy(raw).float().div_(255.0).unsqueeze(1)  # (N, 1, 8, 8)
    big = F.interpolate(small, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    rgb = (big.clamp(0, 1) * 255.0).round().to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    labels = np.asarray(ds["label"], dtype=np.int64)
    split = np.asarray(ds["split"])
    return rgb, labels, split, fingerprint_of(DIGITS_FILE.read_bytes())


class DigitsDataset(EvalDataset):
    native_size = DIGITS_SIZE
    label_space = LABEL_SPACE

    def __init__(self, split: str = "test") -> None:
        if split not in SPLITS:
            raise ConfigError(f"digits split {split!r} is not one of {', '.join(SPLITS)}")
        rgb, labels, names, file_fp = _table()
        index = np.arange(len(labels)) if split == "all" else np.flatnonzero(names == split)
        self._index = index
        self._images = rgb[index]
        self._labels = torch.from_numpy(labels[index])
        self.spec = "digits" if split == "test" else f"digits?split={split}"
        self.fingerprint = fingerprint_of("digits", file_fp, split, DIGITS_SIZE)

    def __len__(self) -> int:
        return len(self._index)

    def sample_ids(self, start: int, stop: int) -> list[str]:
        return [f"uci-{i}" for i in self._index[start:stop]]

    def labels(self, start: int, stop: int) -> torch.Tensor:
        return self._labels[start:stop].clone()

    def _load_arrays(self, start: int, stop: int) -> np.ndarray:
        return self._images[start:stop]


@register_kind("digits", "the embedded UCI optical digits, 32x32 RGB, 10 classes (500 test / 1297 train)",
               needs_location=False, options=("split",))
def open_digits(spec: DatasetSpec) -> DigitsDataset:
    return DigitsDataset(spec.option("split", "test"))
