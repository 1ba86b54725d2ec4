"""Released distribution-shift sets in their published layouts, built by the tests, read end to end."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_VIT_ARGS, metric_values
from vitbench.data import open_dataset
from vitbench.data.imagenet import wnids
from vitbench.data.released import read_video, shift_classes
from vitbench.errors import DataError

rng = np.random.default_rng(0)


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=95)


@pytest.fixture
def imagenet_zoo(tmp_path):
    """A tiny 1000-class ViT in a zoo file (random weights, deterministic)."""
    import timm
    from safetensors.torch import save_file
    torch.manual_seed(0)
    args = dict(TINY_VIT_ARGS, img_size=224, patch_size=32)
    net = timm.create_model("vit_tiny_patch16_224", num_classes=1000, **args)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "in.safetensors"))
    zoo = tmp_path / "in_zoo.yaml"
    zoo.write_text(f"""version: 1
models:
  tiny-in.test:
    arch: vit_tiny_patch16_224
    arch_args: {json.dumps(args)}
    weights: {{source: in.safetensors}}
    num_classes: 1000
    dataset: imagenet
    preprocessing: {{input_size: 224, interpolation: bilinear, crop_pct: 1.0}}
""")
    return zoo


@pytest.fixture
def imagenet_c(tmp_path):
    """A clean 'validation' folder of 4 images and an ImageNet-C folder with the same images for 2 corruptions."""
    names = [wnids()[0], wnids()[1]]
    val, c = tmp_path / "val", tmp_path / "imagenet-c"
    ids = [f"{names[i % 2]}/ILSVRC2012_val_{i:08d}.JPEG" for i in range(4)]
    for i, rel in enumerate(ids):
        _jpeg(val / rel, i)
        for corruption in ("brightness", "fog"):
            for s in range(1, 6):
                _jpeg(c / corruption / str(s) / rel, i)  # identical images: predictions must equal clean ones
    return val, c


def test_imagenet_c_identical_images_give_clean_errors(cli, imagenet_zoo, imagenet_c, tmp_path):
    val, root = imagenet_c
    preset = tmp_path / "c.yaml"
    preset.write_text(f"suites:\n  - suite: corruptions\n    source: released\n    root: {root}\n"
                      "    corruptions: [brightness, fog]\n")
    res = cli("bench", "tiny-in.test", "--zoo", imagenet_zoo, "--data", f"imagenet-val:{val}", "--preset", preset,
              "--json")
    assert res.code == 0, res
    metrics = metric_values(json.loads(res.out)[0])
    clean_err = 1 - metrics["clean_accuracy"]
    assert all(metrics[f"error/{c}/{s}"] == pytest.approx(clean_err)
               for c in ("brightness", "fog") for s in range(1, 6))
    assert "mce" not in metrics  # only 2 of the 15 corruptions


def test_imagenet_c_missing_corruption_and_bad_severities(cli, imagenet_zoo, imagenet_c, tmp_path):
    val, root = imagenet_c
    preset = tmp_path / "c.yaml"
    preset.write_text(f"suites:\n  - suite: corruptions\n    source: released\n    root: {root}\n"
                      "    corruptions: [brightness, snow]\n")
    res = cli("bench", "tiny-in.test", "--zoo", imagenet_zoo, "--data", f"imagenet-val:{val}", "--preset", preset)
    assert res.code == 2 and "snow is missing" in res.err and "<corruption>/<1..5>/<wnid>" in res.err
    (root / "fog" / "6").mkdir()
    preset.write_text(f"suites:\n  - suite: corruptions\n    source: released\n    root: {root}\n"
                      "    corruptions: [fog]\n")
    res = cli("bench", "tiny-in.test", "--zoo", imagenet_zoo, "--data", f"imagenet-val:{val}", "--preset", preset)
    assert res.code == 2 and "expected 1 2 3 4 5" in res.err


def test_cifar_c_rows_by_severity(tmp_path):
    from vitbench.data.released import CifarC
    from vitbench.zoo.schema import Preprocessing
    n = 6
    arr = np.zeros((5 * n, 32, 32, 3), dtype=np.uint8)
    for s in range(5):
        arr[s * n:(s + 1) * n] = np.arange(n, dtype=np.uint8)[:, None, None, None] + 40 * s
    np.save(tmp_path / "fog.npy", arr)
    x = CifarC(tmp_path).load("fog", 3, 2, 5, Preprocessing(input_size=32, crop_pct=1.0, interpolation="bilinear"))
    assert x.shape == (3, 3, 32, 32)
    assert (x[:, 0, 0, 0] * 255).round().tolist() == [82.0, 83.0, 84.0]  # 40 * (3 - 1) + index
    np.save(tmp_path / "snow.npy", np.zeros((7, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"expected \(5\*N, 32, 32, 3\)"):
        CifarC(tmp_path).check("snow")


def test_imagenet_a_layout_checks(tmp_path):
    indices, expected = shift_classes("imagenet-a")
    root = tmp_path / "imagenet-a"
    for w in expected[:3]:
        _jpeg(root / w / "a.jpg", 1)
    with pytest.raises(DataError, match="197 of imagenet-a's 200 class folders are missing"):
        open_dataset(f"imagenet-a:{root}")
    (root / wnids()[0]).mkdir()
    with pytest.raises(DataError, match="is not one of imagenet-a's 200 wnids"):
        open_dataset(f"imagenet-a:{root}")


def test_imagenet_r_masks_to_its_200_classes(cli, imagenet_zoo, tmp_path):
    indices, expected = shift_classes("imagenet-r")
    root = tmp_path / "imagenet-r"
    for i, w in enumerate(expected):
        if i < 4:
            _jpeg(root / w / "x.jpg", i)
        else:
            (root / w).mkdir(parents=True)
    ds = open_dataset(f"imagenet-r:{root}")
    assert ds.class_subset == indices and len(ds) == 4
    res = cli("bench", "tiny-in.test", "--zoo", imagenet_zoo, "--data", f"imagenet-r:{root}", "--suite",
              "natural_shift", "--json")
    assert res.code == 0, res
    out = json.loads(res.out)[0]
    assert (out["config"]["benchmark"] == "imagenet-r"
            and 0 <= out["metrics"]["natural_shift/imagenet-r/accuracy"]["value"] <= 1)
    bad = cli("bench", "tiny-in.test", "--zoo", imagenet_zoo, "--data", "digits", "--suite", "natural_shift")
    assert bad.code == 2 and "imagenet-a: or imagenet-r:" in bad.err


def _mp4(path, frames):
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_imagenet_p_video_reading_and_errors(tmp_path):
    frames = np.stack([np.full((32, 32, 3), 8 * t, dtype=np.uint8) for t in range(6)])
    path = tmp_path / "p" / "brightness" / wnids()[5] / "v.mp4"
    _mp4(path, frames)
    video = read_video(path)
    assert video.shape == (6, 3, 32, 32)
    means = (video.mean(dim=(1, 2, 3)) * 255).tolist()
    assert means == sorted(means) and means[-1] - means[0] > 30  # frames in order (lossy codec: not exact)
    ds = open_dataset(f"imagenet-p:{tmp_path / 'p'}")
    assert ds.is_sequence and ds.sample_ids(0, 1) == [f"brightness/{wnids()[5]}/v.mp4"] and ds.labels(0, 1).item() == 5
    broken = tmp_path / "p" / "brightness" / wnids()[5] / "w.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(DataError, match="unreadable"):
        read_video(broken)


def test_cifar_p_sequences_through_the_suite(cli, tiny_zoo, tmp_path):
    seq = np.repeat(np.random.default_rng(1).integers(0, 256, (3, 1, 32, 32, 3), dtype=np.uint8), 31, axis=1)
    np.save(tmp_path / "brightness.npy", seq)   # constant sequences: no flips
    res = cli("bench", "tiny-vit.test", "--zoo", tiny_zoo, "--data", f"cifar-p:{tmp_path}?labels=digits",
              "--suite", "perturbations", "--json")
    assert res.code == 0, res
    metrics = metric_values(json.loads(res.out)[0])
    assert metrics["fp/brightness"] == 0.0 and metrics["t5d/brightness"] == 0.0
    bad = cli("bench", "tiny-vit.test", "--zoo", tiny_zoo, "--data", f"cifar-p:{tmp_path}?labels=digits",
              "--suite", "clean")
    assert bad.code == 2 and "perturbation sequences" in bad.err


def test_imagenet_c_reads_each_severity_folder(cli, imagenet_zoo, imagenet_c, tmp_path):
    """A head that says class 0 for black images and class 2 for noise: black fog/5 images (half of them class 0)
    must give error 0.5 at severity 5 while severity 4 keeps the noise images' error 1."""
    from safetensors.torch import load_file, save_file

    from vitbench.zoo.load import load_model
    from vitbench.zoo.schema import load_zoo
    val, root = imagenet_c
    for rel in val.rglob("*.JPEG"):
        Image.fromarray(np.zeros((224, 224, 3), np.uint8)).save(root / "fog" / "5" / rel.relative_to(val))
    model = load_model(load_zoo(imagenet_zoo).get("tiny-in.test")).model
    seen = []
    model.net.head.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0]))
    with torch.no_grad():
        model(torch.stack([torch.zeros(3, 224, 224), torch.rand(3, 224, 224)]))
    d = seen[0][0] - seen[0][1]
    w = load_file(str(tmp_path / "in.safetensors"))
    w["head.weight"] = torch.zeros_like(w["head.weight"])
    w["head.weight"][0], w["head.weight"][2] = d, -d
    w["head.bias"] = torch.full((1000,), -1e4)
    w["head.bias"][[0, 2]] = 0
    save_file(w, str(tmp_path / "in.safetensors"))
    preset = tmp_path / "c.yaml"
    preset.write_text(f"suites:\n  - suite: corruptions\n    source: released\n    root: {root}\n"
                      "    corruptions: [brightness, fog]\n")
    res = cli("bench", "tiny-in.test", "--zoo", imagenet_zoo, "--data", f"imagenet-val:{val}", "--preset", preset,
              "--json")
    assert res.code == 0, res
    m = metric_values(json.loads(res.out)[0])
    assert m["clean_accuracy"] == 0 and m["error/fog/4"] == 1.0 and m["error/fog/5"] == 0.5


def test_imagenet_r_accuracy_is_over_its_200_classes_only(cli, imagenet_zoo, tmp_path):
    """The largest logit is outside ImageNet-R's classes: masked, the prediction is its first class."""
    from safetensors.torch import load_file, save_file
    indices, expected = shift_classes("imagenet-r")
    root = tmp_path / "imagenet-r"
    for i, w in enumerate(expected):
        if i < 4:
            _jpeg(root / w / "x.jpg", i)
        else:
            (root / w).mkdir(parents=True)
    weights = load_file(str(tmp_path / "in.safetensors"))
    outside = next(c for c in range(1000) if c not in indices)
    weights["head.bias"] = torch.zeros(1000)
    weights["head.bias"][outside], weights["head.bias"][indices[0]] = 1e3, 5e2
    save_file(weights, str(tmp_path / "in.safetensors"))
    res = cli("bench", "tiny-in.test", "--zoo", imagenet_zoo, "--data", f"imagenet-r:{root}", "--suite",
              "natural_shift", "--json")
    assert res.code == 0, res
    m = metric_values(json.loads(res.out)[0])
    assert m["accuracy"] == 0.25 and m["mean_confidence"] == 1.0   # 1 of 4 images is of class indices[0]


def test_cifar_p_flip_probability_follows_the_frames(cli, tiny_zoo, tmp_path):
    """Every frame a different image: the suite's flip probability is the one of the model's own predictions."""
    from vitbench.suites.perturbations import flip_probability
    from vitbench.zoo.load import load_model
    from vitbench.zoo.schema import load_zoo
    seq = np.random.default_rng(1).integers(0, 256, (3, 31, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "brightness.npy", seq)
    res = cli("bench", "tiny-vit.test", "--zoo", tiny_zoo, "--data", f"cifar-p:{tmp_path}?labels=digits",
              "--suite", "perturbations", "--json")
    assert res.code == 0, res
    model = load_model(load_zoo(tiny_zoo).get("tiny-vit.test")).model
    with torch.no_grad():
        preds = model(torch.from_numpy(seq).flatten(0, 1).permute(0, 3, 1, 2).float() / 255).argmax(1).view(3, 31)
    expected = sum(flip_probability(p.tolist(), noise=False) for p in preds) / 3
    assert expected > 0 and metric_values(json.loads(res.out)[0])["fp/brightness"] == pytest.approx(expected)


def test_imagenet_p_frames_are_fed_as_the_authors_do(tmp_path, tiny_zoo):
    """Default: the released 224 px frames as they are (no 256 upscale and 224 crop for crop_pct 0.875);
    ``preprocessing: model`` applies the model's crop; the choice changes the evaluation key."""
    from vitbench.data.transforms import tensor_resize
    from vitbench.engine import Engine, Options, SuiteRun
    from vitbench.store import open_store
    from vitbench.suites.base import Chunk, Context
    from vitbench.suites.perturbations import PerturbationsConfig, released_frames
    from vitbench.zoo.schema import Preprocessing, load_zoo

    frames = np.zeros((4, 224, 224, 3), dtype=np.uint8)
    frames[:, :, :16] = 250                                      # a bright band that the 0.875 crop cuts
    path = tmp_path / "p" / "brightness" / wnids()[3] / "v.mp4"
    _mp4(path, frames)
    ds = open_dataset(f"imagenet-p:{tmp_path / 'p'}")
    prep = Preprocessing(input_size=224, crop_pct=0.875, interpolation="bicubic")
    authors, _ = ds.load(0, 1, prep)
    assert torch.equal(authors[0], read_video(path))             # as decoded: no resize, no crop
    model, _ = ds.load(0, 1, prep, protocol="model")
    expected = tensor_resize(read_video(path), input_size=224, crop_pct=0.875, interpolation="bicubic")
    assert torch.allclose(model[0], expected) and float((model - authors).abs().max()) > 0.2
    assert PerturbationsConfig().preprocessing == "authors"
    entry = load_zoo(tiny_zoo).get("tiny-vit.test")
    chunk = Chunk(0, 0, 1, authors, torch.tensor([3]), 0, ds.sample_ids(0, 1))
    ctx = Context(torch.device("cpu"), 8, ds, type("Entry", (), {"preprocessing": prep})())
    assert released_frames(chunk, PerturbationsConfig(source="released"), ctx) is authors
    assert torch.equal(released_frames(chunk, PerturbationsConfig(source="released", preprocessing="model"), ctx),
                       model)
    engine = Engine(open_store(), Options(n_examples=1, chunk_size=1, device="cpu"))
    keys = {p: engine.key(entry, ds, SuiteRun("perturbations", PerturbationsConfig(source="released",
                                                                                  preprocessing=p)))[0]
            for p in ("authors", "model")}
    assert keys["authors"] != keys["model"]
    with pytest.raises(ValueError, match="preprocessing 'crop'"):
        PerturbationsConfig(preprocessing="crop")
    with pytest.raises(DataError, match="frame protocol"):
        ds.load(0, 1, prep, protocol="crop")


def test_imagenet_c_images_replaced_in_place_are_not_a_cache_hit(cli, imagenet_zoo, imagenet_c, tmp_path,
                                                                   monkeypatch):
    """The released ImageNet-C images are identified by their contents: one image rewritten (same size and mtime)
    gives another evaluation key."""
    import os

    from vitbench import hashing
    from vitbench.suites import corruptions
    monkeypatch.setattr(hashing, "RACY_SECONDS", -1.0)
    val, root = imagenet_c
    preset = tmp_path / "c.yaml"
    preset.write_text(f"suites:\n  - suite: corruptions\n    source: released\n    root: {root}\n"
                      "    corruptions: [fog]\n")
    args = ("bench", "tiny-in.test", "--zoo", imagenet_zoo, "--data", f"imagenet-val:{val}", "--preset", preset,
            "--json")
    first = json.loads(cli(*args).out)[0]
    again = json.loads(cli(*args).out)[0]
    assert again["cached"] and again["eval_key"] == first["eval_key"]
    image = next((root / "fog" / "3").rglob("*.JPEG"))
    st = image.stat()
    data = bytearray(image.read_bytes())
    data[-3] ^= 0xFF                                    # same size, other bytes
    image.write_bytes(bytes(data))
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    corruptions._released_fingerprint.cache_clear()       # a new process would start without the memo
    changed = json.loads(cli(*args).out)[0]
    assert not changed["cached"] and changed["eval_key"] != first["eval_key"]


def test_a_corrupt_imagenet_c_image_is_one_line_naming_it(cli, imagenet_zoo, imagenet_c, tmp_path):
    val, root = imagenet_c
    broken = next((root / "fog" / "2").rglob("*.JPEG"))
    broken.write_bytes(broken.read_bytes()[:200])             # truncated
    preset = tmp_path / "c.yaml"
    preset.write_text(f"suites:\n  - suite: corruptions\n    source: released\n    root: {root}\n"
                      "    corruptions: [fog]\n")
    res = cli("bench", "tiny-in.test", "--zoo", imagenet_zoo, "--data", f"imagenet-val:{val}", "--preset", preset)
    assert res.code == 2 and res.err.count("\n") == 1
    assert str(broken.relative_to(root)) in res.err and "corrupt or truncated" in res.err
