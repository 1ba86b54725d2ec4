"""TRADES fine-tuning: the KL attack, the outer loss, its config and a CLI run from a zoo entry."""

import json

import pytest
import timm
import torch
import torch.nn.functional as F

from conftest import TINY_VIT_ARGS
from vitbench.errors import ConfigError
from vitbench.training.config import load_config
from vitbench.training.data import augmentation
from vitbench.training.recipes import get_recipe
from vitbench.training.recipes import trades as trades_mod
from vitbench.training.recipes.trades import kl_clean_adv, trades_attack
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
    assert (config.select_by, config.holdout_fraction) == ("robust", 0.1)


def test_paper_config_has_the_authors_fine_tuning_values():
    from vitbench.training.optim import scaled_lr
    config = load_config("trades", config_file="trades-paper")                       # xcit-adv-finetuning.yaml
    assert scaled_lr(config, world=1) == pytest.approx(2e-4 * (128 / 512) ** 0.5)     # lr_base 2e-4 per 512, sqrt
    assert scaled_lr(config, world=4) == pytest.approx(2e-4)
    assert (config.min_lr, config.warmup_lr, config.warmup_epochs) == (5e-6, 1e-6, 5)
    assert (config.epochs, config.cooldown_epochs) == (22, 2)                          # timm: 20 + 2 cool-down
    assert (config.drop_path, config.rotation, config.hflip, config.crop_padding) == (0.05, 2.0, 0.5, 4)
    assert config.attack_eps == pytest.approx(8 / 255) and config.eps_warmup_epochs == 0
    assert (config.arch, config.adapter, config.select_by) == ("xcit_small_12_p16_224", "xcit-patch4", "robust")
    with pytest.raises(ConfigError, match="nor is it a bundled config.*trades-paper"):
        load_config("trades", config_file="trades-papr")


def test_rotation_turns_the_image():
    config = load_config("trades", sets=["rotation=30", "crop_padding=0", "rrc_scale=[1.0,1.0]", "color_jitter=0"])
    img = torch.zeros(3, 32, 32, dtype=torch.uint8)
    img[:, 12:20, :] = 255                                                            # a horizontal bar
    torch.manual_seed(0)
    outs = torch.stack([augmentation(config)(img) for _ in range(20)])
    assert (outs != img.float() / 255).any((1, 2, 3)).float().mean() > 0.8


def _bn_model():
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", num_classes=10)
    return RobustModel(net, mean=(0.5,) * 3, std=(0.5,) * 3, name="cnn", num_classes=10, input_size=32)


def test_batch_norm_models_take_clean_and_adversarial_batches_as_two_forwards(monkeypatch):
    import copy
    config = load_config("trades", cli={"epochs": 1}, sets=["warmup_epochs=0"])
    recipe, model = get_recipe("trades"), _bn_model().train()
    reference = copy.deepcopy(model)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    x_adv = (x + 0.05).clamp(0, 1)
    monkeypatch.setattr(trades_mod, "trades_attack", lambda *a, **k: x_adv)
    out = recipe.loss(model, x, y, 0, config, recipe.setup(model, config, torch.device("cpu")))
    clean, adv = reference(x), reference(x_adv)                                       # the authors' two forwards
    expected = F.cross_entropy(clean, y) + 6.0 * kl_clean_adv(clean, adv)
    assert torch.allclose(out.loss, expected, atol=1e-5)
    joint = copy.deepcopy(model)
    both = joint(torch.cat([x, x_adv]))                                                # one 2B batch differs
    assert (both[:8] - clean).abs().max() > 1e-3
    stats = [k for k in model.state_dict() if "running_mean" in k]
    assert stats and all(torch.allclose(model.state_dict()[k], reference.state_dict()[k]) for k in stats)


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


def test_randaugment_is_timms_at_magnitude_nine_of_ten():
    from timm.data.auto_augment import RandAugment

    from vitbench.training.data import randaugment
    config = load_config("canonical-recipe")                                          # rand-m9-mstd0.5-inc1
    op = randaugment(config)
    assert isinstance(op, RandAugment) and op.num_layers == 2
    assert {o.magnitude for o in op.ops} == {9} and {o.magnitude_std for o in op.ops} == {0.5}
    assert {"PosterizeIncreasing", "SolarizeIncreasing"} <= {o.name for o in op.ops}   # inc1
    rotate = next(o for o in op.ops if o.name == "Rotate")
    shear = next(o for o in op.ops if o.name == "ShearX")
    assert abs(rotate.level_fn(9, rotate.hparams)[0]) == pytest.approx(27.0)           # 9/10 of 30 degrees
    assert abs(shear.level_fn(9, shear.hparams)[0]) == pytest.approx(0.27)             # 9/10 of 0.3
    assert augmentation(config)(torch.zeros(3, 32, 32, dtype=torch.uint8)).shape == (3, 32, 32)


def test_randaugment_turns_colour_jitter_off_as_timm_does():
    names = [type(t).__name__ for t in augmentation(load_config("canonical-recipe")).transforms]
    assert "ColorJitter" not in names and "ColorJitter" in [
        type(t).__name__ for t in augmentation(load_config("light-recipe")).transforms]


def test_posterize_at_zero_bits_is_black_not_an_error():
    from PIL import Image

    from vitbench.training.data import randaugment
    op = next(o for o in randaugment(load_config("canonical-recipe")).ops if o.name == "PosterizeIncreasing")
    img = Image.new("RGB", (8, 8), (200, 100, 50))
    assert op.level_fn(10, op.hparams) == (0,) and op.aug_fn(img, 0).getextrema() == ((0, 0),) * 3


def test_random_erasing_fills_per_pixel_noise_in_range():
    import random

    from vitbench.training.data import PixelErasing
    random.seed(0)
    torch.manual_seed(0)
    erase = PixelErasing(1.0)
    outs = [erase(torch.full((3, 32, 32), 0.2)) for _ in range(20)]
    changed = [o[(o - 0.2).abs() > 1e-6] for o in outs]
    assert all(0.02 * 3 * 1024 * 0.9 <= len(c) <= 3 * 1024 / 3 * 1.1 for c in changed)   # timm's area 2-33%
    noise = torch.cat(changed)
    assert noise.min() >= 0 and noise.max() <= 1 and noise.mean() == pytest.approx(0.5, abs=0.02)
    assert noise.std() == pytest.approx(0.24, abs=0.03)                                # N(0.5, 0.25), clamped
