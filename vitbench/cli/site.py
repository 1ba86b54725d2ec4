"""``vitbench site --out DIR [--data D] [--compare REF ...] [--title T]``: a static leaderboard site."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitbench.cli._common import load_zoo


def add_parser(sub, parent) -> None:
    p = sub.add_parser("site", help="write a static leaderboard site (HTML, opens from disk) from the store",
                       parents=[parent])
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="the site's folder: new, empty, or a site written before (replaced only once the new one "
                        "is complete)")
    p.add_argument("--data", help="only this dataset spec or label space (e.g. digits, imagenet)")
    p.add_argument("--compare", nargs="+", action="extend", default=[], metavar="REF",
                   help="merge with reference leaderboards (see `vitbench list references`)")
    p.add_argument("--title", help="the site's title (default: vitbench leaderboard)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitbench.api import site
    out = site(args.out, data=args.data, compare=args.compare, title=args.title, zoo=load_zoo(args))
    print(out / "index.html")
    return 0
