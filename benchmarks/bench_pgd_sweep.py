"""A 6-eps PGD sweep (the pgd_sweep suite) vs attacking each eps independently with a plain PGD.

The reference is textbook PGD (uniform random start, fixed step count, final iterate, every sample attacked at
every eps, as torchattacks' PGD does). Goal (issue 2): <= 0.5x the time, a curve no weaker (robust accuracy at
every eps no higher than the reference's).

    .venv/bin/python benchmarks/bench_pgd_sweep.py [--model digits-vit.light] [--n 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, scratch_home  # noqa: E402

FACTORS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def plain_pgd(model, x, y, eps: float, steps: int, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """Reference L-inf PGD: random start, `steps` signed-gradient steps, returns final-iterate correctness."""
    delta = (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
    x_adv = (x + delta).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        grad = torch.autograd.grad(loss, x_adv)[0]
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="digits-vit.light")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.1, help="the threat eps; the sweep covers 0.25x..2x")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from vitbench.data import open_dataset
    from vitbench.engine import Engine, Options, SuiteRun
    from vitbench.store import open_store
    from vitbench.suites.pgd_sweep import PGDSweepConfig, key
    from vitbench.zoo.load import load_model
    from vitbench.zoo.schema import load_zoo

    torch.set_num_threads(2)
    entry = load_zoo().get(args.model)
    model = load_model(entry).model
    data = open_dataset("digits")
    x, y = data.load(0, args.n, entry.preprocessing)
    eps_list = [f * args.eps for f in FACTORS]

    def independent():
        gen = torch.Generator().manual_seed(0)
        return [float(plain_pgd(model, x, y, e, args.steps, 2.5 * e / args.steps, gen).float().mean())
                for e in eps_list]

    config = PGDSweepConfig(norm="linf", eps=(args.eps,), eps_factors=FACTORS, steps=(args.steps,))

    def sweep():
        with scratch_home():
            engine = Engine(open_store(), Options(n_examples=args.n, chunk_size=100, device="cpu", batch_size=256))
            result = engine.run(entry, data, SuiteRun("pgd_sweep", config))
            return [result.metrics[key(args.steps, e)].value for e in config.eps]

    results = best_of(args.repeats, {"independent": independent, "sweep": sweep})
    (t_ref, ref), (t_sweep, swept) = results["independent"], results["sweep"]
    print(f"model {args.model}, {args.n} digits images, PGD-{args.steps} L-inf, eps = {FACTORS} x {args.eps}")
    print(f"{'eps':>8s} {'independent':>12s} {'sweep':>8s}")
    for e, a, b in zip(eps_list, ref, swept):
        print(f"{e:8.4f} {100 * a:11.2f}% {100 * b:7.2f}%")
    print(f"time: independent {t_ref:.2f} s, sweep {t_sweep:.2f} s, ratio {t_sweep / t_ref:.3f}x (goal <= 0.5x); "
          f"curve no weaker: {all(b <= a + 1e-12 for a, b in zip(ref, swept))}")


if __name__ == "__main__":
    main()
