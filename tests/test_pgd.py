"""PGD against closed-form answers on linear models, projections, step-size rules, batch independence, a per-sample
reference of the documented semantics and the passes through the model."""

import pytest
import torch
from torch import nn

from vitbench.attacks.pgd import ALPHA_FACTOR_LIGHT, ALPHA_FACTOR_MADRY, ascent, pgd, project, random_start, step_size


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


def _reference_pgd(model, x, y, *, norm, eps, steps, alpha, inits, early_stop, mask=None):
    """The documented semantics written out one sample at a time, every iterate scored, no batching."""
    out = []
    for i in range(len(x)):
        xi, yi = x[i:i + 1], y[i:i + 1]
        mi = None if mask is None else mask[i:i + 1]
        kept, broken, used = None, False, 0
        for init in inits:
            if early_stop and broken:
                break
            delta = torch.zeros_like(xi) if init is None else init[i:i + 1].to(xi)
            delta = delta if mi is None else delta * mi
            delta = (xi + project(delta, norm=norm, eps=eps)).clamp(0, 1) - xi
            for step in range(steps + 1):
                xa = (xi + delta).requires_grad_(True)
                logits = model(xa)
                loss = nn.functional.cross_entropy(logits, yi)
                wrong = bool(logits.argmax(1) != yi)
                if step == steps or (early_stop and wrong):
                    break
                grad = torch.autograd.grad(loss, xa)[0]
                grad = grad if mi is None else grad * mi
                used += 1
                delta = (xi + project(delta + alpha * ascent(grad, norm), norm=norm, eps=eps)).clamp(0, 1) - xi
            if wrong or not broken:  # a restart's example replaces the kept one unless only the kept one broke
                kept = (xa.detach()[0], float(loss.detach()))
            broken = broken or wrong
        out.append((kept[0], broken, kept[1], used))
    return out


def _mlp_case(norm, masked, n=24, seed=0):
    """A small random MLP in float64 (so batching changes nothing beyond 1e-12) and images it half breaks."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 4)).double()
    x = torch.rand(n, 3, 4, 4, dtype=torch.float64)
    y = model(x).argmax(1).detach()  # clean-correct everywhere
    mask = None
    if masked:
        mask = torch.zeros(n, 1, 4, 4, dtype=torch.float64)
        mask[:, :, 1:3, :] = 1
    eps = 0.1 if norm == "linf" else 0.4
    return model, x, y, mask, eps


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("early_stop", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("restarts", [1, 3])
def test_pgd_equals_the_per_sample_reference(norm, early_stop, masked, restarts):
    """The batched attack (samples leaving as they break, one scoring pass at the end) gives every sample exactly
    what attacking it alone with every iterate scored gives: example, success, loss at the example, steps used."""
    model, x, y, mask, eps = _mlp_case(norm, masked)
    gen = torch.Generator().manual_seed(1)
    inits = [random_start(tuple(x.shape), norm=norm, eps=eps, generator=gen) for _ in range(restarts)]
    kw = {"norm": norm, "eps": eps, "steps": 6, "alpha": step_size(eps, 6), "inits": inits, "early_stop": early_stop,
          "mask": mask}
    res = pgd(model, x, y, **kw)
    ref = _reference_pgd(model, x, y, **kw)
    assert res.success.tolist() == [r[1] for r in ref]
    assert res.steps_used.tolist() == [r[3] for r in ref]
    assert torch.allclose(res.x_adv, torch.stack([r[0] for r in ref]), atol=1e-9)
    assert torch.allclose(res.loss, torch.tensor([r[2] for r in ref], dtype=res.loss.dtype), atol=1e-6)
    assert 0 < int(res.success.sum()) < len(x)  # the case is not trivial
    if early_stop:  # samples leave at different steps
        assert len(set(res.steps_used[res.success].tolist())) > 1


class _Counting(nn.Module):
    """Wraps a model and logs (batch size, grad enabled) per forward and the batch size of each backward."""

    def __init__(self, model):
        super().__init__()
        self.model, self.forwards, self.backwards = model, [], []

    def forward(self, x):
        out = self.model(x)
        self.forwards.append((len(x), torch.is_grad_enabled()))
        if out.requires_grad:
            out.register_hook(lambda g: self.backwards.append(len(g)))
        return out


@pytest.mark.parametrize("early_stop", [True, False])
def test_pass_counts(early_stop):
    """Each sample goes through the model once per iterate it reaches: used + 1 times (its first misclassified
    iterate, or the final one scored without a graph); without early stop every pass is the whole batch."""
    model, x, y, _, eps = _mlp_case("linf", False)
    counted = _Counting(model)
    init = random_start(tuple(x.shape), norm="linf", eps=eps, generator=torch.Generator().manual_seed(1))
    res = pgd(counted, x, y, norm="linf", eps=eps, steps=6, alpha=step_size(eps, 6), inits=[init],
              early_stop=early_stop)
    assert sum(b for b, _ in counted.forwards) == int((res.steps_used + 1).sum())
    assert [g for _, g in counted.forwards] == [True] * 6 + [False]  # some samples survive: 6 steps, 1 scoring
    assert counted.backwards == [b for b, _ in counted.forwards[:-1]]
    if not early_stop:
        assert counted.forwards == [(len(x), True)] * 6 + [(len(x), False)]


def test_a_step_that_breaks_every_sample_left_skips_its_backward():
    model, x, y, _, _ = _mlp_case("linf", False)
    counted = _Counting(model)
    res = pgd(counted, x, (y + 1) % 4, norm="linf", eps=0.1, steps=5, alpha=0.05, inits=[None])  # all wrong
    assert bool(res.success.all()) and res.steps_used.tolist() == [0] * len(x)
    assert counted.forwards == [(len(x), True)] and counted.backwards == []
    assert torch.equal(res.x_adv, x)


def test_no_runs_leave_the_clean_images_unbroken():
    model, x, y, _, _ = _mlp_case("linf", False)
    res = pgd(model, x, y, norm="linf", eps=0.1, steps=5, alpha=0.05, inits=[])
    assert torch.equal(res.x_adv, x) and not bool(res.success.any()) and not bool(res.steps_used.any())
