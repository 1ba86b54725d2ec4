"""Shared helpers for the benchmark scripts: an isolated VITBENCH_HOME, timing, ratios, passes through the model."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import Counter
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


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(CPU seconds of this process, wall seconds, result). CPU time is the comparison measure: on a shared
    virtual machine wall time varies by +-15% between identical runs, CPU time by a few percent."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, out


def best_of(repeats: int, candidates: dict[str, Callable[[], object]]) -> dict[str, tuple[float, float, object]]:
    """Run the candidates alternately ``repeats`` times; keep each one's lowest CPU time (with its wall time) and
    its last result."""
    best: dict[str, tuple[float, float, object]] = {}
    for _ in range(repeats):
        for name, fn in candidates.items():
            cpu, wall, out = timed(fn)
            if name not in best or cpu < best[name][0]:
                best[name] = (cpu, wall, out)
    return best


def paired(repeats: int, candidates: dict[str, Callable[[], object]]) -> dict[str, list[tuple[float, float, object]]]:
    """Run the candidates ``repeats`` times, the order reversed every other repeat; every run's (CPU seconds, wall
    seconds, result), per candidate. On a shared machine the median of the per-repeat ratios of two candidates
    varies less between invocations than the ratio of their best times."""
    runs: dict[str, list[tuple[float, float, object]]] = {name: [] for name in candidates}
    for r in range(repeats):
        for name in (list(candidates) if r % 2 == 0 else list(candidates)[::-1]):
            runs[name].append(timed(candidates[name]))
    return runs


def median_ratio(runs: dict[str, list[tuple[float, float, object]]], a: str, b: str) -> float:
    """The median over repeats of CPU(a) / CPU(b), each from the same repeat."""
    return statistics.median(ra[0] / rb[0] for ra, rb in zip(runs[a], runs[b]))


class PassCounter:
    """Counts passes through the model (the modules ``is_model`` accepts) by kind, with their images:
    'forward+graph', 'backward', 'forward' (no graph)."""

    def __init__(self, is_model: Callable[[object], bool]) -> None:
        self.is_model, self.calls, self.images = is_model, Counter(), Counter()

    def _add(self, kind: str, n: int) -> None:
        self.calls[kind] += 1
        self.images[kind] += n

    def _hook(self, module, inputs, output) -> None:
        if not self.is_model(module):
            return
        n = len(inputs[0])
        if output.requires_grad:
            self._add("forward+graph", n)
            output.register_hook(lambda grad: self._add("backward", len(grad)))
        else:
            self._add("forward", n)

    def count(self, fn: Callable[[], object]) -> str:
        """Run ``fn`` once, counting; returns the counts as text."""
        import torch
        self.calls.clear()
        self.images.clear()
        with torch.nn.modules.module.register_module_forward_hook(self._hook):
            fn()
        return ", ".join(f"{self.calls[k]} {k} ({self.images[k]} images)"
                         for k in ("forward+graph", "backward", "forward") if self.calls[k])
