"""ImageNet-C corruptions: batched torch (vitbench.data.corruptions) vs the per-image numpy reference.

For each corruption at one severity and image size: images per second of ``corrupt`` on a batch and of the
numpy reference in tests/corruption_reference.py one image at a time, and the speed-up. Both include drawing
their random numbers (the reference with numpy's legacy RandomState, as the authors' np.random calls do). The
reference states the authors' per-image pipeline in plain numpy (glass blur keeps its sequential swap loop).
Goal (issue 3): >= 5x on CPU for the batchable corruptions, and glass blur no longer an hours-long outlier.

On a busy shared CPU keep --threads 1: torch's OpenMP workers spin-wait against other processes and a
2-thread run can be many times slower than a 1-thread one.

    .venv/bin/python benchmarks/bench_corruptions.py [--sizes 224 32] [--batch 64] [--severity 3]
                                                     [--ref-seconds 2] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from _common import best_of  # noqa: E402

import corruption_reference as R  # noqa: E402
from vitbench.data import corruptions as C  # noqa: E402


def torch_rate(x: torch.Tensor, name: str, severity: int, repeats: int) -> float:
    """Images per second of the batched torch corruption (draws included), best of ``repeats``."""
    def run() -> torch.Tensor:
        out = C.corrupt(x, name, severity, torch.Generator().manual_seed(0))
        if out.device.type == "cuda":
            torch.cuda.synchronize()
        return out
    run()   # warm-up (FFT plans, caches)
    seconds, _, _ = best_of(repeats, {name: run})[name]  # CPU seconds
    return len(x) / seconds


NORMAL_DRAWS = ("noise", "layer", "liquid")


def numpy_draws(rng: np.random.RandomState, name: str, params, img: np.ndarray,
                like: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """One image's random numbers drawn with numpy, with the shapes and laws of vitbench's draws."""
    out = {}
    for key, t in like.items():
        shape = tuple(t.shape[1:])
        if name == "shot_noise":
            out[key] = rng.poisson(img * params).astype(np.float64)
        elif name == "glass_blur":
            out[key] = rng.randint(-params[1], params[1], size=shape)
        elif key in NORMAL_DRAWS:
            out[key] = rng.normal(size=shape)
        else:
            out[key] = rng.uniform(size=shape)
    return out


def reference_rate(x: torch.Tensor, name: str, severity: int, budget: float) -> float:
    """Images per second of the per-image numpy reference (its draws included), over as many images as fit
    in ``budget`` seconds."""
    cpu = x.cpu().double()
    like = C.draw_randomness(cpu[:1], name, severity, torch.Generator().manual_seed(0))
    params = C.corruption_params(name, severity, C.table_for(*x.shape[-2:]))
    rng = np.random.RandomState(0)
    spent, done = 0.0, 0
    while done < len(cpu) and (done == 0 or spent < budget):
        img = cpu[done].numpy()
        start = time.process_time()
        R.corrupt_image(img, name, params, numpy_draws(rng, name, params, img, like))
        spent += time.process_time() - start
        done += 1
    return done / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 32])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--ref-seconds", type=float, default=2.0, help="time budget of the reference per row")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the reference uses one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", default=None, help="corruption names (default: all 19)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    names = args.only or list(C.ALL_CORRUPTIONS)
    print(f"severity {args.severity}, torch batch {args.batch} on {args.device} ({args.threads} thread(s)), "
          f"numpy reference one image at a time; images per second")
    print(f"| {'corruption':18s} | size | {'torch img/s':>11s} | {'numpy img/s':>11s} | {'speed-up':>8s} |")
    print(f"|{'-' * 20}|------|{'-' * 13}|{'-' * 13}|{'-' * 10}|")
    for size in args.sizes:
        x = torch.from_numpy(R.natural_images(args.batch, size)).float().to(args.device)
        for name in names:
            fast = torch_rate(x, name, args.severity, args.repeats)
            slow = reference_rate(x, name, args.severity, args.ref_seconds)
            print(f"| {name:18s} | {size:4d} | {fast:11.1f} | {slow:11.1f} | {fast / slow:7.1f}x |", flush=True)


if __name__ == "__main__":
    main()
