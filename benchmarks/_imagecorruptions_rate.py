"""Images per CPU second of the ``imagecorruptions`` package, one image at a time (run by bench_corruptions.py).

Runs in any interpreter that imports imagecorruptions, numpy and Pillow (no torch, no vitbench): the package
needs numpy < 2 and OpenCV, so it usually lives in its own virtual environment. Prints one JSON object
{corruption: images per second}. Two shims let it run on current libraries without changing what it computes:
scikit-image 0.19 renamed ``gaussian(..., multichannel=True)`` to ``channel_axis=-1`` (later versions dropped
the old name), and numpy 2 dropped the alias ``np.float_`` (= float64).

    python benchmarks/_imagecorruptions_rate.py --size 224 --severity 3 --images 64 --seconds 2 --repeats 2 NAME ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import corruption_reference as R  # noqa: E402  (numpy and Pillow only)


def _shimmed():
    """imagecorruptions' corruptions module, runnable on scikit-image >= 0.19 and numpy 2."""
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    import imagecorruptions
    from imagecorruptions import corruptions as module
    own = module.gaussian

    def gaussian(image, sigma=1, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return own(image, sigma=sigma, **kwargs)
    module.gaussian = gaussian
    return imagecorruptions


def _pass(ic, images: np.ndarray, name: str, severity: int, budget: float | None) -> tuple[int, float]:
    """(images done, CPU seconds) of one pass, stopping after ``budget`` seconds (at least one image)."""
    spent, done = 0.0, 0
    while done < len(images) and (done == 0 or budget is None or spent < budget):
        start = time.process_time()
        ic.corrupt(images[done], severity=severity, corruption_name=name)
        spent += time.process_time() - start
        done += 1
    return done, spent


def rate(ic, images: np.ndarray, name: str, severity: int, budget: float, repeats: int) -> float:
    """Images per CPU second of ``imagecorruptions.corrupt``: the best of ``repeats`` passes over the images that
    fit in ``budget`` seconds (vitbench's side is the best of as many calls)."""
    done, best = _pass(ic, images, name, severity, budget)
    for _ in range(repeats - 1):
        best = min(best, _pass(ic, images[:done], name, severity, None)[1])
    return done / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass
    ic = _shimmed()
    images = np.round(R.natural_images(args.images, args.size) * 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()
    np.random.seed(0)
    ic.corrupt(images[0], severity=args.severity, corruption_name=args.names[0])       # warm-up (imports, files)
    print(json.dumps({n: rate(ic, images, n, args.severity, args.seconds, args.repeats) for n in args.names}))


if __name__ == "__main__":
    main()
