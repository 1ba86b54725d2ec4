"""The Python API as a notebook uses it: load_model, wrap, evaluate, Report."""

import json

import pytest
import timm
import torch

import vitbench
from vitbench.errors import ConfigError, NotFoundError

PREP = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "input_size": 32}


def _net(seed=0):
    torch.manual_seed(seed)
    return timm.create_model("test_resnet", num_classes=10)


def test_a_wrapped_module_is_evaluated_cached_and_re_identified_after_training(tmp_path):
    store = tmp_path / "s.sqlite"
    net = _net()
    model = vitbench.wrap(net, **PREP, dataset="digits", name="my-net")
    assert model.num_classes == 10 and model.entry.weights.sha256
    first = vitbench.evaluate(model, "digits", suites=["clean"], n_examples=30, store=store, device="cpu")
    assert not first["clean"].cached and first["clean"].model == "my-net"
    again = vitbench.evaluate(model, "digits", suites="clean", n_examples=30, store=store, device="cpu")
    assert again["clean"].cached and again["clean"].metrics == first["clean"].metrics
    with torch.no_grad():  # "train" the network further: new weights, a new model version
        next(net.parameters()).add_(1.0)
    changed = vitbench.evaluate(model, "digits", suites="clean", n_examples=30, store=store, device="cpu")
    assert not changed["clean"].cached and changed["clean"].eval_key != first["clean"].eval_key


def test_load_model_and_zoo_name_give_the_cli_numbers(cli, tmp_path):
    bench = cli("bench", "digits-vit.light", "--data", "digits", "--suite", "clean", "--n-examples", "40", "--json")
    assert bench.code == 0, bench
    by_name = vitbench.evaluate("digits-vit.light", "digits", suites="clean", n_examples=40)
    loaded = vitbench.load_model("digits-vit.light", device="cpu")
    assert loaded.entry.name == "digits-vit.light"
    by_object = vitbench.evaluate(loaded, "digits", suites="clean", n_examples=40)
    cli_json = json.loads(bench.out)
    assert by_name.to_json()[0]["metrics"] == cli_json[0]["metrics"] == by_object.to_json()[0]["metrics"]
    assert by_name["clean"].cached and by_object["clean"].cached  # the same weights, the same evaluation
    assert set(by_name.to_json()[0]) == set(cli_json[0])  # bench --json prints exactly Report.to_json()


def test_report_samples_are_a_typed_dataset():
    report = vitbench.evaluate("digits-resnet.light", "digits", suites=["clean"], n_examples=25)
    samples = report.samples("clean")
    assert samples.num_rows == 25 and samples.column_names[:2] == ["index", "sample_id"]
    assert samples.features["correct"].dtype == "bool" and samples.features["pred"].dtype == "int64"
    assert samples.features["confidence"].dtype == "float64"
    assert sum(samples["correct"]) / 25 == pytest.approx(report["clean"].metrics["accuracy"])
    assert report["clean"].provenance["versions"]["vitbench"] == vitbench.__version__


def test_report_indexing_names_what_exists():
    report = vitbench.evaluate("digits-resnet.light", "digits", suites="clean", n_examples=5)
    with pytest.raises(KeyError, match="suites: clean"):
        report["autoattack"]


def test_bad_input_raises_the_cli_errors():
    with pytest.raises(NotFoundError, match="did you mean 'digits-vit.light'"):
        vitbench.evaluate("digits-vit.lite", "digits", suites="clean")
    with pytest.raises(NotFoundError, match="unknown suite"):
        vitbench.evaluate("digits-vit.light", "digits", suites="clen")
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        vitbench.wrap("not a module", **PREP)
    with pytest.raises(ConfigError, match="interpolation"):
        vitbench.wrap(_net(), **PREP, interpolation="lanczos")


def test_train_returns_an_entry_that_evaluates_and_registers(tmp_path):
    """vitbench.train with the default architecture (a ViT timm builds for 224 px) trains at the digits' 32 px."""
    entry = vitbench.train("standard", epochs=2, warmup_epochs=0, val_examples=20, out=tmp_path / "run")
    assert entry.arch_args["img_size"] == 32 and entry.preprocessing.input_size == 32
    report = vitbench.evaluate(entry, "digits", suites="clean", n_examples=20)
    assert 0 <= report["clean"].metrics["accuracy"] <= 1
    registered = vitbench.train("standard", epochs=2, warmup_epochs=0, val_examples=20, out=tmp_path / "run2",
                                register="mine.trained", zoo=tmp_path / "zoo.yaml")
    assert registered.name == "mine.trained" and registered.weights.sha256
    loaded = vitbench.load_model("mine.trained", zoo=tmp_path / "zoo.yaml")
    assert loaded.entry.weights.sha256 == registered.weights.sha256


def test_train_refuses_an_architecture_that_cannot_take_the_input(tmp_path):
    with pytest.raises(ConfigError, match="cannot take 32 px inputs"):
        vitbench.train("standard", arch="vit_tiny_patch16_224", arch_args={"img_size": 64}, epochs=2,
                       warmup_epochs=0, out=tmp_path / "bad")


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_export_samples_writes_the_stored_records(cli, tmp_path, suffix):
    import datasets
    assert cli("bench", "digits-resnet.light", "--data", "digits", "--suite", "clean", "--n-examples", "12",
               "--chunk-size", "5").code == 0
    out = tmp_path / f"samples{suffix}"
    res = cli("export", "--samples", "digits-resnet.light", "--suite", "clean", "--out", out)
    assert res.code == 0, res
    table = (datasets.Dataset.from_parquet(str(out)) if suffix == ".parquet"
             else datasets.Dataset.from_json(str(out)))
    assert table.num_rows == 12 and table["index"] == list(range(12))
    report = vitbench.evaluate("digits-resnet.light", "digits", suites="clean", n_examples=12, chunk_size=5)
    assert table["correct"] == report.samples("clean")["correct"]
    bad = cli("export", "--samples", "digits-resnet.light", "--suite", "autoattack", "--out", out)
    assert bad.code == 2 and "no stored autoattack run" in bad.err


def test_evaluate_until_ci_reports_a_sequential_run(isolated_home):
    report = vitbench.evaluate("digits-vit.light", "digits", suites="clean", chunk_size=50, until_ci=4, device="cpu")
    clean = report["clean"]
    assert clean.flags == ["sequential"] and clean.sequential["looks"] == 10
    assert clean.n_examples == clean.sequential["n"] < 500 and clean.sequential["target_half_width"] == 4
    with pytest.raises(ConfigError, match="until_ci"):
        vitbench.evaluate("digits-vit.light", "digits", suites="clean", until_ci=0)
