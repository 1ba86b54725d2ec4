"""``vitbench``: the entry point. Errors from bad input print one line on stderr and exit with status 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

SUBCOMMANDS = ("zoo", "list", "bench", "leaderboard", "compare", "export", "site", "status", "store", "train",
               "analyze", "demo")
_MODULES = {"list": "listing"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"vitbench: error: {message} (see `{self.prog} --help`)\n")


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand accepts (before or after the subcommand name)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--zoo", default=argparse.SUPPRESS,
                        help="user zoo file laid over the bundled zoo (default: $VITBENCH_ZOO or ./model_zoo.yaml)")
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logs")
    parent.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="info logs")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parent = common_options()
    parser = _Parser(prog="vitbench", description="Benchmark and train robust image classifiers.",
                     parents=[parent])
    from vitbench import __version__
    parser.add_argument("--version", action="version", version=f"vitbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"vitbench.cli.{_MODULES.get(name, name)}")
        module.add_parser(sub, parent)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if getattr(args, "debug", False) else (
        logging.INFO if getattr(args, "verbose", False) else logging.WARNING)
    logging.basicConfig(level=level, format="vitbench: %(message)s", stream=sys.stderr)
    if level > logging.DEBUG:
        for noisy in ("auto-attack", "datasets", "timm", "urllib3", "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _end_distributed() -> None:
    """Leave a torchrun process group cleanly (no-op in a single process)."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    from vitbench.errors import VitbenchError
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _configure_logging(args)
        from vitbench.store import using_store
        try:
            with using_store(getattr(args, "store", None)):
                return int(args.func(args) or 0)
        finally:
            _end_distributed()
    except VitbenchError as exc:
        if getattr(locals().get("args"), "debug", False):
            raise
        print(f"vitbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vitbench: interrupted; finished chunks are stored: run the same command again to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
