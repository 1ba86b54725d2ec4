"""A tiny instance of every dataset kind, built in a folder: what the smoke tests open (one per registered kind).

Each builder writes the kind's real on-disk layout with a few random images and returns the spec that opens it
(``folder:/tmp/x``). A kind whose data cannot be built offline (a hub dataset) has no builder.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Builder = Callable[[Path], str]
EXAMPLES: dict[str, Builder] = {}


def example(kind: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        EXAMPLES[kind] = fn
        return fn
    return deco


def _image(path: Path, seed: int, size: int = 32, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


@example("digits")
def _digits(folder: Path) -> str:
    return "digits"


@example("folder")
def _folder(folder: Path) -> str:
    root = folder / "images"
    for c in range(3):
        for i in range(2):
            _image(root / f"class{c}" / f"{i}.png", 10 * c + i)
    return f"folder:{root}"


@example("imagenet-val")
def _imagenet_val(folder: Path) -> str:
    from vitbench.data.imagenet import wnids
    root = folder / "val"
    for c, wnid in enumerate(wnids()[:3]):
        _image(root / wnid / f"ILSVRC2012_val_{c:08d}.JPEG", c, 64, "JPEG")
    return f"imagenet-val:{root}"


def _cifar(folder: Path, classes: int) -> None:
    rng = np.random.default_rng(classes)
    data, labels = rng.integers(0, 256, (6, 3072), dtype=np.uint8), rng.integers(0, classes, 6).tolist()
    if classes == 10:
        (folder / "cifar-10-batches-py").mkdir(parents=True)
        with open(folder / "cifar-10-batches-py" / "test_batch", "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels}, fh, protocol=2)
    else:
        (folder / "cifar-100-python").mkdir(parents=True)
        with open(folder / "cifar-100-python" / "test", "wb") as fh:
            pickle.dump({b"data": data, b"fine_labels": labels}, fh, protocol=2)


@example("cifar10")
def _cifar10(folder: Path) -> str:
    _cifar(folder / "c10", 10)
    return f"cifar10:{folder / 'c10'}"


@example("cifar100")
def _cifar100(folder: Path) -> str:
    _cifar(folder / "c100", 100)
    return f"cifar100:{folder / 'c100'}"


def _table(n: int = 6):
    import datasets
    images = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
        images.append({"bytes": buf.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(n)]}, features=features)


@example("parquet")
def _parquet(folder: Path) -> str:
    path = folder / "d.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    _table().to_parquet(str(path))
    return f"parquet:{path}"


@example("arrow")
def _arrow(folder: Path) -> str:
    _table().save_to_disk(str(folder / "arrow"))
    return f"arrow:{folder / 'arrow'}"


def _shift(folder: Path, benchmark: str) -> str:
    from vitbench.data.released import shift_classes
    _, expected = shift_classes(benchmark)
    root = folder / benchmark
    for i, wnid in enumerate(expected):
        if i < 3:
            _image(root / wnid / f"{i}.jpg", i, 64, "JPEG")
        else:
            (root / wnid).mkdir(parents=True)
    return f"{benchmark}:{root}"


@example("imagenet-a")
def _imagenet_a(folder: Path) -> str:
    return _shift(folder, "imagenet-a")


@example("imagenet-r")
def _imagenet_r(folder: Path) -> str:
    return _shift(folder, "imagenet-r")


@example("cifar-p")
def _cifar_p(folder: Path) -> str:
    root = folder / "cifar-p"
    root.mkdir(parents=True)
    frames = np.random.default_rng(0).integers(0, 256, (3, 1, 32, 32, 3), dtype=np.uint8)
    np.save(root / "brightness.npy", np.repeat(frames, 6, axis=1))
    return f"cifar-p:{root}?labels=cifar10"


@example("imagenet-p")
def _imagenet_p(folder: Path) -> str:
    import av

    from vitbench.data.imagenet import wnids
    path = folder / "imagenet-p" / "brightness" / wnids()[0] / "v.mp4"
    path.parent.mkdir(parents=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for t in range(4):
            frame = np.full((64, 64, 3), 40 * t, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return f"imagenet-p:{folder / 'imagenet-p'}"
