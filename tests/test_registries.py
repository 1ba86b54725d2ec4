"""Tests driven by the registries: every suite, recipe, dataset kind and bundled zoo entry gets one, with no edit
here when one is added (a new suite declares its example data and a quick config; a new dataset kind adds a
builder to vitbench/data/examples.py)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

import vitbench
from conftest import TINY_VIT_ARGS, train_interrupted_then_resumed
from vitbench.data import open_dataset
from vitbench.data.examples import EXAMPLES
from vitbench.data.specs import KINDS
from vitbench.suites import SUITES, Preset, PresetItem
from vitbench.training.recipes import RECIPES
from vitbench.zoo.schema import load_zoo

#: kinds whose data cannot be built offline, with the reason
ONLINE_ONLY = {"hf": "a Hugging Face hub dataset needs the network"}


@pytest.mark.parametrize("kind", KINDS.names())
def test_every_dataset_kind_opens_a_fixture_it_builds(kind, tmp_path):
    if kind in ONLINE_ONLY:
        pytest.skip(ONLINE_ONLY[kind])
    if kind == "imagenet-p":
        pytest.importorskip("av")
    assert kind in EXAMPLES, f"dataset kind {kind} has no builder in vitbench/data/examples.py"
    spec = EXAMPLES[kind](tmp_path)
    data = open_dataset(spec)
    assert len(data) >= 1 and data.label_space.num_classes >= 2
    from vitbench.zoo.schema import Preprocessing
    x, y = data.load(0, min(2, len(data)), Preprocessing(input_size=32, crop_pct=1.0))
    assert x.shape[-3:] == (3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert y.dtype == torch.int64 and int(y.max()) < data.label_space.num_classes
    assert data.fingerprint and data.sample_ids(0, 1)


def _model_for(space_classes: int, tmp_path):
    """The bundled robust digits ViT for 10-class data; a tiny random ImageNet ViT otherwise."""
    if space_classes == 10:
        return vitbench.load_model("digits-vit.light", device="cpu")
    import timm
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", num_classes=1000, **dict(TINY_VIT_ARGS, img_size=64))
    return vitbench.wrap(net, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=64, dataset="imagenet", name="tiny-in")


#: the package's own suites (test modules register probes of their own)
PACKAGE_SUITES = [n for n in SUITES.names() if type(SUITES.get(n)).__module__.startswith("vitbench.")]


@pytest.mark.parametrize("name", PACKAGE_SUITES)
def test_every_suite_runs_through_the_engine(name, tmp_path):
    suite = SUITES.get(name)
    spec = EXAMPLES[suite.example_data](tmp_path / "data")
    data = open_dataset(spec)
    model = _model_for(data.label_space.num_classes, tmp_path)
    preset = Preset("smoke", "", (PresetItem(name, dict(suite.smoke_config)),))
    report = vitbench.evaluate(model, data, preset=preset, eps=0.1, n_examples=4, chunk_size=4, device="cpu",
                               resamples=50)
    (run,) = report.results
    assert run.n_examples == min(4, len(data)) and run.metrics
    values = [m.value for m in run.metrics.values()]
    assert any(math.isfinite(v) for v in values)
    assert run.columns, f"suite {name} contributes no leaderboard column"
    ids = [c.id for c in run.columns]
    assert len(ids) == len(set(ids)) and all(c.label and c.kind for c in run.columns)
    board = vitbench.leaderboard()
    assert any(cid in row.cells for row in board.rows for cid in ids), f"suite {name}'s columns are not shown"


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_trains_and_resumes_exactly(name, tmp_path, monkeypatch):
    from vitbench.training.config import load_config
    from vitbench.training.loop import train
    config = load_config(name, cli={"arch": "vit_tiny_patch16_224", "epochs": 2, "warmup_epochs": 0,
                                    "eps_warmup_epochs": 1, "arch_args": dict(TINY_VIT_ARGS, depth=1)},
                         sets=["val_examples=20", "recipe_args.synth_batch_size=64"] if name == "nullspace"
                         else ["val_examples=20"])
    full = train(config, out=tmp_path / "full", device="cpu")
    resumed = train_interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    a, b = load_file(str(full.weights)), load_file(str(resumed.weights))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert math.isfinite(full.epochs[-1]["loss"])


def _declared_logits(entry) -> tuple[int, ...]:
    """The output shape of the entry's network on a (2, 3, S, S) input, built on the meta device (no memory,
    no weights): the architecture, its arguments and adapter give the declared number of logits."""
    from vitbench.zoo.archs import build_network
    with torch.device("meta"):
        net = build_network(entry.arch, num_classes=entry.num_classes, arch_args=entry.arch_args,
                            adapter=entry.adapter)
        size = entry.preprocessing.input_size
        return tuple(net(torch.zeros(2, 3, size, size)).shape)


@pytest.mark.parametrize("name", load_zoo().names())
def test_every_bundled_zoo_entry_gives_its_declared_logits(name):
    entry = load_zoo().get(name)
    if entry.weights.source.startswith("bundled:"):
        model = vitbench.load_model(entry, device="cpu")
        size = entry.preprocessing.input_size
        with torch.no_grad():
            out = model(torch.rand(2, 3, size, size))
        assert out.shape == (2, entry.num_classes) and torch.isfinite(out).all()
    else:  # published weights download on first use (not here): the architecture must give the logits
        assert _declared_logits(entry) == (2, entry.num_classes)
