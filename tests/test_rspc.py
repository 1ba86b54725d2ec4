"""RSPC: the patch corruption model, its straight-through mask, the min-max step and the recipe in the loop."""

import pytest
import timm
import torch
from safetensors.torch import load_file

from conftest import TINY_VIT_ARGS, train_interrupted_then_resumed
from vitbench.train.config import load_config
from vitbench.train.loop import train
from vitbench.train.recipes import get_recipe
from vitbench.train.recipes.rspc import PatchCorruptor, binarize, num_corrupted, uniform_noise
from vitbench.zoo.wrapper import RobustModel

TINY = {"arch": "vit_tiny_patch16_224", "arch_args": dict(TINY_VIT_ARGS)}


def _vit(seed: int = 0) -> RobustModel:
    torch.manual_seed(seed)
    net = timm.create_model(TINY["arch"], num_classes=10, **TINY["arch_args"])
    return RobustModel(net, mean=(0.5,) * 3, std=(0.5,) * 3, name="tiny", num_classes=10, input_size=32)


@pytest.mark.parametrize("rho", [0.1, 0.25, 0.5])
def test_mask_corrupts_exactly_round_rho_n_lowest_patches(rho):
    scores = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    mask = binarize(scores, num_corrupted(64, rho))
    k = round(rho * 64)
    assert ((mask == 0).sum(1) == k).all() and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (scores[mask == 0].view(5, k).max(1).values < scores[mask == 1].view(5, -1).min(1).values).all()


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


def test_corruptor_step_ascends_the_loss_with_clipped_norm():
    recipe, model, config, state = _setup(corruptor_weight_decay=0.0, align_weight=1e6, corruptor_lr=0.01)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    before = [p.detach().clone() for p in state["corruptor"].parameters()]
    _, grads = _step(recipe, model, config, state, x, y)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(state["corruptor"].parameters(), before)])
    grad = torch.cat([g.flatten() for g in grads])                                     # dL/d(theta_C), STE
    # first Nesterov step: theta += lr (1 + momentum) * 5 grad / |grad|: up the loss, clipped to norm 5
    assert grad.norm() > 5 and torch.allclose(moved.norm(), torch.tensor(0.01 * 1.9 * 5.0), rtol=1e-4)
    assert torch.nn.functional.cosine_similarity(moved, grad, dim=0) > 0.999
    assert all(p.grad is None for p in state["corruptor"].parameters())                # cleared for the next step


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
    assert all(torch.allclose(a, p.grad) for a, p in zip(full, state["corruptor"].parameters()))
    assert torch.allclose(out.logits, model(x))                                        # logged logits: clean half


def test_rspc_trains_and_resumes_exactly_with_the_corruptor_state(tmp_path, monkeypatch):
    config = load_config("rspc", cli=dict(TINY, epochs=2), sets=["val_examples=20", "warmup_epochs=0",
                                                                  "recipe_args.corruptor_lr=0.1"])
    full = train(config, out=tmp_path / "full", device="cpu")
    saved = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    assert set(saved["recipe"]) == {"corruptor", "corruptor_opt"} and saved["recipe"]["corruptor_opt"]["state"]
    resumed = train_interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    a, b = load_file(str(full.weights)), load_file(str(resumed.weights))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    again = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["recipe"]["corruptor"]
    assert all(torch.allclose(again[k], saved["recipe"]["corruptor"][k], atol=1e-6) for k in again)


def test_rspc_on_a_cnn_is_one_error_line(cli, tmp_path):
    res = cli("train", "rspc", "--arch", "test_resnet", "--epochs", "1", "--set", "warmup_epochs=0",
              "--out", tmp_path / "cnn")
    assert res.code == 2 and res.err.count("\n") == 1
    assert "needs a ViT" in res.err and "blocks" in res.err
