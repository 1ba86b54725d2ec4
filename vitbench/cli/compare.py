"""``vitbench compare A B [--data D] [--suite S]``: two models on the same examples, paired."""

from __future__ import annotations

import argparse

from vitbench.cli._common import load_zoo


def add_parser(sub, parent) -> None:
    p = sub.add_parser("compare", help="compare two models on the examples both were evaluated on (paired tests)",
                       parents=[parent])
    p.add_argument("a", metavar="A", help="zoo entry name")
    p.add_argument("b", metavar="B", help="zoo entry name")
    p.add_argument("--data", help="only this dataset spec or label space")
    p.add_argument("--suite", help="only this suite's metrics (with clean accuracy)")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitbench.api import compare
    cmp = compare(args.a, args.b, data=args.data, suite=args.suite, zoo=load_zoo(args))
    from vitbench.board.compare import render
    print(render(cmp, "json" if args.json else "md"))
    return 0
