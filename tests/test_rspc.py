"""RSPC: the patch corruption model, its straight-through mask, the min-max step and the recipe in the loop."""

import pytest
import timm
import torch
from safetensors.torch import load_file

from conftest import TINY_VIT_ARGS, train_interrupted_then_resumed
from vitbench.training.config import load_config
from vitbench.training.loop import train
from vitbench.training.recipes import get_recipe
from vitbench.training.recipes.rspc import PatchCorruptor, binarize, num_corrupted, uniform_noise
from vitbench.zoo.wrapper import RobustModel

TINY = {"arch": "vit_tiny_patch16_224", "arch_args": dict(TINY_VIT_ARGS)}


def _vit(seed: int = 0) -> RobustModel:
    torch.manual_seed(seed)
    net = timm.create_model(TINY["arch"], num_classes=10, **TINY["arch_args"])
    return RobustModel(net, mean=(0.5,) * 3, std=(0.5,) * 3, name="tiny", num_classes=10, input_size=32)


@pytest.mark.parametrize("n", [16, 64, 196])
@pytest.mark.parametrize("rho", [0.1, 0.25, 0.5])
def test_mask_corrupts_the_patches_at_or_below_the_rho_quantile(n, rho):
    scores = torch.randn(5, n, generator=torch.Generator().manual_seed(0))
    mask = binarize(scores, num_corrupted(n, rho))
    authors = (scores > torch.quantile(scores, rho, dim=1, keepdim=True)).float()      # their STE's forward
    assert torch.equal(mask, authors) and set(mask.unique().tolist()) <= {0.0, 1.0}


def test_quantile_rule_counts_seven_of_sixty_four():
    assert [num_corrupted(n, 0.1) for n in (16, 64, 196)] == [2, 7, 20]                 # floor(rho (N - 1)) + 1


def test_corruptor_masks_whole_patches():
    corruptor = PatchCorruptor(8, (4, 4))
    x = torch.rand(3, 3, 32, 32)
    keep = corruptor.to_pixels(corruptor(x, num_corrupted(16, 0.25)))                  # (3, 1, 32, 32)
    assert keep.shape == (3, 1, 32, 32) and ((keep == 0).flatten(1).sum(1) == 4 * 64).all()
    blocks = keep.unfold(2, 8, 8).unfold(3, 8, 8)                                      # (3, 1, 4, 4, 8, 8)
    assert (blocks.amin((-1, -2)) == blocks.amax((-1, -2))).all()


def test_ste_gradient_is_the_clipped_upstream_gradient():
    scores = torch.randn(4, 16, requires_grad=True)
    upstream = 3 * torch.randn(4, 16)
    binarize(scores, 3).backward(upstream)
    assert (upstream.abs() > 1).any() and torch.equal(scores.grad, upstream.clamp(-1, 1))


def test_noise_follows_the_authors_normalised_draw():
    x = torch.zeros(2, 3, 64, 64)
    mean, std = torch.tensor([0.5, 0.2, 0.9]).view(1, 3, 1, 1), torch.tensor([0.5, 0.1, 0.5]).view(1, 3, 1, 1)
    u = uniform_noise(x, mean, std, "normalised")                                      # clamp(mean + std U[0, 1))
    assert u[:, 0].min() >= 0.5 and u[:, 0].max() < 1.0
    assert u[:, 1].min() >= 0.2 and u[:, 1].max() < 0.3
    assert u[:, 2].max() == 1.0 and u[:, 2].min() >= 0.9                               # clamped to [0, 1]
    assert u.std() > 0 and uniform_noise(x, mean, std, "pixel").min() < 0.1


def _setup(**recipe_args):
    config = load_config("rspc", cli=dict(TINY, epochs=1), sets=["warmup_epochs=0"] + [
        f"recipe_args.{k}={v}" for k, v in recipe_args.items()])
    recipe, model = get_recipe("rspc"), _vit()
    recipe.check(model, config)
    return recipe, model, config, recipe.setup(model, config, torch.device("cpu"))


def _step(recipe, model, config, state, x, y):
    """One shared backward and the corruptor's step (the classifier is not stepped); returns the loss."""
    torch.manual_seed(1)  # the same noise u every call
    out = recipe.loss(model, x, y, 0, config, state)
    model.zero_grad()
    out.loss.backward()
    grads = [p.grad.clone() for p in state["corruptor"].parameters()]
    recipe.after_backward(state)
    return out, grads


def test_corruptor_step_is_a_full_norm_five_ascent_step_whatever_the_gradient_scale():
    recipe, model, config, state = _setup(corruptor_weight_decay=0.0, corruptor_lr=0.01)   # lambda 0.005
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    before = [p.detach().clone() for p in state["corruptor"].parameters()]
    _, grads = _step(recipe, model, config, state, x, y)
    moved = torch.cat([(p.detach() - b).flatten()
                       for p, b in zip(state["corruptor"].parameters(), before, strict=True)])
    grad = torch.cat([g.flatten() for g in grads])                                     # dL/d(theta_C), STE
    # first Nesterov step: theta += lr (1 + momentum) * 5 grad / |grad|, though |grad| is far below 5
    assert 0 < grad.norm() < 0.05 and torch.allclose(moved.norm(), torch.tensor(0.01 * 1.9 * 5.0), rtol=1e-4)
    assert torch.nn.functional.cosine_similarity(moved, grad, dim=0) > 0.999
    assert all(p.grad is None for p in state["corruptor"].parameters())                # cleared for the next step


def test_weight_decay_pulls_against_the_normalised_step():
    recipe, model, config, state = _setup(corruptor_lr=0.01)                           # wd 0.05
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    theta = torch.cat([p.detach().flatten() for p in state["corruptor"].parameters()])
    _, grads = _step(recipe, model, config, state, x, y)
    moved = torch.cat([p.detach().flatten() for p in state["corruptor"].parameters()]) - theta
    grad = torch.cat([g.flatten() for g in grads])
    expected = 0.01 * 1.9 * (5.0 * grad / grad.norm() - 0.05 * theta)                  # SGD adds wd after the step
    assert torch.allclose(moved, expected, atol=1e-7)


def test_one_backward_reaches_both_players_and_ce_sees_only_the_clean_half():
    recipe, model, config, state = _setup(align_weight=0.5)
    model.eval()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    torch.manual_seed(1)
    out = recipe.loss(model, x, y, 0, config, state)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    full = [p.grad.clone() for p in state["corruptor"].parameters()]
    state["corruptor"].zero_grad()
    torch.manual_seed(1)
    out = recipe.loss(model, x, y, 0, config, state)
    (out.loss - torch.nn.functional.cross_entropy(out.logits, y)).backward()           # lambda * L_align alone
    assert all(torch.allclose(a, p.grad) for a, p in zip(full, state["corruptor"].parameters(), strict=True))
    assert torch.allclose(out.logits, model(x))                                        # logged logits: clean half


def test_rspc_trains_and_resumes_exactly_with_the_corruptor_state(tmp_path, monkeypatch):
    config = load_config("rspc", cli=dict(TINY, epochs=2), sets=["val_examples=20", "warmup_epochs=0",
                                                                  "recipe_args.corruptor_lr=0.1"])
    full = train(config, out=tmp_path / "full", device="cpu")
    saved = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    dicts = saved["recipe"]["state_dicts"]
    assert set(dicts) == {"corruptor", "corruptor_opt"} and dicts["corruptor_opt"]["state"]
    assert saved["recipe"]["values"]["k"] == 2  # a plain value of the recipe's state, kept for resume
    resumed = train_interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    a, b = load_file(str(full.weights)), load_file(str(resumed.weights))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    again = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["recipe"]["state_dicts"]["corruptor"]
    assert all(torch.allclose(again[k], dicts["corruptor"][k], atol=1e-6) for k in again)


def test_rspc_on_a_cnn_is_one_error_line(cli, tmp_path):
    res = cli("train", "rspc", "--arch", "test_resnet", "--epochs", "1", "--set", "warmup_epochs=0",
              "--out", tmp_path / "cnn")
    assert res.code == 2 and res.err.count("\n") == 1
    assert "needs a ViT" in res.err and "blocks" in res.err


def _trained_corruptor(tmp_path, **recipe_args):
    """Train RSPC for 2 epochs; (model, C at init, C trained, digits test images) to compare masks on."""
    from vitbench.data import open_dataset
    from vitbench.training.loop import build_model
    from vitbench.zoo.schema import Preprocessing
    config = load_config("rspc", cli=dict(TINY, epochs=2), sets=["val_data=null", "warmup_epochs=0"] + [
        f"recipe_args.{k}={v}" for k, v in recipe_args.items()])
    train(config, out=tmp_path / "r", device="cpu")
    model = build_model(config, 10, torch.device("cpu")).eval()
    model.net.load_state_dict(load_file(str(tmp_path / "r" / "model.safetensors")))
    torch.manual_seed(config.seed)
    initial, trained = PatchCorruptor(8, (4, 4)), PatchCorruptor(8, (4, 4))          # setup() draws C like this
    trained.load_state_dict(
        torch.load(tmp_path / "r" / "last.pt", weights_only=True)["recipe"]["state_dicts"]["corruptor"])
    x, _ = open_dataset("digits").load(0, 128, Preprocessing(input_size=32, interpolation="bilinear", crop_pct=1.0))
    return model, initial, trained, x


def _alignment(model, corruptor, mask, x) -> float:
    from vitbench.training.recipes.rspc import alignment_loss, block_outputs
    torch.manual_seed(1)                                                               # the same noise u each call
    keep = corruptor.to_pixels(mask)
    x_hat = keep * x + (1 - keep) * uniform_noise(x, model.mean, model.std, "normalised")
    with torch.no_grad(), block_outputs(model.blocks) as outs:
        model(torch.cat([x, x_hat]))
    return float(alignment_loss(outs, len(x)))


def test_the_corruptor_learns_chosen_patches_change_over_training(tmp_path):
    _, initial, trained, x = _trained_corruptor(tmp_path)                             # the recipe's defaults
    with torch.no_grad():
        changed = (initial(x, 2) != trained(x, 2)).any(1).float().mean()
    assert changed > 0.5                                                               # 70% measured; 0 before


def test_the_learned_patches_raise_the_alignment_loss_above_random_patches(tmp_path):
    model, initial, trained, x = _trained_corruptor(tmp_path, corruptor_lr=1e-3)
    gen = torch.Generator().manual_seed(5)
    random = [_alignment(model, trained, binarize(torch.rand(len(x), 16, generator=gen), 2), x) for _ in range(10)]
    with torch.no_grad():
        learned = _alignment(model, trained, trained(x, 2), x)
        start = _alignment(model, trained, initial(x, 2), x)
    assert learned > max(random) and learned > start                                  # measured 0.117 vs <= 0.111
