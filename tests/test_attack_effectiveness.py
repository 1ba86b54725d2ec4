"""Attack effectiveness: the loss-gap formula on hand-computed numbers, exact ratio-of-means aggregation, oracle
strength, seeding, subsampling, and epoch checkpoints as zoo entries (with their own sha256 checks)."""

import math
import statistics

import pytest
import torch

from conftest import save_tiny_vit, tiny_zoo_text
from vitbench.board.plots import plot_gap_vs_epoch, plot_gap_vs_k
from vitbench.data import open_dataset
from vitbench.engine import Engine, Options, SuiteRun
from vitbench.errors import CheckpointError, ConfigError
from vitbench.store import open_store
from vitbench.suites import get_suite
from vitbench.suites.attack_effectiveness import FLAG_WEAK_ORACLE, AttackEffectivenessConfig, loss_gap
from vitbench.suites.base import Chunk, Context
from vitbench.zoo.epochs import checkpoint_name, expand_checkpoints, split_checkpoint_name
from vitbench.zoo.load import load_model
from vitbench.zoo.schema import load_zoo
from vitbench.zoo.sources import sha256_file

SUITE = get_suite("attack_effectiveness")




def _config(**kw):
    return AttackEffectivenessConfig(**{"norm": "linf", "eps": 0.1, **kw})


def test_loss_gap_formula():
    assert loss_gap(2.0, 1.5) == pytest.approx(0.25)
    assert loss_gap(4.0, 5.0) == pytest.approx(0.25)   # absolute difference
    assert loss_gap(8.0, 8.0) == 0.0
    assert math.isnan(loss_gap(0.0, 1.0))


def test_aggregate_is_the_ratio_of_means_per_seed_then_mean_over_seeds():
    # seed 0: L_k = (1 + 3) / 2 = 2, L_o = (2 + 8) / 2 = 5 -> 0.6 (the mean of per-sample ratios would be 0.5625)
    # seed 1: L_k = (2 + 4) / 2 = 3, L_o = (2 + 4) / 2 = 3 -> 0.0
    records = [{"clean_correct": True, "clean_loss": 0.1, "loss": [[1.0, 2.0]], "robust": [[True, False]],
                "loss_oracle": [2.0, 2.0], "robust_oracle": [False, False]},
               {"clean_correct": False, "clean_loss": 0.3, "loss": [[3.0, 4.0]], "robust": [[False, False]],
                "loss_oracle": [8.0, 4.0], "robust_oracle": [False, True]}]
    config = _config(steps=(1,), seeds=2)
    m = SUITE.aggregate(records, config)
    assert m["loss_gap_k1"].value == pytest.approx(0.3)
    assert m["loss_gap_k1_std"].value == pytest.approx(statistics.stdev([0.6, 0.0]))
    assert m["oracle_loss"].value == pytest.approx(4.0) and m["loss_k1"].value == pytest.approx(2.5)
    assert m["pgd1_accuracy"].value == pytest.approx(0.25) and m["oracle_accuracy"].value == pytest.approx(0.25)
    assert m["n_evaluated"].value == 2 and m["clean_accuracy"].value == 0.5
    assert not m["loss_gap_k1"].higher_is_better
    assert [(c.label, c.higher_is_better) for c in SUITE.columns(config, m)] == [("Loss gap k=1 Linf 0.1", False)]
    assert SUITE.run_flags(records, config, m) == []
    first = SUITE.aggregate(records[:1], config)  # any n: seed 0 gap 0.5, seed 1 gap 0
    assert first["loss_gap_k1"].value == pytest.approx(0.25)


def test_a_pgd_k_stronger_than_the_oracle_is_flagged():
    records = [{"clean_correct": True, "clean_loss": 0.1, "loss": [[5.0]], "robust": [[False]],
                "loss_oracle": [4.0], "robust_oracle": [False]}]
    config = _config(steps=(1,), seeds=1)
    metrics = SUITE.aggregate(records, config)
    assert metrics["loss_gap_k1"].value == pytest.approx(0.25) and metrics["loss_gap_k1_std"].value == 0.0
    assert SUITE.run_flags(records, config, metrics) == [FLAG_WEAK_ORACLE]


def test_config_validation():
    config = AttackEffectivenessConfig(eps=0.1, steps=(5, 1, 5))
    assert config.norm == "linf" and config.steps == (1, 5)
    with pytest.raises(ValueError, match="needs eps"):
        AttackEffectivenessConfig()
    with pytest.raises(ValueError, match="must exceed the largest k"):
        _config(steps=(1, 10), oracle_steps=10)
    with pytest.raises(ValueError, match="seeds"):
        _config(seeds=0)


def _chunk(n=12, seed=3):
    data = open_dataset("digits")
    entry = load_zoo().get("digits-vit.standard")
    x, y = data.load(0, n, entry.preprocessing)
    return Chunk(0, 0, n, x, y, seed, [str(i) for i in range(n)]), load_model(entry).model


def test_oracle_loss_is_at_least_pgd_k_loss_and_seeds_differ():
    chunk, model = _chunk(8)
    assert torch.get_num_threads() == 1
    config = _config(steps=(1, 2), oracle_steps=20, seeds=2)
    out = SUITE.run(model, chunk, config, Context(torch.device("cpu"), 64))
    m = SUITE.aggregate(out.records, config)
    assert m["oracle_loss"].value >= m["loss_k2"].value >= m["loss_k1"].value > m["clean_loss"].value
    assert m["loss_gap_k1"].value > m["loss_gap_k2"].value >= 0
    r = out.records[0]
    assert len(r["loss"]) == 2 and len(r["loss"][0]) == 2 and len(r["loss_oracle"]) == 2
    assert r["loss_oracle"][0] != r["loss_oracle"][1]          # each seed its own random start
    again = SUITE.run(model, chunk, config, Context(torch.device("cpu"), 3))
    flat = lambda recs: ([v for r in recs for row in r["loss"] for v in row]  # noqa: E731
                         + [v for r in recs for v in r["loss_oracle"]])
    assert flat(again.records) == pytest.approx(flat(out.records), rel=1e-4)   # batch size does not matter


def _zoo_with_checkpoints(tmp_path, *, bad_sha: bool) -> object:
    folder = tmp_path / "ckzoo"
    folder.mkdir()
    save_tiny_vit(folder / "final.safetensors", seed=0)
    save_tiny_vit(folder / "e1.safetensors", seed=1)
    save_tiny_vit(folder / "e3.safetensors", seed=3)
    sha1 = sha256_file(folder / "e1.safetensors")
    sha3 = "0" * 64 if bad_sha else sha256_file(folder / "e3.safetensors")
    extra = (f"    checkpoints:\n      - {{epoch: 3, source: e3.safetensors, sha256: '{sha3}'}}\n"
             f"      - {{epoch: 1, source: e1.safetensors, sha256: '{sha1}'}}\n")
    path = folder / "model_zoo.yaml"
    path.write_text(tiny_zoo_text("final.safetensors", extra=extra))
    return load_zoo(path).get("tiny-vit.test")


def test_expand_checkpoints_names_weights_and_sha256(tmp_path):
    entry = _zoo_with_checkpoints(tmp_path, bad_sha=True)
    derived = expand_checkpoints(entry)
    assert [d.name for d in derived] == ["tiny-vit.test+e1", "tiny-vit.test+e3"]
    assert [d.weights.source for d in derived] == ["e1.safetensors", "e3.safetensors"]
    assert all(d.checkpoints == () and d.arch_args == entry.arch_args and d.threat_model == entry.threat_model
               for d in derived)
    assert split_checkpoint_name(derived[1].name) == ("tiny-vit.test", 3) == split_checkpoint_name(
        checkpoint_name("tiny-vit.test", 3))
    assert split_checkpoint_name("tiny-vit.test") == ("tiny-vit.test", None)
    final, first = load_model(entry), load_model(derived[0])
    assert first.weights_sha256 == derived[0].weights.sha256 != final.weights_sha256
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(derived[1])
    with pytest.raises(ConfigError, match="lists no epoch checkpoints"):
        expand_checkpoints(derived[0])


def test_checkpoint_series_through_the_engine_and_plots(tmp_path):
    entry = _zoo_with_checkpoints(tmp_path, bad_sha=False)
    engine = Engine(open_store(), Options(n_examples=6, chunk_size=6, device="cpu"))
    job = SuiteRun("attack_effectiveness", _config(steps=(1, 2), oracle_steps=4, seeds=2))
    results = [engine.run(e, open_dataset("digits"), job) for e in expand_checkpoints(entry)]
    assert all("loss_gap_k2" in r.metrics for r in results)
    runs = open_store().runs()
    assert plot_gap_vs_epoch(runs, tmp_path / "epoch.png").stat().st_size > 0
    assert plot_gap_vs_k(runs, tmp_path / "k.png").stat().st_size > 0
    assert plot_gap_vs_epoch([r for r in runs if "+e" not in r.model][:0], tmp_path / "none.png") is None
