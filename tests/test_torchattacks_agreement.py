"""Where the torchattacks extra is installed: vitbench's PGD and torchattacks' PGD agree on the same model and data."""

import pytest
import torch

torchattacks = pytest.importorskip("torchattacks")
pytestmark = pytest.mark.extra

from vitbench.attacks.pgd import pgd  # noqa: E402
from vitbench.data import open_dataset  # noqa: E402
from vitbench.zoo.load import load_model  # noqa: E402
from vitbench.zoo.schema import load_zoo  # noqa: E402


def _setup(n=48):
    entry = load_zoo().get("digits-resnet.light")
    model = load_model(entry).model
    x, y = open_dataset("digits").load(0, n, entry.preprocessing)
    return model, x, y


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_agrees_without_random_start(norm):
    model, x, y = _setup()
    eps, steps = (0.1, 10) if norm == "linf" else (1.0, 10)
    alpha = 2.5 * eps / steps
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    theirs = cls(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    ours = pgd(model, x, y, norm=norm, eps=eps, steps=steps, alpha=alpha, inits=[None], early_stop=False)
    # L2 steps are normalised gradients of a summed (vitbench) or averaged (torchattacks) loss: equal up to float
    # rounding, which ten normalisations amplify to ~3e-4 at most; L-inf's sign() is exact
    assert torch.allclose(ours.x_adv, theirs, atol=1e-5 if norm == "linf" else 1e-3)
    with torch.no_grad():
        assert torch.equal(model(theirs).argmax(1) != y, ours.success)


def test_pgd_random_start_same_accuracy():
    model, x, y = _setup(96)
    torch.manual_seed(0)
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.025, steps=10, random_start=True)(x, y)
    torch.manual_seed(0)
    init = (torch.rand(x.shape) * 2 - 1) * 0.1
    ours = pgd(model, x, y, norm="linf", eps=0.1, steps=10, alpha=0.025, inits=[init], early_stop=False)
    with torch.no_grad():
        acc_theirs = float((model(theirs).argmax(1) == y).float().mean())
    acc_ours = float((~ours.success).float().mean())
    assert abs(acc_ours - acc_theirs) <= 1 / len(y)
