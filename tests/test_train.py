"""The trainer: schedules, configs, exact resume, recipe behaviour, registration of the result."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import train_interrupted_then_resumed
from vitbench.errors import ConfigError
from vitbench.train.config import load_config
from vitbench.train.loop import train
from vitbench.train.optim import eps_at, lr_at, param_groups

TINY = {"arch": "vit_tiny_patch16_224", "epochs": 2, "batch_size": 64,
        "arch_args": {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}}


def test_eps_warmup_by_epoch():
    assert [round(eps_at(e, eps=0.1, warmup_epochs=10), 6) for e in (0, 1, 5, 10, 20)] == [0.0, 0.01, 0.05, 0.1, 0.1]


def test_lr_schedule_warmup_cosine_cooldown():
    kw = dict(steps_per_epoch=10, epochs=12, lr=1e-3, min_lr=1e-5, warmup_epochs=2, warmup_lr=1e-6, cooldown_epochs=2)
    assert lr_at(0, **kw) == pytest.approx(1e-6)
    assert lr_at(20, **kw) == pytest.approx(1e-3)
    assert lr_at(60, **kw) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert lr_at(100, **kw) == pytest.approx(1e-5) and lr_at(119, **kw) == pytest.approx(1e-5)


def test_one_dimensional_parameters_are_exempt_from_decay():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(net, 0.5)
    assert decay["weight_decay"] == 0.5 and [p.ndim for p in decay["params"]] == [2]
    assert no_decay["weight_decay"] == 0.0 and sorted(p.ndim for p in no_decay["params"]) == [1, 1, 1]


def test_config_layers_and_unknown_keys(tmp_path):
    cfg = load_config("light-recipe", cli={"epochs": 3}, sets=["attack_eps=4/255", "weight_decay=0.1"])
    assert cfg.epochs == 3 and cfg.attack_eps == pytest.approx(4 / 255) and cfg.weight_decay == 0.1
    assert cfg.label_smoothing == 0.1 and cfg.attack_alpha_factor == 1.5  # recipe defaults
    with pytest.raises(ConfigError, match="unknown key 'wieght_decay'"):
        load_config("light-recipe", sets=["wieght_decay=0.1"])


def _config(recipe="standard", **kw):
    return load_config(recipe, cli=dict(TINY, warmup_epochs=0, **kw), sets=["val_examples=50"])


def test_resume_after_interruption_is_exact(tmp_path, monkeypatch):
    config = _config("light-recipe", epochs=3, eps_warmup_epochs=1)
    full = train(config, out=tmp_path / "full", device="cpu")
    resumed = train_interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    a, b = load_file(str(full.weights)), load_file(str(resumed.weights))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    log = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]


def test_resume_with_another_config_is_refused(tmp_path):
    train(_config(epochs=1), out=tmp_path / "r", device="cpu")
    with pytest.raises(ConfigError, match="written by another config.*epochs"):
        train(_config(epochs=2), out=tmp_path / "r", device="cpu", resume=True)


def test_light_recipe_logs_eps_warmup_and_adversarial_accuracy(tmp_path):
    result = train(_config("light-recipe", epochs=3, eps_warmup_epochs=2, attack_eps=0.1), out=tmp_path / "l",
                   device="cpu")
    assert [round(r["eps"], 6) for r in result.epochs] == [0.0, 0.05, 0.1]
    assert all("val_pgd10" in r and "val_clean" in r for r in result.epochs)


def test_train_cli_registers_entry_with_recipe(cli, tmp_path):
    args = ["train", "light-recipe", "--arch", "vit_tiny_patch16_224", "--epochs", "1", "--eps", "0.05",
            "--out", tmp_path / "run", "--register", "t.light", "--set", "val_examples=20", "--set", "warmup_epochs=0"]
    for kv in ("img_size=32", "patch_size=8", "depth=1", "embed_dim=32", "num_heads=2"):
        args += ["--arch-arg", kv]
    res = cli(*args)
    assert res.code == 0, res
    show = cli("zoo", "show", "t.light")
    assert "recipe: light-recipe" in show.out and "attack_eps: 0.05" in show.out
    assert "threat_model: {norm: linf, eps: 0.05}" in show.out or "eps: 0.05" in show.out
    again = cli(*args)
    assert again.code == 2 and "already holds a training run" in again.err
