"""``vitbench store merge SRC... [--into DST]`` and ``vitbench store check [STORE]``: merge stores (offline nodes,
shard files; SQLite files and PostgreSQL URLs on either side) and check a store's integrity."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub, parent) -> None:
    p = sub.add_parser("store", help="merge stores, check a store's integrity", parents=[parent])
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    merge = actions.add_parser("merge", help="copy what other stores have into one (idempotent)", parents=[parent])
    merge.add_argument("sources", nargs="+", metavar="SRC", help="SQLite files or postgresql:// URLs to merge from")
    merge.add_argument("--into", metavar="DST",
                       help="the store to merge into (default: $VITBENCH_STORE, else $VITBENCH_HOME/results.sqlite)")
    merge.set_defaults(func=run_merge)
    check = actions.add_parser("check", help="integrity checks, one line per problem (exit 1 when any)",
                               parents=[parent])
    check.add_argument("target", nargs="?", metavar="STORE",
                       help="a SQLite file or postgresql:// URL (default: $VITBENCH_STORE, else "
                            "$VITBENCH_HOME/results.sqlite)")
    check.set_defaults(func=run_check)


def run_merge(args: argparse.Namespace) -> int:
    from vitbench.store import Store, check_exists, open_store, store_timeout
    from vitbench.store_admin import merge
    for source in args.sources:
        check_exists(source)  # before the destination is opened (and perhaps created)
    into = open_store(args.into)
    try:
        for source in args.sources:
            # a source is read as it is, never changed
            src = Store(source, timeout=store_timeout(), migrate=False)  # checked to exist above
            try:
                print(merge(src, into).line(into.location))
            finally:
                src.close()
    finally:
        into.close()
    return 0


def run_check(args: argparse.Namespace) -> int:
    from vitbench.store import Store, open_store, store_timeout
    from vitbench.store_admin import check, summary
    store = (open_store(existing=True) if args.target is None else
             Store(args.target, timeout=store_timeout(), migrate=False, existing=True))
    try:
        problems = check(store)
        for line in problems:
            print(line)
        if problems:
            print(f"store {store.location}: {len(problems)} problem{'s' if len(problems) != 1 else ''}",
                  file=sys.stderr)
            return 1
        print(summary(store))
        return 0
    finally:
        store.close()
