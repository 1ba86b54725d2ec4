"""Dataset specs and sources: the embedded set, folders, ImageNet val layout and subset, CIFAR, parquet."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from vitbench.data import open_dataset, parse_spec
from vitbench.data.imagenet import read_subset, wnids
from vitbench.errors import ConfigError, DataError, NotFoundError
from vitbench.zoo.schema import Preprocessing

P32 = Preprocessing(input_size=32, interpolation="bilinear", crop_pct=1.0)


def test_digits_split_sizes_and_values():
    test, train, every = open_dataset("digits"), open_dataset("digits?split=train"), open_dataset("digits?split=all")
    assert (len(test), len(train), len(every)) == (500, 1297, 1797)
    x, y = test.load(0, 10, P32)
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(x[:, 0], x[:, 1])  # grey digits repeated to RGB
    assert set(test.labels(0, 500).tolist()) == set(range(10))
    assert not set(test.sample_ids(0, 500)) & set(train.sample_ids(0, 1297))
    x2, _ = open_dataset("digits").load(0, 10, P32)
    assert torch.equal(x, x2) and test.fingerprint == open_dataset("digits").fingerprint


def test_digits_resized_for_other_input_sizes():
    x, _ = open_dataset("digits").load(0, 2, Preprocessing(input_size=64, interpolation="bicubic", crop_pct=1.0))
    assert x.shape == (2, 3, 64, 64)


@pytest.mark.parametrize("spec, err, match", [
    ("digitz", NotFoundError, "did you mean 'digits'"),
    ("digits?split=val", ConfigError, "split"),
    ("digits?spilt=train", ConfigError, "unknown option 'spilt'"),
    ("folder", ConfigError, "needs a location"),
    ("folder:/definitely/not/here", DataError, "does not exist"),
    ("imagenet-val:/definitely/not/here", DataError, "does not exist"),
    ("cifar10:/definitely/not/here", DataError, "does not exist"),
    ("parquet:/definitely/not/here.parquet", DataError, "does not exist"),
])
def test_bad_specs(spec, err, match):
    with pytest.raises(err, match=match):
        open_dataset(spec)


def _img(path, color, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_folder(tmp_path):
    tmp_path = tmp_path / "images"
    _img(tmp_path / "cat" / "a.png", (255, 0, 0))
    _img(tmp_path / "cat" / "b.png", (250, 0, 0))
    _img(tmp_path / "dog" / "c.jpg", (0, 0, 255))
    ds = open_dataset(f"folder:{tmp_path}")
    assert len(ds) == 3 and ds.label_space.num_classes == 2
    x, y = ds.load(0, 3, Preprocessing(input_size=24, interpolation="bilinear", crop_pct=1.0))
    assert x.shape == (3, 3, 24, 24) and y.tolist() == [0, 0, 1]
    assert float(x[0, 0].mean()) == pytest.approx(1.0, abs=1e-6) and float(x[2, 2].mean()) > 0.95
    assert ds.sample_ids(0, 3) == ["cat/a.png", "cat/b.png", "dog/c.jpg"]


def test_folder_without_class_dirs(tmp_path):
    tmp_path = tmp_path / "images"
    _img(tmp_path / "a.png", (0, 0, 0))
    with pytest.raises(DataError, match="no class folders"):
        open_dataset(f"folder:{tmp_path}")


def test_imagenet_val_labels_by_sorted_wnid(tmp_path):
    tmp_path = tmp_path / "val"
    names = wnids()
    _img(tmp_path / names[0] / "ILSVRC2012_val_1.JPEG", (10, 10, 10))
    _img(tmp_path / names[999] / "ILSVRC2012_val_2.JPEG", (20, 20, 20))
    ds = open_dataset(f"imagenet-val:{tmp_path}")
    assert ds.labels(0, 2).tolist() == [0, 999] and ds.label_space.name == "imagenet"
    x, _ = ds.load(0, 2, Preprocessing(input_size=16, interpolation="bicubic", crop_pct=0.875))
    assert x.shape == (2, 3, 16, 16)


def test_imagenet_val_wrong_layout(tmp_path):
    tmp_path = tmp_path / "val"
    _img(tmp_path / "cats" / "x.JPEG", (0, 0, 0))
    with pytest.raises(DataError, match="not a wnid"):
        open_dataset(f"imagenet-val:{tmp_path}")


def test_robustbench_subset_shipped_and_checked(tmp_path):
    tmp_path = tmp_path / "val"
    ids = read_subset("robustbench-5000")
    assert len(ids) == 5000 and len({i.split("/")[0] for i in ids}) == 997
    _img(tmp_path / ids[0], (0, 0, 0))
    with pytest.raises(DataError, match="4999 of the 5000 subset images are missing"):
        open_dataset(f"imagenet-val:{tmp_path}?subset=robustbench-5000")


def _cifar_arrays(n=20, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, classes, n)


def test_cifar10_python_layout(tmp_path):
    data, labels = _cifar_arrays()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": data, b"labels": labels.tolist()}, fh, protocol=2)
    ds = open_dataset(f"cifar10:{tmp_path}")
    x, y = ds.load(0, 20, P32)
    assert y.tolist() == labels.tolist()
    expected = torch.from_numpy(data.reshape(-1, 3, 32, 32)).float() / 255
    assert torch.allclose(x, expected)


def test_cifar100_binary_layout(tmp_path):
    data, fine = _cifar_arrays(classes=100)
    coarse = fine // 5
    rows = np.concatenate([coarse[:, None], fine[:, None], data], axis=1).astype(np.uint8)
    (tmp_path / "cifar-100-binary").mkdir()
    rows.tofile(tmp_path / "cifar-100-binary" / "test.bin")
    ds = open_dataset(f"cifar100:{tmp_path}")
    assert ds.labels(0, 20).tolist() == fine.tolist() and ds.label_space.num_classes == 100


def test_cifar_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))
    (tmp_path / "cifar-10-batches-py").mkdir()
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil()}, fh)
    with pytest.raises(DataError, match="not allowed"):
        open_dataset(f"cifar10:{tmp_path}")


def test_parquet_file(tmp_path):
    import datasets
    imgs = [Image.new("RGB", (8, 8), (i * 20, 0, 0)) for i in range(5)]
    ds = datasets.Dataset.from_dict({"img": imgs, "y": [0, 1, 2, 1, 0]},
                                    features=datasets.Features({"img": datasets.Image(), "y": datasets.Value("int64")}))
    ds.to_parquet(str(tmp_path / "d.parquet"))
    opened = open_dataset(f"parquet:{tmp_path / 'd.parquet'}?image=img&label=y")
    x, y = opened.load(0, 5, Preprocessing(input_size=8, interpolation="bilinear", crop_pct=1.0))
    assert y.tolist() == [0, 1, 2, 1, 0] and x.shape == (5, 3, 8, 8)
    assert x[4, 0, 0, 0].item() == pytest.approx(80 / 255, abs=1e-6)
    with pytest.raises(DataError, match="no column 'label'"):
        open_dataset(f"parquet:{tmp_path / 'd.parquet'}?image=img")


def test_spec_grammar():
    spec = parse_spec("imagenet-val:/data/val?subset=robustbench-5000")
    assert (spec.kind, spec.location, spec.options) == ("imagenet-val", "/data/val", {"subset": "robustbench-5000"})


def test_loaded_images_are_contiguous():
    """pyautoattack's zeros_like/view on inputs needs the default memory layout."""
    x, _ = open_dataset("digits").load(0, 4, P32)
    assert x.is_contiguous()
