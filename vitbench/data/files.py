"""Image folders, ImageNet validation folders, parquet/arrow files and Hugging Face hub datasets.

All of them go through ``datasets``: a table with an image column (decoded with PIL on a thread pool) and an
integer label column. A file that does not decode (corrupt, truncated, or larger than PIL's decompression-bomb
limit, ``PIL.Image.MAX_IMAGE_PIXELS``), a file name that is not UTF-8, an empty class folder and a label column
that does not hold integer class indices are each one DataError naming the image, file or column.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import datasets
import torch
from PIL import Image

from vitbench.data import imagenet
from vitbench.data.base import EvalDataset, LabelSpace, decode_all, fingerprint_of
from vitbench.data.specs import DatasetSpec, register_kind
from vitbench.data.transforms import pil_to_tensor
from vitbench.errors import DataError
from vitbench.label_spaces import num_classes
from vitbench.zoo.schema import Preprocessing

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}

# PIL warns between MAX_IMAGE_PIXELS and twice that, and raises above; vitbench refuses both (one error line)
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


class TableDataset(EvalDataset):
    """A ``datasets.Dataset`` with an image column and an int label column."""

    def __init__(self, table: datasets.Dataset, *, spec: str, label_space: LabelSpace, fingerprint: str,
                 image_col: str = "image", label_col: str = "label", id_col: str | None = None) -> None:
        for col in (image_col, label_col):
            if col not in table.column_names:
                raise DataError(f"dataset {spec!r} has no column {col!r} (columns: "
                                f"{', '.join(table.column_names)}); name the columns with ?image=...&label=...")
        self._table = table.cast_column(image_col, datasets.Image(decode=False)) \
            if isinstance(table.features[image_col], datasets.Image) else table
        self._image_col, self._id_col = image_col, id_col
        check_label_column(table, label_col, spec)
        self._labels = torch.as_tensor(table[label_col], dtype=torch.int64)
        if len(self._labels) and int(self._labels.min()) < 0:
            raise DataError(f"dataset {spec!r}: negative labels in column {label_col!r}")
        self.spec, self.label_space, self.fingerprint = spec, label_space, fingerprint

    def __len__(self) -> int:
        return len(self._labels)

    def sample_ids(self, start: int, stop: int) -> list[str]:
        if self._id_col:
            return [str(v) for v in self._table[start:stop][self._id_col]]
        return [str(i) for i in range(start, stop)]

    def labels(self, start: int, stop: int) -> torch.Tensor:
        return self._labels[start:stop].clone()

    def _items(self, start: int, stop: int) -> list[tuple[object, str]]:
        return list(zip(self._table[start:stop][self._image_col], self.sample_ids(start, stop), strict=True))

    def _load_pil(self, start: int, stop: int) -> list[Image.Image]:
        return [decode_image(item, self.spec, sid) for item, sid in self._items(start, stop)]

    def images(self, start: int, stop: int, prep: Preprocessing) -> torch.Tensor:
        """Decode and preprocess on the thread pool; a broken image stops the run with its name."""
        return decode_all(self._items(start, stop), lambda pair: pil_to_tensor(
            decode_image(pair[0], self.spec, pair[1]), input_size=prep.input_size, crop_pct=prep.crop_pct,
            interpolation=prep.interpolation))


def _open(item, spec: str) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, dict):
        if item.get("bytes"):
            return Image.open(io.BytesIO(item["bytes"]))
        if item.get("path"):
            return Image.open(item["path"])
    if isinstance(item, (bytes, bytearray)):
        return Image.open(io.BytesIO(item))
    raise DataError(f"dataset {spec!r}: image column holds {type(item).__name__}, expected images or image bytes")


def decode_image(item, spec: str, sample_id: str) -> Image.Image:
    """Open and fully decode one image of a table.

    Raises:
        DataError: naming the image when it is missing, corrupt, truncated or a decompression bomb.
    """
    where = f"dataset {spec!r}: image {sample_id}"
    try:
        img = _open(item, spec)
        img.load()
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"has {int(found.group(1)):,} pixels, " if found else "is "
        raise DataError(f"{where} {size}above the {Image.MAX_IMAGE_PIXELS:,} pixels PIL decodes safely (a "
                        "decompression bomb?): shrink the image or remove it") from None
    except FileNotFoundError:
        raise DataError(f"{where} is missing: restore the file or rebuild the dataset") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(f"{where} cannot be decoded "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}): "
                        "the file is corrupt or truncated; replace or remove it") from None


def check_label_column(table: datasets.Dataset, label_col: str, spec: str) -> None:
    """Refuse a label column that is not integer class indices (strings, floats, booleans) or has gaps."""
    if table.data.column(label_col).null_count:
        raise DataError(f"dataset {spec!r}: label column {label_col!r} has missing values: every image needs an "
                        "integer label")
    feature = table.features.get(label_col)
    if isinstance(feature, datasets.ClassLabel):
        return
    dtype = getattr(feature, "dtype", type(feature).__name__)
    if not str(dtype).startswith(("int", "uint")):
        first = table[0][label_col] if len(table) else None
        raise DataError(f"dataset {spec!r}: label column {label_col!r} holds {dtype} values (e.g. {first!r}), not "
                        "integer class indices: store each class's index 0..K-1 in it, or name an integer column "
                        "with ?label=COL")


def _label_space(spec: DatasetSpec, table: datasets.Dataset, label_col: str, default: str) -> LabelSpace:
    feature = table.features.get(label_col)
    declared = spec.option("labels")
    if isinstance(feature, datasets.ClassLabel):
        n = feature.num_classes
    else:
        n = int(max(table[label_col])) + 1 if len(table) else 0
    name = declared or default
    n = num_classes(name) or n
    return LabelSpace(name, n)


def _list_class_folders(root: Path, spec: str) -> list[str]:
    if not root.exists():
        raise DataError(f"dataset {spec!r}: folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset {spec!r}: {root} is not a folder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"dataset {spec!r}: {root} has no class folders; expected {root}/<class>/<image>")
    for name in classes:
        _check_utf8(root / name, spec)
    return classes


def _check_utf8(path: Path, spec: str = "") -> None:
    """File names are stored (sample ids) and shown as text: a name that is not UTF-8 is refused by name."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        where = f"dataset {spec!r}: " if spec else ""
        raise DataError(f"{where}the name {os.fsencode(path)!r} is not valid UTF-8: rename it (e.g. "
                        "convmv -f latin1 -t utf8 --notest)") from None


def _images_in(folder: Path, spec: str = "") -> list[Path]:
    """The images of one class folder, sorted, with their names checked."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    for path in files:
        _check_utf8(path, spec)
    return files


def _files_fingerprint(kind: str, root: Path, rel_paths: list[str], extra: object = None) -> str:
    """A fingerprint of the files' names and contents (sha256 of every file, through the stat cache): an image
    changed in place, even to the same size and mtime, gives another fingerprint and so another evaluation key."""
    from vitbench.hashing import files_sha256
    return fingerprint_of(kind, rel_paths, files_sha256([root / r for r in rel_paths]), extra)


def _table_files_fingerprint(kind: str, table: datasets.Dataset, *extra: object) -> str:
    """A fingerprint of the arrow files behind a ``datasets`` table (their contents, not datasets' own
    fingerprint, which a ``save_to_disk`` folder keeps in a JSON file that survives edits to the data)."""
    from vitbench.hashing import files_sha256
    files = sorted(f["filename"] for f in table.cache_files)
    if not files:  # an in-memory table: its fingerprint is all there is
        return fingerprint_of(kind, table._fingerprint, *extra)
    return fingerprint_of(kind, [Path(f).name for f in files], files_sha256([Path(f) for f in files]), *extra)


def _from_files(root: Path, rel: list[str], labels: list[int], *, spec: str, space: LabelSpace,
                fingerprint: str) -> TableDataset:
    table = datasets.Dataset.from_dict({"image": [str(root / r) for r in rel], "label": labels, "id": rel})
    table = table.cast_column("image", datasets.Image(decode=False))
    return TableDataset(table, spec=spec, label_space=space, fingerprint=fingerprint, id_col="id")


@register_kind("folder", "local image folder PATH/<class>/<image>; classes sorted by name",
               options=("labels",))
def open_folder(spec: DatasetSpec) -> TableDataset:
    root = Path(spec.location).expanduser()
    classes = _list_class_folders(root, spec.text)
    rel, labels = [], []
    for label, cls in enumerate(classes):
        files = _images_in(root / cls, spec.text)
        if not files:  # it would still take a label index, shifting every later class
            raise DataError(f"dataset {spec.text!r}: class folder {root / cls} has no images "
                            f"({', '.join(sorted(IMAGE_EXTS))}): add its images or remove the folder")
        rel += [f"{cls}/{p.name}" for p in files]
        labels += [label] * len(files)
    name = spec.option("labels") or f"folder:{fingerprint_of(classes)[:8]}"
    n = num_classes(name) or len(classes)
    return _from_files(root, rel, labels, spec=spec.text, space=LabelSpace(name, n),
                       fingerprint=_files_fingerprint("folder", root, rel, classes))


@register_kind("imagenet-val", "ImageNet validation folder PATH/<wnid>/<image>, optional ?subset=robustbench-5000",
               options=("subset",))
def open_imagenet_val(spec: DatasetSpec) -> TableDataset:
    root = Path(spec.location).expanduser()
    folders = _list_class_folders(root, spec.text)
    bad = [f for f in folders if not imagenet.WNID_RE.match(f)]
    if bad:
        raise DataError(f"dataset {spec.text!r}: folder {root / bad[0]} is not a wnid; expected class folders "
                        "named like n01440764 (the validation set sorted into wnid folders)")
    index = imagenet.wnid_index()
    unknown_wnids = [f for f in folders if f not in index]
    if unknown_wnids:
        raise DataError(f"dataset {spec.text!r}: {unknown_wnids[0]} is not an ImageNet-1k wnid")
    subset = spec.option("subset")
    if subset:
        rel = imagenet.read_subset(subset)
        missing = [r for r in rel if not (root / r).is_file()]
        if missing:
            raise DataError(f"dataset {spec.text!r}: {len(missing)} of the {len(rel)} subset images are missing, "
                            f"e.g. {root / missing[0]}; the subset needs the full validation set")
    else:
        rel = [f"{w}/{p.name}" for w in folders for p in _images_in(root / w, spec.text)]
        if not rel:
            raise DataError(f"dataset {spec.text!r}: no images under {root}/<wnid>/")
    labels = [index[r.split("/", 1)[0]] for r in rel]
    return _from_files(root, rel, labels, spec=spec.text, space=LabelSpace("imagenet", 1000),
                       fingerprint=_files_fingerprint("imagenet-val", root, rel, subset))


def _table_dataset(spec: DatasetSpec, table: datasets.Dataset, fingerprint: str, default_space: str) -> TableDataset:
    split_col = "split"
    if spec.option("split") and split_col in table.column_names:
        table = table.filter(lambda s: s == spec.option("split"), input_columns=split_col)
    image_col, label_col = spec.option("image", "image"), spec.option("label", "label")
    if label_col not in table.column_names:
        raise DataError(f"dataset {spec.text!r} has no column {label_col!r} (columns: "
                        f"{', '.join(table.column_names)}); name it with ?label=...")
    check_label_column(table, label_col, spec.text)
    space = _label_space(spec, table, label_col, default_space)
    return TableDataset(table, spec=spec.text, label_space=space, fingerprint=fingerprint,
                        image_col=image_col, label_col=label_col)


@register_kind("parquet", "local parquet file with an image column and a label column",
               options=("image", "label", "split", "labels"))
def open_parquet(spec: DatasetSpec) -> TableDataset:
    import pyarrow.parquet as pq
    path = Path(spec.location).expanduser()
    if not path.is_file():
        raise DataError(f"dataset {spec.text!r}: parquet file {path} does not exist")
    try:
        table = datasets.Dataset(pq.read_table(path))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"dataset {spec.text!r}: {path} is not a readable parquet file "
                        f"({type(exc).__name__})") from None
    from vitbench.hashing import file_sha256
    return _table_dataset(spec, table, fingerprint_of("parquet", file_sha256(path), spec.options), path.stem)


@register_kind("arrow", "local arrow file or a datasets save_to_disk folder",
               options=("image", "label", "split", "labels"))
def open_arrow(spec: DatasetSpec) -> TableDataset:
    path = Path(spec.location).expanduser()
    if not path.exists():
        raise DataError(f"dataset {spec.text!r}: {path} does not exist")
    try:
        table = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.Dataset.from_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"dataset {spec.text!r}: {path} is not an arrow file or save_to_disk folder "
                        f"({type(exc).__name__})") from None
    if isinstance(table, datasets.DatasetDict):
        split = spec.option("split", "test")
        if split not in table:
            raise DataError(f"dataset {spec.text!r}: no split {split!r} (splits: {', '.join(table)})")
        table = table[split]
    return _table_dataset(spec, table, _table_files_fingerprint("arrow", table, spec.options), path.stem)


@register_kind("hf", "Hugging Face hub dataset ORG/NAME (needs network)",
               options=("split", "config", "image", "label", "labels", "revision"))
def open_hub(spec: DatasetSpec) -> TableDataset:
    split = spec.option("split", "test")
    try:
        table = datasets.load_dataset(spec.location, spec.option("config"), split=split,
                                      revision=spec.option("revision"))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, unknown split...
        raise DataError(f"dataset {spec.text!r}: cannot load {spec.location} split {split} from the hub "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    default = spec.location.split("/")[-1].lower()
    return _table_dataset(spec, table, _table_files_fingerprint("hf", table, spec.location, split), default)
