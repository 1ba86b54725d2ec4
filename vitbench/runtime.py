"""What long work shares at run time, whoever runs it (the CLI, the Python API, the trainer): progress reports.

Progress goes to stderr as a tqdm bar on a terminal, as plain lines when stderr is not one (CI logs, nohup), or
not at all; ``VITBENCH_PROGRESS`` chooses (0/off, 1/bar, lines).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

#: with lines progress: at most one line per this many seconds, and one at least this often while work runs
PROGRESS_INTERVAL = 30.0
_OFF, _BAR, _LINES = ("0", "false", "off", "no", ""), ("1", "true", "on", "yes", "bar"), ("lines", "log")


def progress_mode() -> str:
    """How long work reports progress: "bar" (tqdm; the default on a terminal), "lines" (the default when stderr
    is not a terminal: CI logs, nohup) or "off"; ``VITBENCH_PROGRESS`` chooses (0/off, 1/bar, lines)."""
    forced = os.environ.get("VITBENCH_PROGRESS")
    if forced is None:
        return "bar" if sys.stderr.isatty() else "lines"
    value = forced.strip().lower()
    for mode, words in (("off", _OFF), ("bar", _BAR), ("lines", _LINES)):
        if value in words:
            return mode
    from vitbench.errors import ConfigError
    raise ConfigError(f"VITBENCH_PROGRESS={forced!r} is not one of 0 (off), 1 (a bar) or lines")


def progress_enabled() -> bool:
    """Whether a tqdm bar is shown (see :func:`progress_mode`)."""
    return progress_mode() == "bar"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class LineProgress:
    """Progress as plain lines on stderr: one when work advances ``interval`` seconds or more after the last
    line (so a line per chunk when chunks are slow, else one every ``interval`` seconds), one when nothing advanced
    for ``interval`` seconds (long chunks), and a last one once any was written; each gives the share done, the
    rate and the time left. Work shorter than ``interval`` stays quiet. ``total`` and ``advance`` count work
    (e.g. cost-weighted examples); ``items`` count what the rate is given in (examples, batches)."""

    def __init__(self, total: float, desc: str, unit: str, *, interval: float | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.interval = PROGRESS_INTERVAL if interval is None else interval
        self.done = self.items = 0.0
        self._start = time.monotonic()
        self._said: float | None = None
        self._said_done = -1.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()

    def describe(self, desc: str) -> None:
        self.desc = desc

    def advance(self, work: float, items: float = 0) -> None:
        with self._lock:
            self.done += work
            self.items += items
            now = time.monotonic()
            if (work or items) and now - (self._said or self._start) >= self.interval:
                self._say(now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        with self._lock:
            if self._said is not None and self.done != self._said_done:
                self._say(time.monotonic())

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(self.interval, 5.0) if self.interval > 0 else 5.0):
            with self._lock:
                now = time.monotonic()
                if self.total > 0 and now - (self._said or self._start) >= self.interval:
                    self._say(now, still=self.done == max(self._said_done, 0.0))

    def _say(self, now: float, *, still: bool = False) -> None:
        elapsed = now - self._start
        share = min(1.0, self.done / self.total) if self.total > 0 else 0.0
        parts = [f"vitbench: {self.desc}: {100 * share:.0f}% in {_duration(elapsed)}"]
        if self.items and elapsed > 0:
            parts.append(f"{self.items:.0f} {self.unit} at {self.items / elapsed:.3g} {self.unit}/s")
        if 0 < share < 1:
            parts.append(f"about {_duration(elapsed * (1 - share) / share)} left")
        if still:
            parts.append("still working")
        print(", ".join(parts), file=sys.stderr, flush=True)
        self._said, self._said_done = now, self.done


class _BarProgress:
    """A tqdm bar on stderr with the LineProgress interface."""

    def __init__(self, total: float, desc: str, unit: str, *, leave: bool = True) -> None:
        from tqdm import tqdm
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=leave,
                         bar_format="{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")

    @property
    def total(self) -> float:
        return self._bar.total

    @total.setter
    def total(self, value: float) -> None:
        self._bar.total = value
        self._bar.refresh()

    def describe(self, desc: str) -> None:
        self._bar.set_description_str(desc)

    def advance(self, work: float, items: float = 0) -> None:
        self._bar.update(work)

    def close(self) -> None:
        self._bar.close()


class _NoProgress:
    total = 0.0

    def describe(self, desc: str) -> None:
        pass

    def advance(self, work: float, items: float = 0) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def progress_bar(total: float, desc: str, *, unit: str = "examples", leave: bool = True):
    """Progress of long work on stderr, as :func:`progress_mode` says: a tqdm bar (``leave``: kept when done),
    lines, or nothing. The object has ``total`` (settable), ``describe(text)`` and ``advance(work, items=0)``.
    """
    mode = progress_mode()
    progress = (_BarProgress(total, desc, unit, leave=leave) if mode == "bar" else
                LineProgress(total, desc, unit) if mode == "lines" else _NoProgress())
    try:
        yield progress
    finally:
        progress.close()


def progress_iter(iterable, *, total: int, desc: str, unit: str, enabled: bool = True):
    """Iterate with progress (one unit per item), as :func:`progress_bar` reports it."""
    if not enabled:
        yield from iterable
        return
    with progress_bar(total, desc, unit=unit, leave=False) as progress:
        for item in iterable:
            yield item
            progress.advance(1, 1)
