"""ImageNet-C corruptions: batched torch (vitbench.data.corruptions) vs the ``imagecorruptions`` package and vs
the per-image numpy reference of the tests.

For each corruption at one severity and image size: images per CPU second of ``corrupt`` on a batch (one
thread), of ``imagecorruptions.corrupt`` one uint8 image at a time (the reference the issue names; run by
``_imagecorruptions_rate.py`` in the interpreter given by --imagecorruptions, since the package needs numpy < 2
and OpenCV), and of the numpy reference in tests/corruption_reference.py one image at a time; and the ratios
(vitbench / other, higher is faster). All include drawing their random numbers. vitbench and imagecorruptions
each report their best of --repeats runs (a call on the batch; a pass over the images that fit in --ref-seconds).
Goal (issue 9): every ratio against imagecorruptions >= 1.

On a busy shared CPU keep --threads 1: torch's OpenMP workers spin-wait against other processes and a
2-thread run can be many times slower than a 1-thread one. imagecorruptions' rate is measured right before
vitbench's for each row, so both see the same machine load.

    # once: a scratch environment for the package (numpy < 2, scikit-image 0.20, OpenCV)
    python3 -m venv /tmp/ic && /tmp/ic/bin/pip install "numpy<2" "scikit-image<0.21" scipy \\
        opencv-python-headless pillow "setuptools<70" imagecorruptions==1.1.2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_corruptions.py --imagecorruptions /tmp/ic/bin/python \\
        [--sizes 224 32] [--batch 64] [--severity 3] [--ref-seconds 2] [--threads 1] [--no-numpy] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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

HELPER = Path(__file__).resolve().parent / "_imagecorruptions_rate.py"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def torch_rate(x: torch.Tensor, name: str, severity: int, repeats: int) -> float:
    """Images per second of the batched torch corruption (draws included), best of ``repeats``. The output goes
    into one reused tensor, as the corruptions suite does for its corruptions x severities."""
    buffer = torch.empty_like(x)

    def run() -> torch.Tensor:
        out = C.corrupt(x, name, severity, torch.Generator().manual_seed(0), out=buffer)
        if out.device.type == "cuda":
            torch.cuda.synchronize()
        return out
    run()   # warm-up (FFT plans, caches, frost photographs)
    seconds, _, _ = best_of(repeats, {name: run})[name]  # CPU seconds
    return len(x) / seconds


def imagecorruptions_rate(python: str, size: int, name: str, severity: int, images: int, budget: float,
                          repeats: int) -> float:
    """Images per CPU second of imagecorruptions.corrupt in ``python`` (one thread), via the helper script."""
    cmd = [python, "-W", "ignore", str(HELPER), name, "--size", str(size), "--severity", str(severity),
           "--images", str(images), "--seconds", str(budget), "--repeats", str(repeats)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **SINGLE_THREAD})
    return json.loads(done.stdout.strip().splitlines()[-1])[name]


def _imagecorruptions_python(choice: str | None) -> str | None:
    """The interpreter that runs imagecorruptions: --imagecorruptions, else this one if it imports the package."""
    if choice:
        return choice
    try:
        import imagecorruptions  # noqa: F401
    except ImportError:
        return None
    return sys.executable


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
        elif name == "frost" and key == "index":
            out[key] = rng.randint(C.FROST_CHOICES)
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
    table = C.table_for(*x.shape[-2:])
    params = C.corruption_params(name, severity, table)
    rng = np.random.RandomState(0)
    spent, done = 0.0, 0
    while done < len(cpu) and (done == 0 or spent < budget):
        img = cpu[done].numpy()
        start = time.process_time()
        R.corrupt_image(img, name, params, numpy_draws(rng, name, params, img, like), table)
        spent += time.process_time() - start
        done += 1
    return done / spent


def _cell(rate: float | None) -> str:
    return f"{rate:11.1f}" if rate is not None else f"{'-':>11s}"


def _ratio(fast: float, slow: float | None) -> str:
    return f"{fast / slow:7.2f}x" if slow else f"{'-':>8s}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 32])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--ref-seconds", type=float, default=2.0, help="time budget of each reference per row")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the references use one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--imagecorruptions", metavar="PYTHON", default=None,
                        help="interpreter that imports imagecorruptions (default: this one, if it does)")
    parser.add_argument("--no-numpy", action="store_true", help="skip the numpy reference column")
    parser.add_argument("--only", nargs="*", default=None, help="corruption names (default: all 19)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    names = args.only or list(C.ALL_CORRUPTIONS)
    ic_python = _imagecorruptions_python(args.imagecorruptions)
    print(f"severity {args.severity}, torch batch {args.batch} on {args.device} ({args.threads} thread(s)); "
          f"references one image at a time, one thread; images per CPU second"
          + ("" if ic_python else "; imagecorruptions not importable (pass --imagecorruptions PYTHON)"))
    print(f"| {'corruption':18s} | size | {'vitbench':>11s} | {'imagecorr.':>11s} | {'ratio':>8s} | "
          f"{'numpy ref':>11s} | {'ratio':>8s} |")
    print(f"|{'-' * 20}|------|{'-' * 13}|{'-' * 13}|{'-' * 10}|{'-' * 13}|{'-' * 10}|")
    for size in args.sizes:
        x = torch.from_numpy(R.natural_images(args.batch, size)).float().to(args.device)
        for name in names:
            ic = (imagecorruptions_rate(ic_python, size, name, args.severity, args.batch, args.ref_seconds,
                                        args.repeats) if ic_python else None)
            fast = torch_rate(x, name, args.severity, args.repeats)
            slow = None if args.no_numpy else reference_rate(x, name, args.severity, args.ref_seconds)
            print(f"| {name:18s} | {size:4d} | {fast:11.1f} | {_cell(ic)} | {_ratio(fast, ic)} | {_cell(slow)} | "
                  f"{_ratio(fast, slow)} |", flush=True)


if __name__ == "__main__":
    main()
