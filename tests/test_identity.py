"""Identity: a result belongs to exact weights and exact data; zoo files are written safely.

Each test reproduces a way the store once printed wrong numbers without a warning (replaced weights mixed into a
row, images changed in place giving a cache hit, a checkpoint replaced with its mtime preserved trusted by its
old hash) or a way a zoo file was damaged (concurrent registrations lost, the bundled zoo rewritten through
``./model_zoo.yaml``, modes changed to 0600).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import stat

import numpy as np
import pytest
import yaml
from PIL import Image

from vitbench import hashing
from vitbench.board.tables import build_rows
from vitbench.store import RunRow
from vitbench.zoo.sources import BUNDLED_WEIGHTS

VIT_ARGS = ["--arch", "vit_tiny_patch16_224", "--arch-arg", "img_size=32", "--arch-arg", "patch_size=8",
            "--arch-arg", "depth=4", "--arch-arg", "embed_dim=64", "--arch-arg", "num_heads=4",
            "--dataset", "digits", "--input-size", "32", "--crop-pct", "1", "--interpolation", "bilinear",
            "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5"]


@pytest.fixture
def no_racy_window(monkeypatch):
    """Files the tests write are seconds old at most: let the hash cache keep them (the rule is tested apart)."""
    monkeypatch.setattr(hashing, "RACY_SECONDS", -1.0)


def _bundled_vit_entry(name: str) -> dict:
    from vitbench.zoo.schema import load_zoo
    return load_zoo().get(name).to_yaml_dict()


def _register(cli, name, weights, *extra):
    prep = _bundled_vit_entry("digits-vit.light")["preprocessing"]
    assert prep["input_size"] == 32  # VIT_ARGS mirror the bundled digits ViT
    return cli("zoo", "register", name, *VIT_ARGS, "--checkpoint", weights, *extra)


# -- leaderboard rows belong to one version of a model -----------------------------------------------------

FAST_AA = """description: clean and a quick AutoAttack
suites:
  - suite: clean
  - suite: autoattack
    version: custom
    attacks: [apgd-ce]
"""


def test_replaced_weights_never_shown_as_the_current_entry(cli, tmp_path):
    """Bench a checkpoint (clean + AutoAttack), re-register the name with other weights, bench clean: the row
    shows only the new weights' clean accuracy; the old numbers stay reachable under NAME@SHA."""
    preset = tmp_path / "aa.yaml"
    preset.write_text(FAST_AA)
    robust, plain = tmp_path / "robust.safetensors", tmp_path / "plain.safetensors"
    shutil.copyfile(BUNDLED_WEIGHTS / "digits-vit.light.safetensors", robust)
    shutil.copyfile(BUNDLED_WEIGHTS / "digits-vit.standard.safetensors", plain)
    assert _register(cli, "mine.x", robust).code == 0
    old = cli("bench", "mine.x", "--data", "digits", "--preset", preset, "--eps", "0.1", "--n-examples", "20")
    assert old.code == 0, old
    assert _register(cli, "mine.x", plain, "--force").code == 0
    assert cli("bench", "mine.x", "--data", "digits", "--suite", "clean", "--n-examples", "20").code == 0

    rows = json.loads(cli("leaderboard", "--data", "digits", "--json").out)
    assert [r["model"] for r in rows] == ["mine.x"]
    assert not any(m["label"].startswith("AA") for m in rows[0]["metrics"].values()), rows[0]["metrics"]
    new_sha = hashlib.sha256(plain.read_bytes()).hexdigest()
    assert rows[0]["weights_sha256"] == new_sha and rows[0]["current"]

    every = json.loads(cli("leaderboard", "--data", "digits", "--json", "--all-versions").out)
    old_sha = hashlib.sha256(robust.read_bytes()).hexdigest()
    old_rows = [r for r in every if r["model"] == f"mine.x@{old_sha[:8]}"]
    assert len(old_rows) == 1 and not old_rows[0]["current"]
    aa = old_rows[0]["metrics"]["autoattack/custom[apgd-ce]/robust_accuracy@linf:0.1"]
    assert aa["label"] == "AA[APGD-CE] Linf 0.1" and aa["value"] > 0.5  # the robust model's number, kept apart
    table = cli("leaderboard", "--data", "digits", "--all-versions").out
    assert f"| mine.x@{old_sha[:8]}" in table


def _run(run_id, suite, config, metrics, *, n=100, fp="m1"):
    return RunRow(run_id, "k", "a", "digits", "data", "digits", suite, config, n, 0,
                  {k: [v, True] for k, v in metrics.items()}, [], {}, "t", 1.0, False, fp, "s" * 64)


AA = {"norm": "linf", "eps": 0.1, "version": "standard", "attacks": []}


def test_robust_above_clean_on_the_same_examples_is_flagged():
    runs = [_run(1, "clean", {"ece_bins": 15}, {"accuracy": 0.40, "mean_confidence": 0.5, "ece": 0.1}),
            _run(2, "autoattack", AA, {"clean_accuracy": 0.40, "robust_accuracy": 0.30})]
    assert "robust-above-clean" not in build_rows(runs)[0].flags
    runs.append(_run(3, "clean", {"ece_bins": 15}, {"accuracy": 0.20, "mean_confidence": 0.5, "ece": 0.1}))
    assert "robust-above-clean" in build_rows(runs)[0].flags


def test_every_metric_keeps_its_own_n():
    """Clean at n=500, then at n=200: both top-1 accuracies are on the row, each with its n."""
    clean = {"ece_bins": 15}
    runs = [_run(1, "clean", clean, {"accuracy": 0.51, "mean_confidence": 0.5, "ece": 0.1, "top5_accuracy": 0.9},
                 n=500),
            _run(2, "clean", clean, {"accuracy": 0.55, "mean_confidence": 0.5, "ece": 0.2, "top5_accuracy": 0.8},
                 n=200)]
    (row,) = build_rows(runs)
    assert row.n_examples == 500 and row.column("Clean").value == 0.51
    assert row.column("Clean [n=200]").value == 0.55 and row.column("ECE [n=200]").value == 0.2


# -- data: the fingerprint covers file contents -------------------------------------------------------------

def _digits_folder(root, n=40):
    """The first n digits test images as 32x32 BMP files (uncompressed: an in-place edit keeps the size)."""
    from vitbench.data import open_dataset
    from vitbench.zoo.schema import Preprocessing
    data = open_dataset("digits")
    x, y = data.load(0, n, Preprocessing(input_size=32, crop_pct=1.0))
    paths = []
    for i, (img, label) in enumerate(zip(x, y.tolist(), strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:03d}.bmp"
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_images_changed_in_place_are_not_a_cache_hit(cli, tmp_path, no_racy_window):
    """Invert every image in place, same size and mtime: the rerun is computed again, and gives the fresh number."""
    root = tmp_path / "imgs"
    paths = _digits_folder(root)
    spec = f"folder:{root}?labels=digits"
    args = ("bench", "digits-vit.light", "--data", spec, "--suite", "clean", "--json")
    before = json.loads(cli(*args).out)[0]
    assert before["metrics"]["clean/accuracy"]["value"] > 0.9
    for path in paths:
        st = path.stat()
        with Image.open(path) as img:
            inverted = Image.fromarray(255 - np.asarray(img))
        inverted.save(path)
        assert path.stat().st_size == st.st_size
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p / rsync -a would leave it
    after = json.loads(cli(*args).out)[0]
    assert not after["cached"] and after["metrics"]["clean/accuracy"]["value"] < 0.5


def test_hash_cache_keys_on_inode_and_ctime_not_just_size_and_mtime(tmp_path, no_racy_window, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 1000)
    first = hashing.file_sha256(path)
    calls = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))
    assert hashing.file_sha256(path) == first and calls == []  # unchanged: from the cache
    st = path.stat()
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"b" * 1000)  # the same size
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same mtime (cp -p)
    os.replace(replacement, path)
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert hashing.file_sha256(path) == hashlib.sha256(b"b" * 1000).hexdigest() and len(calls) == 1


def test_hash_cache_skips_racily_clean_files(tmp_path, monkeypatch):
    """A file hashed within the racy window of its last change is hashed again next time (as git does)."""
    monkeypatch.setattr(hashing, "RACY_SECONDS", 3600.0)
    path = tmp_path / "w.bin"
    path.write_bytes(b"a")
    hashing.file_sha256(path)
    calls = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))
    hashing.file_sha256(path)
    assert len(calls) == 1


def test_replaced_checkpoint_with_preserved_mtime_is_refused(cli, tmp_path, no_racy_window):
    """A pinned sha256 is checked against the file's bytes: a same-size checkpoint copied over with cp -p is
    caught, not run under the old hash."""
    weights = tmp_path / "w.safetensors"
    shutil.copyfile(BUNDLED_WEIGHTS / "digits-vit.light.safetensors", weights)
    assert _register(cli, "mine.y", weights).code == 0
    assert cli("bench", "mine.y", "--data", "digits", "--suite", "clean", "--n-examples", "10").code == 0
    st = weights.stat()
    other = tmp_path / "other.safetensors"
    shutil.copy2(BUNDLED_WEIGHTS / "digits-vit.standard.safetensors", other)
    assert other.stat().st_size == st.st_size
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, weights)
    res = cli("bench", "mine.y", "--data", "digits", "--suite", "clean", "--n-examples", "10")
    assert res.code == 2 and "the file changed" in res.err


# -- zoo files ---------------------------------------------------------------------------------------------

def test_shadowing_a_bundled_entry_is_said(cli, tmp_path):
    weights = tmp_path / "w.safetensors"
    shutil.copyfile(BUNDLED_WEIGHTS / "digits-vit.standard.safetensors", weights)
    res = _register(cli, "digits-vit.light", weights)
    assert res.code == 0 and "shadows the bundled entry" in res.err
    listing = cli("zoo", "list").out
    line = next(ln for ln in listing.splitlines() if ln.startswith("| digits-vit.light "))
    assert "user, shadows bundled" in line
    other = next(ln for ln in listing.splitlines() if ln.startswith("| digits-vit.standard "))
    assert "bundled" in other and "shadows" not in other


def _append_many(zoo_file, start, count, barrier):
    from vitbench.zoo.register import append_entry
    from vitbench.zoo.schema import Weights, ZooEntry
    barrier.wait()
    for i in range(start, start + count):
        append_entry(zoo_file, ZooEntry(name=f"m{i}", arch="test_resnet", weights=Weights(source="w.safetensors"),
                                        num_classes=10, dataset="digits"))


def test_concurrent_registrations_all_land(tmp_path):
    zoo_file = tmp_path / "model_zoo.yaml"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_append_many, args=(zoo_file, 5 * k, 5, barrier)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(yaml.safe_load(zoo_file.read_text())["models"]) == sorted(f"m{i}" for i in range(20))


def test_register_never_writes_the_bundled_zoo_through_a_link(cli, tmp_path, monkeypatch):
    from vitbench.zoo import schema
    bundled = tmp_path / "pkg" / "model_zoo.yaml"
    bundled.parent.mkdir()
    shutil.copyfile(schema.BUNDLED_ZOO, bundled)
    monkeypatch.setattr(schema, "BUNDLED_ZOO", bundled)
    os.symlink(bundled, tmp_path / "work" / "model_zoo.yaml")  # the repository root's link
    before = bundled.read_bytes()
    weights = tmp_path / "w.safetensors"
    shutil.copyfile(BUNDLED_WEIGHTS / "digits-vit.standard.safetensors", weights)
    res = _register(cli, "mine.z", weights)
    assert res.code == 2 and "bundled zoo" in res.err and "--zoo" in res.err
    assert bundled.read_bytes() == before


def test_register_keeps_the_zoo_file_mode(cli, tmp_path):
    zoo = tmp_path / "work" / "model_zoo.yaml"
    zoo.write_text("version: 1\nmodels: {}\n")
    os.chmod(zoo, 0o644)
    weights = tmp_path / "w.safetensors"
    shutil.copyfile(BUNDLED_WEIGHTS / "digits-vit.standard.safetensors", weights)
    assert _register(cli, "mine.m", weights).code == 0
    assert stat.S_IMODE(zoo.stat().st_mode) == 0o644
    fresh = tmp_path / "fresh.yaml"
    assert _register(cli, "mine.n", weights, "--zoo", fresh).code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~mask


def test_class_count_contradicting_the_dataset_is_refused(cli, tmp_path):
    weights = tmp_path / "w.safetensors"
    shutil.copyfile(BUNDLED_WEIGHTS / "digits-vit.standard.safetensors", weights)
    res = _register(cli, "mine.c", weights, "--num-classes", "12")
    assert res.code == 2 and "--num-classes 12 contradicts --dataset digits, which has 10 classes" in res.err
    assert not (tmp_path / "work" / "model_zoo.yaml").exists()


def test_hand_written_class_count_contradicting_the_dataset_stops_bench(cli, tmp_path):
    zoo = tmp_path / "z.yaml"
    entry = _bundled_vit_entry("digits-vit.standard")
    entry["num_classes"] = 12
    entry["weights"] = {"source": str(BUNDLED_WEIGHTS / "digits-vit.standard.safetensors")}
    zoo.write_text(yaml.safe_dump({"version": 1, "models": {"mine.h": entry}}))
    res = cli("bench", "mine.h", "--zoo", zoo, "--data", "digits", "--suite", "clean", "--n-examples", "5")
    assert res.code == 2 and "declares 12 classes but its dataset digits has 10" in res.err


def test_register_warns_when_the_input_size_is_not_the_datasets(cli, tmp_path):
    """timm's default preprocessing for test_resnet is 160 px, crop 0.875: wrong for 32 px digits."""
    res = cli("zoo", "register", "mine.r", "--arch", "test_resnet", "--dataset", "digits",
              "--checkpoint", BUNDLED_WEIGHTS / "digits-resnet.standard.safetensors")
    assert res.code == 0, res
    assert "--input-size 32" in res.err and "--crop-pct 1" in res.err


def test_missing_vitbench_zoo_is_an_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("VITBENCH_ZOO", str(tmp_path / "nope.yaml"))
    res = cli("zoo", "list")
    assert res.code == 2 and "VITBENCH_ZOO" in res.err and "nope.yaml" in res.err


def test_evaluation_keys_are_stable_across_versions():
    """The keys of bundled models' evaluations are pinned: a refactor that changes them silently makes every
    user's stored chunks unreachable (issue 11's member facts did, once). Change these only with a suite version
    bump or a key-format change that the release notes announce."""
    from vitbench.api import setup
    from vitbench.store import open_store
    prepared = setup(["digits-vit.light"], "digits", suites=["clean", "pgd_sweep"], eps=0.1, device="cpu")
    engine = prepared.engine(open_store())
    keys = {job.suite: engine.key(entry, data, job)[0]
            for entry, data, job in (prepared.task(p) for p in prepared.positions())}
    assert keys == {"clean": "61fa8f511bcb6ffd2bca6039eaf81b87", "pgd_sweep": "c9fa574ca7be1d7f912c88732a3b05fc"}
