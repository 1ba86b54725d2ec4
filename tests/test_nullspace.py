"""Nullspace: the exact patch-embedding nullspace analysis and approximate-nullspace-noise fine-tuning."""

import json
import math

import pytest
import timm
import torch

from vitbench.training.config import load_config
from vitbench.training.loop import train
from vitbench.training.nullspace_analysis import analyze, exact_nullspace, tile_patches
from vitbench.training.recipes.nullspace import TokenNoise, nullspace_args, synthesize_delta
from vitbench.zoo.wrapper import RobustModel


def _vit(patch: int, dim: int, seed: int = 0) -> RobustModel:
    torch.manual_seed(seed)
    net = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=patch, depth=1,
                            embed_dim=dim, num_heads=2)
    return RobustModel(net, mean=(0.5,) * 3, std=(0.5,) * 3, name="tiny", num_classes=10, input_size=32).eval()


@pytest.mark.parametrize("patch,dim", [(8, 32), (4, 32), (4, 64), (8, 256)])
def test_nullspace_dimension_is_the_generic_bound(patch, dim):
    space = exact_nullspace(_vit(patch, dim).net.patch_embed.proj.weight)
    assert space.dimension == space.lower_bound == max(0, 3 * patch * patch - dim)
    w = _vit(patch, dim).net.patch_embed.proj.weight.detach().double().flatten(1)       # (D, 3P^2)
    basis = space.basis.flatten(1)                                                        # (K, 3P^2)
    assert torch.allclose(basis @ basis.T, torch.eye(len(basis), dtype=basis.dtype), atol=1e-10)
    assert len(basis) == 0 or (w @ basis.T).abs().max() < 1e-5


@pytest.mark.parametrize("seed", range(8))
def test_a_square_random_embedding_has_no_nullspace(seed):
    """768 x 768 (ViT-B/16's shape, torch's default conv init): full rank; with float32's eps in the tolerance
    seeds 2 and 5 (smallest singular value 9e-7 and 9e-5 of the largest) counted a dimension of 1."""
    torch.manual_seed(seed)
    space = exact_nullspace(torch.nn.Conv2d(3, 768, 16, stride=16).weight)
    assert space.dimension == 0 and space.lower_bound == 0
    assert space.tolerance == pytest.approx(float(space.singular_values.max()) * 2.220446049250313e-16 * 768)


def test_a_rank_deficient_embedding_has_a_larger_nullspace():
    model = _vit(4, 64)
    with torch.no_grad():
        model.net.patch_embed.proj.weight[32:] = model.net.patch_embed.proj.weight[:32]   # rank 32 < 48
    space = exact_nullspace(model.net.patch_embed.proj.weight)
    assert space.lower_bound == 0 and space.dimension == 48 - 32


def test_basis_vectors_leave_logits_unchanged_random_directions_do_not():
    model = _vit(8, 32)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    space, inv = analyze(model, x, scale=3.0, n_vectors=8)
    assert space.dimension == 160 and len(inv.basis_change) == 8
    assert inv.basis_change.max() < 1e-5
    assert inv.random_change.min() > 1e-3


def test_tiled_vector_repeats_in_every_patch():
    v = torch.arange(12.0).view(1, 3, 2, 2)
    tiled = tile_patches(v, 4, 6)                                                         # (1, 3, 4, 6)
    assert tiled.shape == (1, 3, 4, 6) and torch.equal(tiled[0, :, 2:4, 4:6], v[0])


def test_token_noise_is_added_only_inside_the_context_and_only_to_chosen_rows():
    model = _vit(8, 32)
    noise = TokenNoise(model.net.patch_embed, (1, 16, 32))
    x = torch.rand(4, 3, 32, 32)
    delta = torch.randn(1, 16, 32)
    clean = model.net.patch_embed(x)
    with noise.adding(delta, start=2):
        mixed = model.net.patch_embed(x)
    assert torch.equal(mixed[:2], clean[:2]) and torch.allclose(mixed[2:], clean[2:] + delta)
    assert torch.equal(model.net.patch_embed(x), clean)


def _args(**kw):
    config = load_config("nullspace", sets=[f"recipe_args.{k}={v}" for k, v in kw.items()])
    return nullspace_args(config)


def _gap(model, noise, x, delta) -> float:
    with torch.no_grad():
        clean = model(x).softmax(1)
        with noise.adding(delta):
            noisy = model(x).softmax(1)
    return float((noisy - clean).pow(2).sum(1).mean())


def test_delta_synthesis_reduces_the_logit_distance_and_stops_early():
    model = _vit(8, 32)
    noise = TokenNoise(model.net.patch_embed, (1, 16, 32))
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    full = synthesize_delta(model, noise, [x], _args(tau=1e-9, rounds=40), generator=torch.Generator().manual_seed(0))
    assert full.steps == 40 and not full.stopped_early
    assert full.final_distance < 0.5 * full.initial_distance
    init = (torch.rand((1, 16, 32), generator=torch.Generator().manual_seed(0)) * 2 - 1) * 3.0   # the same init
    tau = (_gap(model, noise, x, init) * full.final_gap) ** 0.5                      # reached halfway, roughly
    early = synthesize_delta(model, noise, [x], _args(tau=tau, rounds=40), generator=torch.Generator().manual_seed(0))
    assert early.stopped_early and 0 < early.steps < 40 and early.final_gap < tau
    assert model.training is False  # the model's mode is restored


def test_nullspace_recipe_fine_tunes_with_a_fresh_delta_each_epoch(tmp_path):
    config = load_config("nullspace", cli={"epochs": 2, "arch": "vit_tiny_patch16_224", "arch_args": {
        "img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}},
        sets=["val_examples=20", "lr=1e-3", "recipe_args.synth_batch_size=64", "recipe_args.tau=1e-9"])
    result = train(config, out=tmp_path / "n", device="cpu")
    log = [json.loads(line) for line in (tmp_path / "n" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1]
    # 10% of the 1167 training images (1297 less the 130 held out) in batches of 64: 3 rounds x 2 batches
    assert all(r["delta_steps"] == 6 and r["delta_dist"] < r["delta_dist_init"] for r in log)
    assert log[0]["delta_rms"] != log[1]["delta_rms"]
    # the authors' cosine period is 3 passes over the whole set (3 x 19 batches): lr stays near 0.1
    last = 0.05 * (1 + math.cos(math.pi * 5 / 57))                                   # step 5 of a 57-step period
    assert last > 0.098 and all(r["delta_lr"] == pytest.approx(last) for r in log)
    assert all("holdout_clean" in r and "holdout_pgd10" not in r for r in log)
    assert result.selection["metric"] == "holdout_clean" and result.selection["rule"].startswith("best held-out clean")
    saved = torch.load(tmp_path / "n" / "last.pt", weights_only=True)
    assert saved["recipe"]["state_dicts"]["noise"]["delta"].shape == (1, 16, 32)
    assert result.weights.exists()


def test_analyze_cli_reports_dimension_bound_and_logit_change(cli, tiny_zoo):
    res = cli("analyze", "nullspace", "tiny-vit.test", "--zoo", tiny_zoo, "--json", "--vectors", "4")
    assert res.code == 0, res
    report = json.loads(res.out)
    assert report["dimension"] == report["lower_bound"] == 3 * 8 * 8 - 32
    assert report["max_logit_change"] < 1e-5 < report["random_min_logit_change"]
    table = cli("analyze", "nullspace", "tiny-vit.test", "--zoo", tiny_zoo)
    assert "nullspace dimension" in table.out and "| 160" in table.out


def test_nullspace_on_a_cnn_is_one_error_line(cli, tmp_path):
    res = cli("train", "nullspace", "--arch", "test_resnet", "--epochs", "1", "--out", tmp_path / "cnn")
    assert res.code == 2 and res.err.count("\n") == 1
    assert "needs a ViT with a patch embedding" in res.err and "test_resnet" in res.err


def test_analyze_cli_on_a_cnn_is_one_error_line(cli, tmp_path):
    from safetensors.torch import save_file
    net = timm.create_model("test_resnet", num_classes=10)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "cnn.safetensors"))
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(f"""version: 1
models:
  tiny-cnn.test:
    arch: test_resnet
    weights: {{source: {tmp_path / 'cnn.safetensors'}}}
    num_classes: 10
    dataset: digits
    preprocessing: {{input_size: 32, interpolation: bilinear, crop_pct: 1.0,
                     mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}}
""")
    res = cli("analyze", "nullspace", "tiny-cnn.test", "--zoo", zoo)
    assert res.code == 2 and res.err.count("\n") == 1
    assert "'tiny-cnn.test'" in res.err and "no linear patch embedding" in res.err


def test_nullspace_loss_is_clean_ce_plus_ce_under_the_token_noise():
    """The training loss adds the cross-entropy of the model with delta added to its patch tokens."""
    import torch.nn.functional as F

    from vitbench.training.recipes import get_recipe
    config = load_config("nullspace", sets=["warmup_epochs=0"])
    recipe, model = get_recipe("nullspace"), _vit(8, 32)
    state = recipe.setup(model, config, torch.device("cpu"))
    state["noise"].delta.copy_(torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0)))
    x, y = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 10
    out = recipe.loss(model, x, y, 0, config, state)
    smoothing = config.label_smoothing
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, label_smoothing=smoothing)
        with state["noise"].adding(state["noise"].delta):
            noisy = F.cross_entropy(model(x), y, label_smoothing=smoothing)
    assert abs(float(noisy - clean)) > 1e-3              # the noise changes the loss, so the check can fail
    assert torch.allclose(out.loss, clean + noisy, atol=1e-5)


def test_nullspace_resumes_exactly_with_its_per_step_schedule_and_selection(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from conftest import train_interrupted_then_resumed
    config = load_config("nullspace", cli={"epochs": 2, "arch": "vit_tiny_patch16_224", "arch_args": {
        "img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}},
        sets=["val_examples=20", "lr=1e-3", "recipe_args.synth_batch_size=64"])
    full = train(config, out=tmp_path / "full", device="cpu")
    resumed = train_interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    a, b = load_file(str(full.weights)), load_file(str(resumed.weights))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a) and full.selection == resumed.selection
    assert [r["lr"] for r in full.epochs] == pytest.approx([r["lr"] for r in resumed.epochs])
