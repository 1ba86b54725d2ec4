"""The trainer: schedules, configs, exact resume, recipe behaviour, registration of the result."""

import json
import math

import pytest
import timm
import torch
from safetensors.torch import load_file

from conftest import TINY_VIT_ARGS, train_interrupted_then_resumed
from vitbench.errors import ConfigError
from vitbench.training.config import load_config
from vitbench.training.loop import train
from vitbench.training.optim import eps_at, make_optimizer, make_scheduler, scaled_lr

TINY = {"arch": "vit_tiny_patch16_224", "epochs": 2, "batch_size": 64,
        "arch_args": {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}}


def test_eps_warmup_by_epoch():
    assert [round(eps_at(e, eps=0.1, warmup_epochs=10), 6) for e in (0, 1, 5, 10, 20)] == [0.0, 0.01, 0.05, 0.1, 0.1]


def _schedule_config(**kw):
    return load_config("light-recipe", sets=[f"{k}={v}" for k, v in kw.items()])


def _epoch_lrs(config, steps_per_epoch: int = 5) -> list[float]:
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=config.lr)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    lrs = []
    for epoch in range(config.epochs):
        scheduler.step(epoch)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_lr_of_every_epoch_is_timms_cosine_with_the_authors_arguments():
    from timm.scheduler import CosineLRScheduler
    config = _schedule_config(epochs=14, warmup_epochs=3, cooldown_epochs=2, lr=1e-3, min_lr=1e-5, warmup_lr=1e-6)
    reference = CosineLRScheduler(torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3), t_initial=12,
                                  lr_min=1e-5, warmup_t=3, warmup_lr_init=1e-6, cycle_limit=1, t_in_epochs=True)
    lrs = _epoch_lrs(config)
    assert lrs == pytest.approx([reference._get_lr(e)[0] for e in range(14)], rel=1e-12)
    assert lrs[1] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 3)                          # linear warm-up
    cosine = [1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * e / 12)) for e in range(3, 12)]
    assert lrs[3:12] == pytest.approx(cosine) and lrs[3] < 1e-3                         # not restarted at epoch 3
    assert lrs[12:] == [1e-5, 1e-5]                                                     # cool-down at min lr


def test_lr_per_step_is_cosine_annealing_per_optimiser_step():
    config = load_config("nullspace", cli={"epochs": 3})                                # per step, to 0, no warm-up
    params = [torch.nn.Parameter(torch.zeros(2))]
    ours, theirs = torch.optim.AdamW(params, lr=1e-4), torch.optim.AdamW(params, lr=1e-4)
    scheduler = make_scheduler(ours, config, steps_per_epoch=7)
    torch_cosine = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=21)
    for step in range(21):
        scheduler.step(step // 7)
        scheduler.step_update(step)
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        theirs.step()
        torch_cosine.step()


def _groups(optimizer) -> dict[float, set[int]]:
    return {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}


def test_weight_decay_exempts_what_timms_optimiser_factory_exempts():
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT_ARGS)
    groups = _groups(make_optimizer(net, load_config("light-recipe"), lr=1e-3))
    names = {id(p): n for n, p in net.named_parameters()}
    exempt = {names[i] for i in groups[0.0]}
    assert {"pos_embed", "cls_token", "patch_embed.proj.bias", "norm.weight"} <= exempt
    assert {names[i] for i in groups[0.5]} == {n for n, p in net.named_parameters() if p.ndim > 1} - {
        "pos_embed", "cls_token"}
    reference = timm.optim.create_optimizer_v2(net, "adamw", lr=1e-3, weight_decay=0.5)
    assert groups == _groups(reference)


def test_decay_exempt_false_decays_every_parameter():
    net = timm.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT_ARGS)
    optimizer = make_optimizer(net, load_config("nullspace"), lr=1e-4)                  # NS-ViT's plain AdamW
    assert _groups(optimizer) == {1e-4: {id(p) for p in net.parameters()}}
    assert type(optimizer) is torch.optim.AdamW


@pytest.mark.parametrize("scale,world,expected", [("sqrt", 1, 1e-4), ("sqrt", 16, 4e-4), ("linear", 2, 1e-4)])
def test_lr_base_size_rescales_to_the_global_batch(scale, world, expected):
    config = _schedule_config(lr=2e-4, lr_base_size=512, lr_base_scale=scale, batch_size=128)
    assert scaled_lr(config, world) == pytest.approx(expected)
    assert scaled_lr(_schedule_config(lr=2e-4, batch_size=128), world) == 2e-4         # no base size: as given


def test_config_layers_and_unknown_keys(tmp_path):
    cfg = load_config("light-recipe", cli={"epochs": 3}, sets=["attack_eps=4/255", "weight_decay=0.1"])
    assert cfg.epochs == 3 and cfg.attack_eps == pytest.approx(4 / 255) and cfg.weight_decay == 0.1
    assert cfg.label_smoothing == 0.1 and cfg.attack_alpha_factor == 1.5  # recipe defaults
    with pytest.raises(ConfigError, match="unknown key 'wieght_decay'"):
        load_config("light-recipe", sets=["wieght_decay=0.1"])


def _config(recipe="standard", **kw):
    return load_config(recipe, cli=dict(TINY, warmup_epochs=0, **kw), sets=["val_examples=50"])


def _same(a, b) -> bool:
    a, b = load_file(str(a)), load_file(str(b))
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_after_interruption_is_exact(tmp_path, monkeypatch):
    config = _config("light-recipe", epochs=3, eps_warmup_epochs=1)                   # selects by held-out PGD-10
    full = train(config, out=tmp_path / "full", device="cpu")
    resumed = train_interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    assert _same(full.weights, resumed.weights) and full.selection == resumed.selection
    last = "epochs/epoch_003.safetensors"                                              # kept beside the chosen one
    assert _same(tmp_path / "full" / last, tmp_path / "cut" / last)
    log = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]


def test_timm_augmentation_resumes_exactly(tmp_path, monkeypatch):
    """RandAugment and random erasing draw from Python's and numpy's RNGs: re-seeded per epoch, a resume matches."""
    config = _config("canonical-recipe", epochs=2, eps_warmup_epochs=1, mixup=0.0, cutmix=0.0, random_erasing=1.0)
    full = train(config, out=tmp_path / "full", device="cpu")
    resumed = train_interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    assert _same(full.weights, resumed.weights)


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


def _scripted_holdout(monkeypatch, values):
    """Make the held-out metric follow ``values`` epoch by epoch (the model's real weights are still exported)."""
    from vitbench.training import loop
    real, calls = loop.accuracies, iter(values)

    def accuracies(model, batches, config, device, prefix):
        out = real(model, batches, config, device, prefix)
        if prefix == "holdout":
            out["holdout_pgd10"] = next(calls)
        return out
    monkeypatch.setattr(loop, "accuracies", accuracies)


def test_selection_exports_the_best_held_out_epoch_and_keeps_the_last(tmp_path, monkeypatch):
    _scripted_holdout(monkeypatch, [0.3, 0.6, 0.6, 0.5])                                # ties keep the earlier
    config = _config("light-recipe", epochs=4, eps_warmup_epochs=1, keep_epoch_checkpoints=True)
    result = train(config, out=tmp_path / "s", device="cpu")
    assert result.selection == {"rule": "best held-out PGD-10 accuracy at linf eps 0.1 (10% of the training set "
                                         "held out)", "metric": "holdout_pgd10", "epoch": 2, "value": 0.6,
                                "last_epoch": 4}
    kept = dict(result.epoch_weights)
    assert sorted(kept) == [1, 2, 3, 4] and result.exported_epoch == 2
    assert _same(result.weights, kept[2]) and not _same(result.weights, kept[4])
    assert all(r["holdout_clean"] >= 0 and "holdout_pgd10" in r for r in result.epochs)


def test_held_out_examples_are_never_trained_on():
    from vitbench.data import open_dataset
    from vitbench.training.data import make_loader, split_holdout
    train_idx, held = split_holdout(1297, 0.1, seed=0)
    assert (len(train_idx), len(held)) == (1167, 130) and not set(train_idx) & set(held)
    assert split_holdout(1297, 0.1, seed=0) == (train_idx, held) != split_holdout(1297, 0.1, seed=1)
    loader = make_loader(open_dataset("digits?split=train"), _config("light-recipe"), rank=0, world=1, workers=0,
                         indices=train_idx)
    assert sorted(loader.dataset.indices) == train_idx and len(loader) == 1167 // 64


def test_selected_epoch_is_recorded_in_the_zoo_entry(cli, tmp_path, monkeypatch):
    _scripted_holdout(monkeypatch, [0.7, 0.4])
    args = ["train", "light-recipe", "--epochs", "2", "--eps", "0.05", "--out", tmp_path / "run", "--register",
            "t.sel", "--weights-dir", tmp_path / "w", "--set", "val_examples=20", "--set", "warmup_epochs=0",
            "--arch", "vit_tiny_patch16_224"]
    for kv in ("img_size=32", "patch_size=8", "depth=1", "embed_dim=32", "num_heads=2"):
        args += ["--arch-arg", kv]
    res = cli(*args)
    assert res.code == 0, res
    assert "kept epoch 1 of 2" in res.err
    from vitbench.zoo.schema import load_zoo
    entry = load_zoo().get("t.sel")                                                    # ./model_zoo.yaml
    assert entry.provenance.selection["epoch"] == 1 and entry.provenance.selection["last_epoch"] == 2
    assert "weights of epoch 1 of 2" in entry.provenance.notes
    assert [c.epoch for c in entry.checkpoints] == [2]                                 # the last epoch, beside
    assert entry.checkpoints[0].source.endswith("t.sel.e002.safetensors")
    assert _same(entry.weights.source, tmp_path / "run" / "best.safetensors")


@pytest.mark.parametrize("sets,message", [
    (["select_by=robust", "attack_eps=0"], "select_by robust needs attack_eps > 0"),
    (["select_by=clean", "holdout_fraction=0"], "select_by clean needs a held-out split"),
    (["select_by=best"], "select_by 'best' must be one of last, clean, robust")])
def test_selection_config_errors_are_one_line(sets, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config("light-recipe", sets=sets)
    assert "\n" not in str(err.value)


def _counting_forwards(model):
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(m.training))
    return calls


def test_batch_norm_models_get_the_clean_running_statistics_forward():
    from vitbench.training.recipes import get_recipe
    from vitbench.zoo.wrapper import RobustModel
    config = load_config("light-recipe", sets=["eps_warmup_epochs=0"])
    recipe = get_recipe("light-recipe")
    torch.manual_seed(0)
    cnn = RobustModel(timm.create_model("test_resnet", num_classes=10), mean=(0.5,) * 3, std=(0.5,) * 3,
                      name="cnn", num_classes=10, input_size=32)
    reference = __import__("copy").deepcopy(cnn).train()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    calls = _counting_forwards(cnn.train())
    torch.manual_seed(1)
    out = recipe.loss(cnn, x, y, 0, config, recipe.setup(cnn, config, torch.device("cpu")))
    assert calls == [False, True, True]                    # attack (eval), clean (train), adversarial (train)
    torch.manual_seed(1)
    from vitbench.training.attack import training_attack
    x_adv = training_attack(reference, x, y, norm="linf", eps=0.1, steps=1, alpha=0.15, mode="eval")
    with torch.no_grad():
        reference(x)
    reference(x_adv)
    stats = [(k, v) for k, v in cnn.state_dict().items() if "running" in k]
    assert stats and all(torch.allclose(v, reference.state_dict()[k]) for k, v in stats)
    vit = _tiny_vit()
    calls = _counting_forwards(vit.train())
    recipe.loss(vit, x, y, 0, config, recipe.setup(vit, config, torch.device("cpu")))
    assert calls == [False, True] and out.logits.shape == (8, 10)                      # LayerNorm: no extra forward


def _tiny_vit():
    from vitbench.zoo.wrapper import RobustModel
    torch.manual_seed(0)
    return RobustModel(timm.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT_ARGS), mean=(0.5,) * 3,
                       std=(0.5,) * 3, name="vit", num_classes=10, input_size=32)


def test_attack_under_mixup_uses_the_argmax_label():
    from vitbench.training.attack import training_attack
    model, x = _tiny_vit().eval(), torch.rand(8, 3, 32, 32)
    soft = torch.nn.functional.one_hot(torch.arange(8) % 10, 10) * 0.6 + \
        torch.nn.functional.one_hot((torch.arange(8) + 3) % 10, 10) * 0.4                # MixUp-like targets
    runs = []
    for target in (soft, soft.argmax(1)):
        torch.manual_seed(2)
        runs.append(training_attack(model, x, target, norm="linf", eps=0.1, steps=3, alpha=0.05, mode="eval"))
    assert torch.equal(runs[0], runs[1])


def test_drop_path_applies_to_a_fine_tuned_init_entry(tiny_zoo):
    from vitbench.training.loop import build_model
    config = load_config("trades", cli={"init": "tiny-vit.test"}, sets=["drop_path=0.05"])
    model = build_model(config, 10, torch.device("cpu"), zoo=tiny_zoo)
    rates = [m.drop_prob for m in model.net.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.05)
    from vitbench.zoo.load import load_model
    from vitbench.zoo.schema import load_zoo
    base = load_model(load_zoo(tiny_zoo).get("tiny-vit.test")).model
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), model.state_dict().values(), strict=True))


def test_recipe_state_without_state_dict_survives_resume_or_is_refused():
    from vitbench.training.loop import _load_recipe_state, _recipe_state, check_recipe_state
    from vitbench.training.recipes.trades import trades_args
    kept = {"counter": 3, "ema": torch.tensor([0.5, 0.25]), "module": torch.nn.Linear(2, 2),
            "args": trades_args(_config("trades"))}           # a frozen dataclass: rebuilt from the config
    check_recipe_state("x", kept)
    saved = _recipe_state(kept)
    fresh = {"counter": 0, "ema": torch.zeros(2), "module": torch.nn.Linear(2, 2), "args": kept["args"]}
    _load_recipe_state(fresh, saved)
    assert fresh["counter"] == 3 and torch.equal(fresh["ema"], kept["ema"])
    assert torch.equal(fresh["module"].weight, kept["module"].weight)
    with pytest.raises(ConfigError, match="state 'cache' \\(object\\) .* lost on --resume"):
        check_recipe_state("x", {"cache": object()})
