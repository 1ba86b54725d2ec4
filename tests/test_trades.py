"""TRADES fine-tuning: the KL attack, the outer loss, its config and a CLI run from a zoo entry."""

import json

import pytest
import timm
import torch
import torch.nn.functional as F

from conftest import TINY_VIT_ARGS
from vitbench.errors import ConfigError
from vitbench.train.config import load_config
from vitbench.train.data import augmentation
from vitbench.train.recipes import get_recipe
from vitbench.train.recipes import trades as trades_mod
from vitbench.train.recipes.trades import kl_clean_adv, trades_attack
from vitbench.zoo.wrapper import RobustModel


def _vit(seed: int = 0) -> RobustModel:
    torch.manual_seed(seed)
    net = timm.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT_ARGS)
    return RobustModel(net, mean=(0.5,) * 3, std=(0.5,) * 3, name="tiny", num_classes=10, input_size=32)


def _kl(model, x, x_adv) -> float:
    with torch.no_grad():
        return float(kl_clean_adv(model(x), model(x_adv)))


def test_kl_attack_stays_in_the_ball_and_beats_its_random_start():
    model, eps = _vit().eval(), 0.1
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    start = trades_attack(model, x, eps=eps, steps=0, alpha=0.015, mode="eval")
    x_adv = trades_attack(model, x, eps=eps, steps=10, alpha=0.15 * eps, mode="eval")
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    torch.manual_seed(1)
    uniform = (x + (torch.rand_like(x) * 2 - 1) * eps).clamp(0, 1)                     # the attack's start
    assert torch.equal(start, x) and _kl(model, x, x_adv) > 3 * _kl(model, x, uniform) > 0


def test_outer_loss_is_ce_plus_beta_kl(monkeypatch):
    config = load_config("trades", cli={"epochs": 1}, sets=["warmup_epochs=0", "recipe_args.beta=2.5"])
    recipe, model = get_recipe("trades"), _vit().eval()
    state = recipe.setup(model, config, torch.device("cpu"))
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    x_adv = (x + 0.05).clamp(0, 1)
    monkeypatch.setattr(trades_mod, "trades_attack", lambda *a, **k: x_adv)
    out = recipe.loss(model, x, y, 0, config, state)
    with torch.no_grad():
        clean, adv = model(x), model(x_adv)
        p, log_q = clean.softmax(1), adv.log_softmax(1)
        expected = F.cross_entropy(clean, y) + 2.5 * (p * (p.log() - log_q)).sum(1).mean()
    assert torch.allclose(out.loss, expected, atol=1e-5) and torch.allclose(out.logits, adv, atol=1e-5)


def test_defaults_follow_the_paper():
    config = load_config("trades")
    alpha = config.attack_alpha_factor * config.attack_eps / config.attack_steps
    assert config.recipe_args == {"beta": 6.0} and config.attack_steps == 10
    assert alpha == pytest.approx(0.15 * config.attack_eps)                          # 1.2/255 at 8/255
    assert (config.weight_decay, config.warmup_epochs, config.epochs) == (0.5, 5, 20)
    assert (config.crop_padding, config.color_jitter) == (4, 0.25)


def test_random_crop_with_padding_shifts_the_image():
    config = load_config("trades")
    img = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    outs = [augmentation(config)(img) for _ in range(20)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert any((o == 0).all(0).any() for o in outs)                                   # zero padding came in


def test_recipe_args_are_validated():
    recipe, model = get_recipe("trades"), _vit()
    with pytest.raises(ConfigError, match="unknown key 'betta'.*did you mean 'beta'"):
        recipe.check(model, load_config("trades", sets=["recipe_args.betta=3"]))
    with pytest.raises(ConfigError, match="beta must be >= 0"):
        recipe.check(model, load_config("trades", sets=["recipe_args.beta=-1"]))


def test_trades_fine_tunes_a_zoo_entry_registers_and_benches_it(cli, tiny_zoo, tmp_path):
    preset = tmp_path / "clean.yaml"
    preset.write_text("description: clean accuracy only\nsuites:\n  - suite: clean\n")
    args = ["train", "trades", "--zoo", tiny_zoo, "--init", "tiny-vit.test", "--epochs", "1", "--out", tmp_path / "t",
            "--set", "warmup_epochs=0", "--set", "attack_steps=2", "--set", "val_examples=20",
            "--register", "tiny-vit.trades", "--bench", preset]
    res = cli(*args)
    assert res.code == 0, res
    assert "registered tiny-vit.trades" in res.out and "| tiny-vit.trades" in res.out           # the bench table
    board = cli("leaderboard", "--zoo", tiny_zoo, "--data", "digits", "--json")
    assert any(row.get("model") == "tiny-vit.trades" for row in json.loads(board.out)), board
    show = cli("zoo", "show", "tiny-vit.trades", "--zoo", tiny_zoo)
    assert "recipe: trades" in show.out and "beta: 6.0" in show.out and "init: tiny-vit.test" in show.out
    bad = cli("train", "trades", "--zoo", tiny_zoo, "--init", "tiny-vit.test", "--bench", "demo",
              "--out", tmp_path / "b")
    assert bad.code == 2 and "--register" in bad.err


def test_timm_style_randaugment_spec_parses():
    from vitbench.train.data import _randaugment
    op = _randaugment(load_config("canonical-recipe").randaugment)                    # rand-m9-mstd0.5-inc1
    assert (op.num_ops, op.magnitude) == (2, 9)
    assert augmentation(load_config("canonical-recipe"))(torch.zeros(3, 32, 32, dtype=torch.uint8)).shape == (3, 32, 32)
