"""Shared helpers for the benchmark scripts: an isolated VITBENCH_HOME, timing, ratio tables."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager


@contextmanager
def scratch_home():
    """Run with a fresh VITBENCH_HOME (no cached results)."""
    old = os.environ.get("VITBENCH_HOME")
    with tempfile.TemporaryDirectory(prefix="vitbench-bench-") as tmp:
        os.environ["VITBENCH_HOME"] = tmp
        try:
            yield tmp
        finally:
            if old is None:
                os.environ.pop("VITBENCH_HOME", None)
            else:
                os.environ["VITBENCH_HOME"] = old


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def best_of(repeats: int, candidates: dict[str, Callable[[], object]]) -> dict[str, tuple[float, object]]:
    """Run the candidates alternately ``repeats`` times; keep each one's fastest time and its last result."""
    best: dict[str, tuple[float, object]] = {}
    for _ in range(repeats):
        for name, fn in candidates.items():
            seconds, out = timed(fn)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, out)
    return best
