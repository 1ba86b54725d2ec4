"""Semantic perturbations: exact rescaling and quantisation, panel resolution and its errors (label set, input
size, unknown names, offline timm weights), and an engine run whose stored examples reproduce the panel's votes."""

import numpy as np
import pytest
import torch

from conftest import save_tiny_vit, tiny_zoo_text
from vitbench.board.plots import draw, from_png_base64
from vitbench.data import open_dataset
from vitbench.engine import Engine, Options, SuiteRun
from vitbench.errors import CheckpointError, ConfigError, NotFoundError, VitbenchError
from vitbench.store import open_store
from vitbench.suites import get_suite
from vitbench.suites.base import Chunk, Context
from vitbench.suites.semantic import DEFAULT_PANELS, SemanticConfig, panel_names, quantise_perturbation, to_png_base64
from vitbench.zoo.load import load_model
from vitbench.zoo.lookup import resolve_member, timm_entry
from vitbench.zoo.schema import load_zoo

SUITE = get_suite("semantic")




@pytest.fixture
def panel_zoo(tmp_path):
    """tiny-vit.test (evaluated), tiny-vit.panel (a digits panel model), and misfits for the error paths."""
    folder = tmp_path / "semzoo"
    folder.mkdir()
    save_tiny_vit(folder / "a.safetensors", seed=0)
    save_tiny_vit(folder / "b.safetensors", seed=1)
    text = tiny_zoo_text("a.safetensors")
    for name, old, new in (("tiny-vit.panel", "", ""), ("tiny-vit.cifar", "dataset: digits", "dataset: cifar10"),
                           ("tiny-vit.c100", "num_classes: 10", "num_classes: 100"),
                           ("tiny-vit.big", "input_size: 32", "input_size: 64")):
        block = tiny_zoo_text("b.safetensors", name=name).split("models:\n", 1)[1]
        text += block.replace(old, new) if old else block
    path = folder / "model_zoo.yaml"
    path.write_text(text)
    return load_zoo(path)


def test_rescaling_and_quantisation_are_exact():
    eps = 0.1
    delta = torch.tensor([-eps, -eps / 2, 0.0, eps / 2, eps, 1.2 * eps]).view(1, 6, 1, 1)
    q = quantise_perturbation(delta, eps)
    assert q.dtype == torch.uint8
    assert q.flatten().tolist() == [0, 64, 128, 191, 255, 255]   # round(255 * (d + eps) / (2 eps)), clamped
    eps = 4 / 255
    assert quantise_perturbation(torch.full((1, 3, 2, 2), -eps), eps).eq(0).all()
    assert quantise_perturbation(torch.full((1, 3, 2, 2), eps), eps).eq(255).all()


def test_png_round_trip():
    image = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    assert np.array_equal(from_png_base64(to_png_base64(image)), image.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("member, match", [("tiny-vit.cifar", "predicts cifar10 labels"),
                                           ("tiny-vit.c100", r"\(100 classes\)"),
                                           ("tiny-vit.big", "takes 64px inputs")])
def test_panel_that_does_not_fit_is_refused(panel_zoo, member, match):
    entry = panel_zoo.get("tiny-vit.test")
    with pytest.raises(VitbenchError, match=match) as err:
        SUITE.check_models(SemanticConfig(panel=(member,)), entry, [panel_zoo.get(member)])
    assert member in str(err.value) and "panel" in str(err.value)
    engine = Engine(open_store(), Options(n_examples=4, device="cpu"), zoo=panel_zoo)
    with pytest.raises(VitbenchError, match=match):  # the engine checks before anything runs
        engine.run(entry, open_dataset("digits"), SuiteRun("semantic", SemanticConfig(eps=0.1, panel=(member,))))


def test_panel_names_defaults_and_errors(panel_zoo):
    entry = panel_zoo.get("tiny-vit.test")
    assert panel_names(SemanticConfig(panel=("tiny-vit.panel", "tiny-vit.test")), entry) == ["tiny-vit.panel"]
    assert panel_names(SemanticConfig(panel=("tiny-vit.test",), exclude_self=False), entry) == ["tiny-vit.test"]
    with pytest.raises(ConfigError, match="only the model itself"):
        panel_names(SemanticConfig(panel=("tiny-vit.test",)), entry)
    assert panel_names(SemanticConfig(), entry) == list(DEFAULT_PANELS["digits"])
    digits_vit = load_zoo().get("digits-vit.standard")
    assert panel_names(SemanticConfig(), digits_vit) == ["digits-resnet.standard"]   # never judges itself
    with pytest.raises(ConfigError, match="no default panel for cifar10"):
        panel_names(SemanticConfig(), panel_zoo.get("tiny-vit.cifar"))
    with pytest.raises(NotFoundError, match="unknown model 'tiny-vit.pane'.*suite's config"):
        resolve_member("tiny-vit.pane", panel_zoo, entry)


def test_imagenet_panel_comes_from_timm_and_fails_clearly_offline(monkeypatch):
    members = [timm_entry(n) for n in DEFAULT_PANELS["imagenet"]]
    assert [m.arch for m in members] == ["convnext_xlarge", "beit_large_patch16_224", "swin_base_patch4_window7_224"]
    assert all(m.dataset == "imagenet" and m.num_classes == 1000 and m.preprocessing.input_size == 224
               and m.weights.source.startswith("timm:") for m in members)

    def offline(*args, **kwargs):
        raise CheckpointError("convnext_xlarge: cannot fetch timm weights (offline?)")
    monkeypatch.setattr("vitbench.engine.load_model", offline)
    engine = Engine(open_store(), Options(n_examples=2, device="cpu"))
    with pytest.raises(CheckpointError, match="cannot load convnext_xlarge.*a model the suite needs.*offline"):
        engine._load_member(members[0])


def test_engine_run_scores_the_stored_perturbations(panel_zoo, tmp_path):
    entry, panel = panel_zoo.get("tiny-vit.test"), panel_zoo.get("tiny-vit.panel")
    config = SemanticConfig(eps=0.1, steps=5, panel=("tiny-vit.panel",), examples=4)
    result = Engine(open_store(), Options(n_examples=10, chunk_size=10, device="cpu"), zoo=panel_zoo).run(
        entry, open_dataset("digits"), SuiteRun("semantic", config))
    records = open_store().records(result.eval_key, [(0, 10)])
    votes = [r["panel_pred"]["tiny-vit.panel"] == r["label"] for r in records]
    assert result.metrics["semantic_score"].value == result.metrics["semantic_score[tiny-vit.panel]"].value
    assert result.metrics["semantic_score"].value == pytest.approx(sum(votes) / 10)
    broken = [r for r in records if r["adv_pred"] != r["label"]]
    assert all(r["adv_correct"] == (r["adv_pred"] == r["label"]) for r in records) and broken
    assert result.metrics["adv_class_agreement"].value == pytest.approx(
        sum(r["panel_pred"]["tiny-vit.panel"] == r["adv_pred"] for r in broken) / len(broken))
    examples = [r for r in records if "perturbation_png" in r]
    assert len(examples) == 4
    p = torch.stack([torch.from_numpy(from_png_base64(r["perturbation_png"]).copy()) for r in examples])
    assert p.shape == (4, 32, 32, 3) and p.dtype == torch.uint8 and p.min() < 128 < p.max()
    with torch.no_grad():   # the panel model, with its own preprocessing, reproduces the stored votes
        again = load_model(panel).model(p.permute(0, 3, 1, 2).float() / 255).argmax(1).tolist()
    assert again == [r["panel_pred"]["tiny-vit.panel"] for r in examples]
    x, _ = open_dataset("digits").load(0, 4, entry.preprocessing)
    image = torch.from_numpy(from_png_base64(examples[0]["image_png"]).copy()).permute(2, 0, 1)
    assert torch.equal(image, (x[0] * 255).round().to(torch.uint8))
    cols = SUITE.columns(config, result.metrics)
    assert [(c.label, c.higher_is_better) for c in cols] == [("Semantic score by tiny-vit.panel Linf 0.1", True)]
    paths = draw(open_store().runs(), tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["semantic_examples_tiny-vit.test.png", "semantic_scores.png"]


def test_config_defaults_and_validation():
    config = SemanticConfig()
    assert (config.norm, config.eps, config.steps, config.alpha_factor) == ("linf", 4 / 255, 100, 1.5)
    with pytest.raises(ValueError, match="twice"):
        SemanticConfig(panel=("a", "a"))
    with pytest.raises(ValueError, match="eps"):
        SemanticConfig(eps=0.0)


def test_needs_its_panel():
    chunk = Chunk(0, 0, 2, torch.rand(2, 3, 32, 32), torch.tensor([1, 2]), 0, ["a", "b"])
    with pytest.raises(VitbenchError, match="judge panel"):
        SUITE.run(None, chunk, SemanticConfig(), Context(torch.device("cpu"), 8))


def test_retrained_panel_model_changes_the_evaluation_key(tmp_path):
    """The cache key holds the panel's weights, not only its names."""
    from conftest import save_tiny_vit, tiny_zoo_text
    from vitbench.data import open_dataset
    from vitbench.engine import Engine, Options, SuiteRun
    from vitbench.store import open_store
    from vitbench.suites.semantic import SemanticConfig
    from vitbench.zoo.schema import load_zoo
    folder = tmp_path / "pz"
    folder.mkdir()
    save_tiny_vit(folder / "a.safetensors", seed=0)
    save_tiny_vit(folder / "judge.safetensors", seed=1)
    zoo = folder / "model_zoo.yaml"
    zoo.write_text(tiny_zoo_text("a.safetensors") + tiny_zoo_text("judge.safetensors", name="judge.vit")
                   .split("models:\n", 1)[1])
    job = SuiteRun("semantic", SemanticConfig(eps=0.1, panel=("judge.vit",)))
    engine = Engine(open_store(), Options(n_examples=4, device="cpu"))
    entry, data = load_zoo(zoo).get("tiny-vit.test"), open_dataset("digits")
    before = engine.key(entry, data, job)[0]
    save_tiny_vit(folder / "judge.safetensors", seed=2)   # the judge is retrained
    assert engine.key(load_zoo(zoo).get("tiny-vit.test"), data, job)[0] != before


def test_the_site_draws_example_grids_from_the_store_it_is_built_from(panel_zoo, tmp_path):
    """A site built from a store other than the default one still finds the stored example images."""
    import vitbench
    from vitbench.store import Store
    entry = panel_zoo.get("tiny-vit.test")
    other = tmp_path / "other.sqlite"
    config = SemanticConfig(eps=0.1, steps=2, panel=("tiny-vit.panel",), examples=2)
    Engine(Store(other), Options(n_examples=4, chunk_size=4, device="cpu"), zoo=panel_zoo).run(
        entry, open_dataset("digits"), SuiteRun("semantic", config))
    site = vitbench.site(tmp_path / "site", store=str(other), zoo=panel_zoo)
    grids = {p.name for p in site.rglob("semantic_examples_*.png")}
    assert grids == {"semantic_examples_tiny-vit.test.png"}
    assert open_store().runs() == []  # nothing came from, or went to, the default store
