"""ImageNet metadata: the 1000 wnids in label order and RobustBench's fixed 5000-image validation subset."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from vitbench.errors import ConfigError
from vitbench.paths import package_file

WNID_RE = re.compile(r"^n\d{8}$")
SUBSETS = {"robustbench-5000": package_file("data", "files", "robustbench_imagenet_5000_ids.txt")}


@functools.lru_cache(maxsize=1)
def wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids sorted, so label i is wnids()[i] (timm's and torchvision's convention)."""
    from timm.data import ImageNetInfo
    names = tuple(ImageNetInfo().label_names())
    assert len(names) == 1000 and list(names) == sorted(names)
    return names


@functools.lru_cache(maxsize=1)
def wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids())}


def read_subset(name_or_file: str) -> list[str]:
    """Relative ids ``wnid/file`` of a named subset or of a file listing them (one per line, '#' comments)."""
    path = SUBSETS.get(name_or_file)
    if path is None:
        path = Path(name_or_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"subset {name_or_file!r} is neither a known subset "
                              f"({', '.join(SUBSETS)}) nor an existing file of ids")
    ids = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    bad = [i for i in ids if "/" not in i or not WNID_RE.match(i.split("/", 1)[0])]
    if bad:
        raise ConfigError(f"subset file {path}: line {bad[0]!r} is not 'wnid/FILE' (e.g. n01440764/x.JPEG)")
    return ids
