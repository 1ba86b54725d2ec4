"""CIFAR-10/100 test (or train) sets from their released layouts on disk.

Accepted under PATH (or PATH itself): the python release (``cifar-10-batches-py/test_batch``,
``cifar-100-python/test``), read with a restricted unpickler that only rebuilds numpy arrays, or the binary
release (``cifar-10-batches-bin/test_batch.bin``, ``cifar-100-binary/test.bin``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from vitbench.data.base import EvalDataset, LabelSpace, fingerprint_of
from vitbench.data.specs import DatasetSpec, register_kind
from vitbench.errors import DataError

_LAYOUTS = {
    ("cifar10", "test"): [("cifar-10-batches-py", ["test_batch"], "py"),
                          ("cifar-10-batches-bin", ["test_batch.bin"], "bin")],
    ("cifar10", "train"): [("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "py"),
                           ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], "bin")],
    ("cifar100", "test"): [("cifar-100-python", ["test"], "py"), ("cifar-100-binary", ["test.bin"], "bin")],
    ("cifar100", "train"): [("cifar-100-python", ["train"], "py"), ("cifar-100-binary", ["train.bin"], "bin")],
}
_NUMPY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                  ("numpy._core.multiarray", "scalar"),
                  ("_codecs", "encode")}  # how Python 3 protocol-2 pickles store bytes


class _ArraysOnly(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers and refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            if module.startswith("numpy.core") and not hasattr(np, "core"):
                module = module.replace("numpy.core", "numpy._core")
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def _read_py(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        try:
            batch = _ArraysOnly(fh, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise DataError(f"{path} is not a CIFAR python batch ({exc})") from None
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return data, np.asarray(batch[label_key], dtype=np.int64)


def _read_bin(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    row = label_bytes + 3072
    if raw.size % row:
        raise DataError(f"{path} is not a CIFAR binary batch (size {raw.size} is not a multiple of {row})")
    raw = raw.reshape(-1, row)
    labels = raw[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: (coarse, fine); use fine
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _find(root: Path, name: str, split: str, spec: str) -> tuple[list[Path], str]:
    for folder, files, fmt in _LAYOUTS[(name, split)]:
        for base in (root / folder, root):
            paths = [base / f for f in files]
            if all(p.is_file() for p in paths):
                return paths, fmt
    expected = " or ".join(f"{root}/{folder}/{files[0]}" for folder, files, _ in _LAYOUTS[(name, split)])
    raise DataError(f"dataset {spec!r}: no {name} {split} files found; expected {expected}")


class CifarDataset(EvalDataset):
    native_size = 32

    def __init__(self, name: str, root: Path, split: str, spec: str) -> None:
        if not root.is_dir():
            raise DataError(f"dataset {spec!r}: folder {root} does not exist")
        if split not in ("test", "train"):
            raise DataError(f"dataset {spec!r}: split {split!r} is not test or train")
        paths, fmt = _find(root, name, split, spec)
        parts = [(_read_py(p, b"labels" if name == "cifar10" else b"fine_labels") if fmt == "py"
                  else _read_bin(p, 1 if name == "cifar10" else 2)) for p in paths]
        self._images = np.concatenate([p[0] for p in parts])
        self._labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        n_classes = 10 if name == "cifar10" else 100
        if int(self._labels.max()) >= n_classes:
            raise DataError(f"dataset {spec!r}: labels go up to {int(self._labels.max())}; is this {name}?")
        self.label_space = LabelSpace(name, n_classes)
        self.spec = spec
        self.fingerprint = fingerprint_of(name, split, self._images.shape,
                                          fingerprint_of(self._images.tobytes(), self._labels.numpy().tobytes()))

    def __len__(self) -> int:
        return len(self._labels)

    def sample_ids(self, start: int, stop: int) -> list[str]:
        return [str(i) for i in range(start, stop)]

    def labels(self, start: int, stop: int) -> torch.Tensor:
        return self._labels[start:stop].clone()

    def _load_arrays(self, start: int, stop: int) -> np.ndarray:
        return self._images[start:stop]


@register_kind("cifar10", "CIFAR-10 python or binary release under PATH", options=("split",))
def open_cifar10(spec: DatasetSpec) -> CifarDataset:
    return CifarDataset("cifar10", Path(spec.location).expanduser(), spec.option("split", "test"), spec.text)


@register_kind("cifar100", "CIFAR-100 python or binary release under PATH", options=("split",))
def open_cifar100(spec: DatasetSpec) -> CifarDataset:
    return CifarDataset("cifar100", Path(spec.location).expanduser(), spec.option("split", "test"), spec.text)
