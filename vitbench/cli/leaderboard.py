"""``vitbench leaderboard``: tables from the store, comparisons with references, plots and RobustBench cards."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vitbench.cli._common import add_store_arg, add_threat_args, load_zoo


def add_parser(sub, parent) -> None:
    p = sub.add_parser("leaderboard", help="tables of stored results, comparisons with published leaderboards",
                       parents=[parent])
    p.add_argument("--data", help="only this dataset spec or label space (e.g. digits, imagenet)")
    add_threat_args(p, norm_help="only rows of this norm (linf or l2)", eps_help="only rows of this eps, e.g. 4/255")
    p.add_argument("--models", nargs="+", help="only these models")
    p.add_argument("--format", choices=("md", "csv", "json", "latex"), default="md")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--compare", metavar="REF",
                   help="merge with a reference leaderboard (see `vitbench list references`)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="with --compare: show local rows evaluated under another setup, flagged")
    p.add_argument("--ci", choices=("pm", "interval", "none"), default="pm",
                   help="95%% intervals in tables: 73.0 ± 4.3 (pm, the default), 73.0 [68.7, 77.3] (interval), none")
    p.add_argument("--strict-ranks", action="store_true",
                   help="number rows 1, 2, 3 even where the difference to the row above is within noise")
    p.add_argument("--all-versions", action="store_true",
                   help="also show results of weights the zoo entry no longer has, as rows NAME@SHA")
    p.add_argument("--card", metavar="NAME", help="write a RobustBench model_info JSON card for a model")
    p.add_argument("--plot", metavar="DIR", type=Path, help="write plots (PNG) into DIR")
    p.add_argument("--out", type=Path, help="write the table or card to a file instead of stdout")
    add_store_arg(p)
    p.set_defaults(func=run)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    from vitbench.errors import VitbenchError
    from vitbench.zoo.sources import atomic_write_text
    if out.is_dir():
        raise VitbenchError(f"--out {out} is a folder: name a file, e.g. --out {out / 'leaderboard.md'}")
    try:
        atomic_write_text(out, text if text.endswith("\n") else text + "\n")
    except OSError as exc:
        raise VitbenchError(f"cannot write --out {out} ({exc.strerror or exc}): name a file in a folder you can "
                            "write; nothing was written") from None
    print(f"wrote {out}", file=sys.stderr)


def _plot(runs, args: argparse.Namespace) -> None:
    """Each stored suite's plots into the --plot folder (checked writable first)."""
    from vitbench.board.plots import draw
    from vitbench.errors import VitbenchError
    from vitbench.paths import ensure_folder
    ensure_folder(args.plot, "--plot folder", fix="pass --plot a folder you can write")
    selected = [r for r in runs if (not args.models or r.model in args.models)
                and (args.data is None or args.data in (r.dataset, r.label_space))]
    try:
        for path in draw(selected, args.plot):
            print(f"wrote {path}", file=sys.stderr)
    except OSError as exc:
        raise VitbenchError(f"cannot write plots into {args.plot} ({exc.strerror or exc}): pass --plot a folder "
                            "you can write") from None


def run(args: argparse.Namespace) -> int:
    from vitbench.api import leaderboard
    from vitbench.errors import VitbenchError

    fmt = "json" if args.json else args.format
    zoo = load_zoo(args)
    board = leaderboard(data=args.data, norm=args.norm, eps=args.eps, models=args.models, compare=args.compare,
                        allow_mismatch=args.allow_mismatch, strict_ranks=args.strict_ranks,
                        all_versions=args.all_versions, zoo=zoo)
    if args.card:
        from vitbench.board.cards import card_json
        _emit(card_json(zoo.get(args.card), board.rows), args.out)
        return 0
    if args.plot:
        _plot(_current_runs(zoo), args)
    if board.comparison is not None:
        from vitbench.board.references import render_comparison
        _emit(render_comparison(board.comparison, fmt), args.out)
        return 0
    if not board.rows:
        raise VitbenchError("no stored results match; run `vitbench bench ...` first (or relax --data/--norm/--eps)")
    _emit(board.to_json() if fmt == "json" else board.render(fmt, args.ci), args.out)
    return 0


def _current_runs(zoo) -> list:
    from vitbench.api import _current, _runs
    from vitbench.board.tables import current_runs
    runs = _runs(None)
    return current_runs(runs, _current(runs, zoo))
