"""Helpers shared by subcommands: zoo loading, eps/norm arguments, progress bars, output."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager


def zoo_arg(args: argparse.Namespace):
    return getattr(args, "zoo", None)


def load_zoo(args: argparse.Namespace):
    from vitbench.zoo.schema import load_zoo as _load
    return _load(zoo_arg(args), require_user=zoo_arg(args) is not None)


def eps_type(text: str) -> float:
    from vitbench.threat import parse_eps
    return parse_eps(text)


def norm_type(text: str) -> str:
    from vitbench.threat import parse_norm
    return parse_norm(text)


def add_threat_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--norm", type=norm_type, help="linf or l2 (default: the preset's, else the model's, else linf)")
    parser.add_argument("--eps", type=eps_type, help="radius as a float or fraction, e.g. 4/255 or 0.5")


def progress_enabled() -> bool:
    forced = os.environ.get("VITBENCH_PROGRESS")
    if forced is not None:
        return forced not in ("0", "", "false")
    return sys.stderr.isatty()


@contextmanager
def progress_bar(total: float, desc: str):
    """A tqdm bar on stderr (quiet when stderr is not a terminal unless VITBENCH_PROGRESS=1)."""
    from tqdm import tqdm
    bar = tqdm(total=total, desc=desc, unit="work", disable=not progress_enabled(), file=sys.stderr,
               dynamic_ncols=True, bar_format="{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")
    try:
        yield bar
    finally:
        bar.close()
