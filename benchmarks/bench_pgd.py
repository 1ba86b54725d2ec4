"""vitbench's PGD vs torchattacks' PGD: the same model, images, random starts and steps, no early stop.

Each batch is attacked from the same start by both: the benchmark seeds torch before torchattacks' call and draws
vitbench's start with that seed the way torchattacks draws it (``empty_like(x).uniform_(-eps, eps)``). vitbench
returns per-sample records (success and loss at the returned example, steps used) beside the examples;
torchattacks returns the examples only, so its robust flags need one more forward pass, timed as a third
candidate ("torchattacks + scoring": the same outputs as vitbench). Printed: each candidate's best CPU time over
``--repeats`` alternated runs (one thread by default), the median of the per-repeat ratios (steadier on a shared
machine) and the ratio of the best times, the passes through the model (forward with a graph, backward, forward
without one) and whether the examples and robust flags agree. The examples can differ in a few pixels by
2 alpha: vitbench differentiates the summed per-sample loss, torchattacks the mean, and the rounding flips the
sign of some near-zero gradient components.

Goal (issue 11): vitbench <= 1.0x torchattacks' CPU time with the per-sample records kept.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pgd.py [--model digits-vit.light] [--n 200] [--steps 10]

Needs torchattacks (the ``torchattacks`` extra, or a folder holding it on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PassCounter, median_ratio, paired  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="digits-vit.light")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--alpha-factor", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torchattacks

    from vitbench.attacks.pgd import pgd, step_size
    from vitbench.data import open_dataset
    from vitbench.zoo.load import load_model
    from vitbench.zoo.schema import load_zoo

    torch.set_num_threads(args.threads)
    entry = load_zoo().get(args.model)
    model = load_model(entry).model.eval()
    x_all, y_all = open_dataset("digits").load(0, args.n, entry.preprocessing)
    batches = [(x_all[i:i + args.batch], y_all[i:i + args.batch], args.seed + i)
               for i in range(0, args.n, args.batch)]
    eps, steps = args.eps, args.steps
    alpha = step_size(eps, steps, alpha_factor=args.alpha_factor)
    attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    starts = []
    for x, _, seed in batches:  # torchattacks' draw, reproduced for vitbench
        torch.manual_seed(seed)
        starts.append(torch.empty_like(x).uniform_(-eps, eps))

    def theirs():
        out = []
        for x, y, seed in batches:
            torch.manual_seed(seed)
            out.append(attack(x, y))
        return out

    def score(advs):
        with torch.no_grad():
            logits = [model(adv) for adv in advs]
        return ([lg.argmax(1) != y for lg, (_, y, _) in zip(logits, batches)],
                [F.cross_entropy(lg, y, reduction="none") for lg, (_, y, _) in zip(logits, batches)])

    def theirs_scored():
        advs = theirs()
        return advs, score(advs)

    def ours():
        return [pgd(model, x, y, norm="linf", eps=eps, steps=steps, alpha=alpha, inits=[start], early_stop=False)
                for (x, y, _), start in zip(batches, starts)]

    counter = PassCounter(lambda module: module is model)
    passes = {"torchattacks": counter.count(theirs), "torchattacks + scoring": counter.count(theirs_scored),
              "vitbench": counter.count(ours)}
    names = ("torchattacks", "torchattacks + scoring", "vitbench")
    runs = paired(args.repeats, dict(zip(names, (theirs, theirs_scored, ours))))
    best = {name: min(runs[name], key=lambda run: run[0]) for name in names}

    print(f"model {args.model}, {args.n} digits images in batches of {args.batch}, PGD-{steps} L-inf eps {eps:g} "
          f"alpha {alpha:.4g}, random start, no early stop, {args.threads} thread(s), {args.repeats} repeats")
    print(f"{'':24s} {'best CPU s':>10s} {'wall s':>7s}  passes through the model")
    for name in names:
        print(f"{name:24s} {best[name][0]:10.3f} {best[name][1]:7.3f}  {passes[name]}")
    for ref in ("torchattacks", "torchattacks + scoring"):
        goal = " (goal <= 1.0x)" if ref == "torchattacks" else ""
        median = median_ratio(runs, "vitbench", ref)
        print(f"CPU-time ratio vitbench / {ref}: median of per-repeat ratios {median:.3f}x, "
              f"of best times {best['vitbench'][0] / best[ref][0]:.3f}x{goal}")

    advs, (flags, losses) = runs["torchattacks + scoring"][-1][2]
    results = runs["vitbench"][-1][2]
    ours_adv, theirs_adv = torch.cat([r.x_adv for r in results]), torch.cat(advs)
    diff = (ours_adv - theirs_adv).abs()
    ours_flags, theirs_flags = torch.cat([r.success for r in results]), torch.cat(flags)
    loss_diff = (torch.cat([r.loss for r in results]) - torch.cat(losses)).abs().max()
    print(f"examples: max |difference| {float(diff.max()):.3g}, pixels differing by more than 1e-5: "
          f"{int((diff > 1e-5).sum())} of {diff.numel()}; robust flags identical: "
          f"{torch.equal(ours_flags, theirs_flags)} (robust {int((~ours_flags).sum())} vs "
          f"{int((~theirs_flags).sum())} of {len(ours_flags)}); max |loss difference| {float(loss_diff):.3g}")


if __name__ == "__main__":
    main()
