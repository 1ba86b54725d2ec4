"""Helpers shared by subcommands: zoo loading, eps/norm arguments (progress lives in vitbench.runtime)."""

from __future__ import annotations

import argparse

from vitbench.runtime import progress_bar, progress_enabled, progress_iter, progress_mode  # noqa: F401


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


def add_threat_args(parser: argparse.ArgumentParser, *, norm_help: str, eps_help: str) -> None:
    """--norm and --eps, with help that says what they mean for the command (attack radius, training radius)."""
    parser.add_argument("--norm", type=norm_type, help=norm_help)
    parser.add_argument("--eps", type=eps_type, help=eps_help)


def add_store_arg(parser: argparse.ArgumentParser, *, help_prefix: str = "results store") -> None:
    """--store: a SQLite file or a postgresql:// URL for this command (it overrides VITBENCH_STORE)."""
    parser.add_argument("--store", metavar="PATH_OR_URL",
                        help=f"{help_prefix}: a SQLite file or a postgresql:// URL (default: $VITBENCH_STORE, else "
                             "$VITBENCH_HOME/results.sqlite)")

