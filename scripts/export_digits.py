"""Export the UCI optical digits (as bundled in scikit-learn) to vitbench/data/files/digits.parquet.

Run once by a maintainer (scikit-learn is needed for this step only):
    .venv/bin/pip install scikit-learn && .venv/bin/python scripts/export_digits.py
The split is fixed by a seeded permutation: 500 test images, the other 1297 for training.
"""

import io
from pathlib import Path

import datasets
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parents[1] / "vitbench" / "data" / "files" / "digits.parquet"
N_TEST = 500


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main() -> None:
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8), 0..16 -> 0..255
    order = np.random.default_rng(0).permutation(len(images))
    split = np.empty(len(images), dtype=object)
    split[order[:N_TEST]] = "test"
    split[order[N_TEST:]] = "train"
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(d) for d in range(10)]),
                                  "split": datasets.Value("string"), "uci_index": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict({
        "image": [{"bytes": png_bytes(img), "path": None} for img in images],
        "label": digits.target.astype(np.int64).tolist(),
        "split": split.tolist(),
        "uci_index": list(range(len(images))),
    }, features=features)
    ds.to_parquet(str(OUT))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(images)} images)")


if __name__ == "__main__":
    main()
