"""PGD against closed-form answers on linear models, projections, step-size rules, batch independence."""

import pytest
import torch
from torch import nn

from vitbench.attacks.pgd import ALPHA_FACTOR_LIGHT, ALPHA_FACTOR_MADRY, pgd, project, random_start, step_size


class Linear2(nn.Module):
    """Two-class linear model: logit margin m(x) = w . x + b for class 1 over class 0."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        m = (x.flatten(1) * self.w).sum(1) + self.b
        return torch.stack([torch.zeros_like(m), m], 1)


def _setup(n=64, d=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=gen)
    x = 0.3 + 0.4 * torch.rand(n, 3, 4, 4, generator=gen)   # away from the box edges
    model = Linear2(w, 0.0)
    margin = (x.flatten(1) * w).sum(1)
    y = (margin > 0).long()
    return model, x, y, w, margin.abs()


@pytest.mark.parametrize("norm, dual", [("linf", 1), ("l2", 2)])
def test_linear_model_success_set_is_exact(norm, dual):
    """For a linear 2-class model, an attack succeeds iff |margin| < eps * ||w||_dual (box constraints inactive)."""
    model, x, y, w, margin = _setup()
    eps = 0.05
    expected = margin < eps * w.norm(p=dual)
    res = pgd(model, x, y, norm=norm, eps=eps, steps=20, alpha=step_size(eps, 20), inits=[None])
    assert torch.equal(res.success, expected)
    assert 0 < int(expected.sum()) < len(x)  # the case is not trivial


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_perturbation_stays_in_ball_and_box(norm):
    model, x, y, _, _ = _setup()
    eps = 0.3 if norm == "linf" else 1.5
    gen = torch.Generator().manual_seed(1)
    init = random_start(tuple(x.shape), norm=norm, eps=eps, generator=gen)
    res = pgd(model, x, y, norm=norm, eps=eps, steps=5, alpha=step_size(eps, 5), inits=[init], early_stop=False)
    delta = (res.x_adv - x).flatten(1)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-6
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    logits = model(res.x_adv)
    assert torch.equal(logits.argmax(1) != y, res.success)


def test_random_start_distribution():
    gen = torch.Generator().manual_seed(0)
    d = random_start((2000, 3, 4, 4), norm="linf", eps=0.1, generator=gen)
    assert float(d.abs().max()) <= 0.1 and float(d.mean()) == pytest.approx(0.0, abs=2e-3)
    d2 = random_start((2000, 3, 4, 4), norm="l2", eps=0.5, generator=gen).flatten(1).norm(dim=1)
    assert float(d2.max()) <= 0.5 + 1e-6 and float(d2.mean()) == pytest.approx(0.25, abs=0.02)  # E[u] eps


def test_projection():
    delta = torch.tensor([[3.0, 4.0]])
    assert torch.allclose(project(delta, norm="l2", eps=1.0), torch.tensor([[0.6, 0.8]]))
    assert torch.allclose(project(delta, norm="linf", eps=1.0), torch.tensor([[1.0, 1.0]]))


def test_step_size_rules():
    assert step_size(4 / 255, 1, alpha_factor=ALPHA_FACTOR_LIGHT) == pytest.approx(6 / 255)
    assert step_size(8 / 255, 10, alpha_factor=ALPHA_FACTOR_MADRY) == pytest.approx(2 / 255)
    assert step_size(8 / 255, 10, alpha=0.01) == 0.01


def test_sample_outcome_independent_of_batch():
    """With the same start, a sample's result does not depend on which samples share its batch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 5))
    x = torch.rand(12, 3, 4, 4)
    y = torch.randint(0, 5, (12,))
    init = random_start(tuple(x.shape), norm="linf", eps=0.1, generator=torch.Generator().manual_seed(3))
    full = pgd(model, x, y, norm="linf", eps=0.1, steps=7, alpha=0.03, inits=[init])
    for i in (0, 5, 11):
        alone = pgd(model, x[i:i + 1], y[i:i + 1], norm="linf", eps=0.1, steps=7, alpha=0.03, inits=[init[i:i + 1]])
        assert bool(alone.success[0]) == bool(full.success[i])
        assert torch.allclose(alone.x_adv[0], full.x_adv[i], atol=1e-6)


def test_restarts_only_attack_survivors():
    model, x, y, w, margin = _setup()
    gen = torch.Generator().manual_seed(0)
    inits = [random_start(tuple(x.shape), norm="linf", eps=0.05, generator=gen) for _ in range(3)]
    res = pgd(model, x, y, norm="linf", eps=0.05, steps=3, alpha=0.02, inits=inits)
    broken_first = res.steps_used <= 3
    assert bool((res.steps_used[~res.success] == 9).all())  # robust samples spent all 3 x 3 steps
    assert bool(broken_first[res.success].any())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_masked_step_spends_the_whole_step_inside_the_mask(norm):
    """One step from x with a large eps: the step has length alpha (L2) or alpha per pixel (L-inf), all inside."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    x, y = torch.full((4, 3, 4, 4), 0.5), torch.randint(0, 5, (4,))
    mask = torch.zeros(4, 1, 4, 4)
    mask[:, :, :2, :2] = 1
    res = pgd(model, x, y, norm=norm, eps=10.0, steps=1, alpha=0.2, inits=[None], early_stop=False, mask=mask)
    delta = res.x_adv - x
    assert float(delta[:, :, 2:].abs().max()) == 0 and float(delta[:, :, :, 2:].abs().max()) == 0
    inside = delta.flatten(1)
    size = inside.norm(dim=1) if norm == "l2" else inside.abs().max(dim=1).values
    assert torch.allclose(size, torch.full((4,), 0.2), atol=1e-5)
