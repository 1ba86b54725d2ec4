"""The autoattack suite (engine + store) vs calling pyautoattack directly, same model, data, seed and batch.

Goal (issue 2): <= 1.05x the time of the direct call, identical robust accuracy.

    .venv/bin/python benchmarks/bench_autoattack.py [--model digits-resnet.light] [--n 100] [--version custom]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, scratch_home  # noqa: E402

ATTACKS = ("apgd-ce", "apgd-t")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="digits-resnet.light")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--version", default="custom", choices=("custom", "standard"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from pyautoattack import AutoAttack

    import vitbench
    from vitbench.data import open_dataset
    from vitbench.suites import Preset, PresetItem
    from vitbench.zoo.schema import load_zoo

    torch.set_num_threads(2)
    entry = load_zoo().get(args.model)
    model = vitbench.load_model(entry, device="cpu")
    data = open_dataset("digits")
    x, y = data.load(0, args.n, entry.preprocessing)
    attacks = ATTACKS if args.version == "custom" else ()
    seed = 0
    from vitbench.engine import chunk_seed
    aa_seed = chunk_seed(seed, 0)  # the seed the engine gives chunk 0

    def direct():
        adversary = AutoAttack(model, norm="Linf", eps=args.eps, version=args.version, seed=aa_seed,
                               attacks=list(attacks) if attacks else None)
        if args.version == "custom":
            adversary.apgd.n_restarts = 1
            adversary.apgd_targeted.n_target_classes = 9
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=args.n)
        with torch.no_grad():
            return int((model(x_adv).argmax(1) == y).sum())

    preset = Preset("bench", "", (PresetItem("autoattack", {"norm": "linf", "eps": args.eps, "version": args.version,
                                                            "attacks": list(attacks)}),))

    def suite():  # the suite as users run it: through vitbench.evaluate (engine, store, aggregation)
        with scratch_home():
            report = vitbench.evaluate(entry, data, preset=preset, seed=seed, n_examples=args.n, chunk_size=args.n,
                                       batch_size=args.n, device="cpu")
            return round(report["autoattack"].metrics["robust_accuracy"] * args.n)

    results = best_of(args.repeats, {"pyautoattack direct": direct, "vitbench autoattack suite": suite})
    (t_ref, w_ref, acc_ref), (t_suite, w_suite, acc_suite) = (results["pyautoattack direct"],
                                                              results["vitbench autoattack suite"])
    label = "+".join(attacks) if attacks else "standard"
    print(f"model {args.model}, {args.n} digits images, L-inf eps {args.eps}, AutoAttack {label}, best of {args.repeats}")
    print(f"{'':28s} {'CPU s':>8s} {'wall s':>8s} {'robust':>8s}")
    print(f"{'pyautoattack direct':28s} {t_ref:8.2f} {w_ref:8.2f} {acc_ref:4d}/{args.n}")
    print(f"{'vitbench autoattack suite':28s} {t_suite:8.2f} {w_suite:8.2f} {acc_suite:4d}/{args.n}")
    print(f"CPU-time ratio suite / direct: {t_suite / t_ref:.3f}x (goal <= 1.05x); "
          f"robust accuracy identical: {acc_ref == acc_suite}")


if __name__ == "__main__":
    main()
