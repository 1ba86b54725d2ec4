"""The released distribution-shift sets, read in their published layouts.

ImageNet-C (Hendrycks and Dietterich 2019): ``ROOT/<corruption>/<severity 1..5>/<wnid>/<image>.JPEG``, the same
file names as the validation set. CIFAR-10-C / CIFAR-100-C: ``ROOT/<corruption>.npy`` of shape (5 * N, 32, 32, 3),
severity s in rows [(s - 1) * N, s * N) in test-set order, plus ``ROOT/labels.npy``. These are read by the
``corruptions`` suite for the examples of the clean set being evaluated (same ids / indices).

ImageNet-P: ``ROOT/<perturbation>/<wnid>/<name>.mp4`` (31 frames, translate 41; noise perturbations at difficulty
d > 1 in ``ROOT/<perturbation>_<d>/``), frames decoded in order as RGB (PyAV; optional extra ``video``), fed as
they are by default (the authors' evaluation: the 224 px frames, no resize or crop).
CIFAR-P: ``ROOT/<perturbation>.npy`` of shape (N, T, 32, 32, 3). Both are dataset kinds (``imagenet-p:ROOT``,
``cifar-p:ROOT``) whose examples are whole sequences: ``load`` returns (B, T, 3, S, S).

ImageNet-A / ImageNet-R: ``ROOT/<wnid>/<image>``, 200 classes each (timm's index lists); kinds ``imagenet-a:ROOT``
and ``imagenet-r:ROOT`` with labels in the ImageNet-1k label space and ``class_subset`` set to the 200 indices.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from vitbench.data import imagenet
from vitbench.data.base import EvalDataset, LabelSpace, decode_all, fingerprint_of
from vitbench.data.files import _files_fingerprint, _from_files, _images_in, _list_class_folders, decode_image
from vitbench.data.specs import DatasetSpec, register_kind
from vitbench.data.transforms import pil_to_tensor, tensor_resize
from vitbench.errors import DataError
from vitbench.zoo.schema import Preprocessing

SEVERITIES = (1, 2, 3, 4, 5)
IMAGENET_C_SIZE = 224
#: how released perturbation frames reach the model: as they are (the authors' evaluation) or the model's crop
SEQUENCE_PROTOCOLS = ("authors", "model")


# -- ImageNet-C / CIFAR-C ---------------------------------------------------------------------------------------

class ImageNetC:
    """A released ImageNet-C folder; images are looked up by the clean set's ids (``wnid/FILE``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"ImageNet-C folder {self.root} does not exist (expected ROOT/<corruption>/<1..5>/<wnid>/)")

    def check(self, corruption: str) -> None:
        """Raise a DataError naming what was expected when a corruption's folder or severities are missing."""
        folder = self.root / corruption
        if not folder.is_dir():
            raise DataError(f"ImageNet-C corruption folder {folder} is missing (expected "
                            f"{self.root}/<corruption>/<1..5>/<wnid>/*.JPEG)")
        found = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if found != [str(s) for s in SEVERITIES]:
            raise DataError(f"{folder} has severity folders {found or 'none'}, expected 1 2 3 4 5")

    def load(self, corruption: str, severity: int, ids: list[str], prep: Preprocessing,
             authors_crop: bool) -> torch.Tensor:
        """(B, 3, S, S) images of the given ids. ``authors_crop``: center crop 224 only (the authors' protocol),
        then resize to the model's input size if it differs; otherwise the model's own preprocessing."""
        folder = self.root / corruption / str(severity)
        paths = [folder / sample_id for sample_id in ids]
        for path in paths:
            if not path.is_file():
                raise DataError(f"ImageNet-C image {path} is missing; the clean set's ids must exist under "
                                f"{folder}/<wnid>/ (is the clean set the ImageNet validation set?)")

        def convert(path: Path) -> torch.Tensor:
            with decode_image({"path": str(path), "bytes": None}, f"imagenet-c:{self.root}",
                              str(path.relative_to(self.root))) as img:
                if authors_crop:
                    return pil_to_tensor(img, input_size=IMAGENET_C_SIZE, crop_pct=1.0, interpolation="bilinear",
                                         resize=False)
                return pil_to_tensor(img, input_size=prep.input_size, crop_pct=prep.crop_pct,
                                     interpolation=prep.interpolation)
        x = decode_all(paths, convert)
        if authors_crop and prep.input_size != IMAGENET_C_SIZE:
            x = tensor_resize(x, input_size=prep.input_size, crop_pct=1.0, interpolation=prep.interpolation)
        return x


class CifarC:
    """A released CIFAR-10-C / CIFAR-100-C folder of .npy files; rows are looked up by test-set index."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"CIFAR-C folder {self.root} does not exist "
                            "(expected ROOT/<corruption>.npy and labels.npy)")

    @functools.lru_cache(maxsize=4)  # noqa: B019 - a handful of memory-mapped files per process
    def _array(self, corruption: str) -> np.ndarray:
        path = self.root / f"{corruption}.npy"
        if not path.is_file():
            raise DataError(f"CIFAR-C file {path} is missing "
                            "(expected ROOT/<corruption>.npy of shape (5*N, 32, 32, 3))")
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 4 or arr.shape[1:] != (32, 32, 3) or arr.shape[0] % len(SEVERITIES):
            raise DataError(f"{path} has shape {arr.shape}; expected (5*N, 32, 32, 3), severities stacked in order")
        return arr

    def check(self, corruption: str) -> None:
        self._array(corruption)

    def load(self, corruption: str, severity: int, start: int, stop: int, prep: Preprocessing) -> torch.Tensor:
        arr = self._array(corruption)
        n = arr.shape[0] // len(SEVERITIES)
        if stop > n:
            raise DataError(f"{self.root / corruption}.npy holds {n} images per severity, the clean set has more")
        rows = np.array(arr[(severity - 1) * n + start:(severity - 1) * n + stop])  # copy out of the memory map
        x = torch.from_numpy(rows).permute(0, 3, 1, 2).float().div_(255.0)
        return tensor_resize(x, input_size=prep.input_size, crop_pct=prep.crop_pct,
                             interpolation=prep.interpolation).contiguous()


def open_released_c(root: str) -> ImageNetC | CifarC:
    """ImageNet-C when ROOT holds corruption folders, CIFAR-C when it holds .npy files."""
    path = Path(root).expanduser()
    if path.is_dir() and any(path.glob("*.npy")):
        return CifarC(path)
    return ImageNetC(path)


# -- ImageNet-A / ImageNet-R --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def shift_classes(name: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(ImageNet-1k indices, wnids) of ImageNet-A or -R's 200 classes, from timm's metadata."""
    import timm.data
    info = Path(timm.data.__file__).parent / "_info"
    short = {"imagenet-a": "imagenet_a", "imagenet-r": "imagenet_r"}[name]
    indices = tuple(int(i) for i in (info / f"{short}_indices.txt").read_text().split())
    wnids = tuple((info / f"{short}_synsets.txt").read_text().split())
    assert len(indices) == len(wnids) == 200
    return indices, wnids


def _open_shift(spec: DatasetSpec, name: str) -> EvalDataset:
    root = Path(spec.location).expanduser()
    indices, expected = shift_classes(name)
    folders = _list_class_folders(root, spec.text)
    unexpected = sorted(set(folders) - set(expected))
    if unexpected:
        raise DataError(f"dataset {spec.text!r}: folder {unexpected[0]} is not one of {name}'s 200 wnids "
                        f"(expected {expected[0]}, {expected[1]}, ...)")
    missing = sorted(set(expected) - set(folders))
    if missing:
        raise DataError(f"dataset {spec.text!r}: {len(missing)} of {name}'s 200 class folders are missing, "
                        f"e.g. {root / missing[0]}")
    index = imagenet.wnid_index()
    rel = [f"{w}/{p.name}" for w in folders for p in _images_in(root / w)]
    labels = [index[r.split("/", 1)[0]] for r in rel]
    ds = _from_files(root, rel, labels, spec=spec.text, space=LabelSpace("imagenet", 1000),
                     fingerprint=_files_fingerprint(name, root, rel))
    ds.class_subset = indices
    ds.benchmark = name
    return ds


@register_kind("imagenet-a", "ImageNet-A folder PATH/<wnid>/<image> (200 classes; logits masked to them)")
def open_imagenet_a(spec: DatasetSpec) -> EvalDataset:
    return _open_shift(spec, "imagenet-a")


@register_kind("imagenet-r", "ImageNet-R folder PATH/<wnid>/<image> (200 classes; logits masked to them)")
def open_imagenet_r(spec: DatasetSpec) -> EvalDataset:
    return _open_shift(spec, "imagenet-r")


# -- ImageNet-P / CIFAR-P -----------------------------------------------------------------------------------------

class SequenceDataset(EvalDataset):
    """Perturbation sequences: example i is one sequence; ``load`` returns (B, T, 3, S, S) in [0, 1].

    Sample ids are ``<perturbation>/<rest>``; the suite reads the perturbation from them.
    """

    is_sequence = True

    def __len__(self) -> int:
        return len(self._ids)

    def sample_ids(self, start: int, stop: int) -> list[str]:
        return self._ids[start:stop]

    def labels(self, start: int, stop: int) -> torch.Tensor:
        return self._labels[start:stop].clone()

    def load(self, start: int, stop: int, prep: Preprocessing,
             protocol: str = "authors") -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 3, S, S) frames and labels. ``protocol`` "authors" (the default, as the authors evaluate):
        the frames as they are, resized to the model's input size only if it differs (no crop); "model": the
        model's resize and center crop (crop_pct) on frames above 64 px (upscale 224 -> 256, crop 224 for 0.875)."""
        if protocol not in SEQUENCE_PROTOCOLS:
            raise DataError(f"{self.spec!r}: frame protocol {protocol!r} is not one of {', '.join(SEQUENCE_PROTOCOLS)}")
        seqs = [self._frames(i) for i in range(start, stop)]  # each (T, 3, H, W) float
        lengths = {s.shape[0] for s in seqs}
        if len(lengths) > 1:  # translate (41) and the others (31) never share a chunk unless mixed folders
            raise DataError(f"{self.spec!r}: sequences of different lengths {sorted(lengths)} in one chunk; "
                            "evaluate one perturbation at a time (?perturbations=NAME)")
        x = torch.stack(seqs)
        b, t = x.shape[:2]
        crop = prep.crop_pct if protocol == "model" and x.shape[-1] > 64 else 1.0
        x = tensor_resize(x.flatten(0, 1), input_size=prep.input_size, crop_pct=crop, interpolation=prep.interpolation)
        return x.reshape(b, t, *x.shape[1:]).contiguous(), self.labels(start, stop)

    def _frames(self, i: int) -> torch.Tensor:
        raise NotImplementedError


class ImageNetP(SequenceDataset):
    def __init__(self, spec: DatasetSpec) -> None:
        root = Path(spec.location).expanduser()
        if not root.is_dir():
            raise DataError(f"dataset {spec.text!r}: ImageNet-P folder {root} does not exist")
        difficulty = int(spec.option("difficulty", "1"))
        wanted = _perturbation_list(spec, [p.name for p in root.iterdir() if p.is_dir() and not p.name[-1].isdigit()])
        index = imagenet.wnid_index()
        self._paths, self._ids, labels = [], [], []
        for name in wanted:
            folder = root / (f"{name}_{difficulty}" if difficulty > 1 and "noise" in name else name)
            if not folder.is_dir():
                raise DataError(f"dataset {spec.text!r}: perturbation folder {folder} is missing "
                                f"(expected {root}/<perturbation>/<wnid>/*.mp4)")
            for wnid in _list_class_folders(folder, spec.text):
                if wnid not in index:
                    raise DataError(f"dataset {spec.text!r}: {folder / wnid} is not an ImageNet wnid folder")
                for video in sorted((folder / wnid).glob("*.mp4")):
                    self._paths.append(video)
                    self._ids.append(f"{name}/{wnid}/{video.name}")
                    labels.append(index[wnid])
        if not self._paths:
            raise DataError(f"dataset {spec.text!r}: no .mp4 sequences under {root}/<perturbation>/<wnid>/")
        self._labels = torch.tensor(labels)
        self.spec, self.label_space, self.difficulty = spec.text, LabelSpace("imagenet", 1000), difficulty
        self.fingerprint = _files_fingerprint("imagenet-p", root, [str(p.relative_to(root)) for p in self._paths],
                                              difficulty)

    def _frames(self, i: int) -> torch.Tensor:
        return read_video(self._paths[i])


class CifarP(SequenceDataset):
    def __init__(self, spec: DatasetSpec) -> None:
        root = Path(spec.location).expanduser()
        if not root.is_dir():
            raise DataError(f"dataset {spec.text!r}: CIFAR-P folder {root} does not exist")
        wanted = _perturbation_list(spec, [p.stem for p in root.glob("*.npy") if p.stem != "labels"])
        self._arrays, self._ids, self._rows = {}, [], []
        for name in wanted:
            path = root / f"{name}.npy"
            if not path.is_file():
                raise DataError(f"dataset {spec.text!r}: {path} is missing (expected ROOT/<perturbation>.npy)")
            arr = np.load(path, mmap_mode="r")
            if arr.ndim != 5 or arr.shape[2:] != (32, 32, 3):
                raise DataError(f"{path} has shape {arr.shape}; expected (N, T, 32, 32, 3)")
            self._arrays[name] = arr
            self._ids += [f"{name}/{i}" for i in range(arr.shape[0])]
            self._rows += [(name, i) for i in range(arr.shape[0])]
        labels_file = root / "labels.npy"
        labels = np.load(labels_file) if labels_file.is_file() else None
        self._labels = torch.as_tensor(
            np.concatenate([labels[:self._arrays[n].shape[0]] if labels is not None else
                            np.full(self._arrays[n].shape[0], -1) for n in wanted]), dtype=torch.int64)
        name = spec.option("labels", "cifar10")
        self.spec, self.label_space = spec.text, LabelSpace(name, 100 if name == "cifar100" else 10)
        self.difficulty = int(spec.option("difficulty", "1"))
        self.fingerprint = fingerprint_of("cifar-p", [(n, a.shape) for n, a in self._arrays.items()],
                                          [str(p) for p in sorted(root.glob("*.npy"))])

    def _frames(self, i: int) -> torch.Tensor:
        name, row = self._rows[i]
        arr = np.array(self._arrays[name][row])  # (T, 32, 32, 3), copied out of the memory map
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def _perturbation_list(spec: DatasetSpec, found: list[str]) -> list[str]:
    chosen = spec.option("perturbations")
    names = [p.strip() for p in chosen.split(",") if p.strip()] if chosen else sorted(found)
    if not names:
        raise DataError(f"dataset {spec.text!r}: no perturbation sequences found under {spec.location}")
    return names


def read_video(path: Path) -> torch.Tensor:
    """All frames of a video, in order, as (T, 3, H, W) float RGB in [0, 1] (PyAV, extra ``video``)."""
    from vitbench.zoo.extras import require_extra
    av = require_extra("av", "video")
    try:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except Exception as exc:  # noqa: BLE001 - PyAV raises many error types for broken files
        raise DataError(f"video {path} is unreadable ({type(exc).__name__}); re-download the sequence") from None
    if not frames:
        raise DataError(f"video {path} has no frames; re-download the sequence")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0)


@register_kind("imagenet-p", "ImageNet-P sequences PATH/<perturbation>/<wnid>/*.mp4 (needs the video extra)",
               options=("perturbations", "difficulty"))
def open_imagenet_p(spec: DatasetSpec) -> ImageNetP:
    return ImageNetP(spec)


@register_kind("cifar-p", "CIFAR-P sequences PATH/<perturbation>.npy of shape (N, T, 32, 32, 3)",
               options=("perturbations", "difficulty", "labels"))
def open_cifar_p(spec: DatasetSpec) -> CifarP:
    return CifarP(spec)

