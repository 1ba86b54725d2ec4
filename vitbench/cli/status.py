"""``vitbench status``: the jobs in a store (chunks stored, leased, left) and their workers."""

from __future__ import annotations

import argparse
import json

from vitbench.cli._common import add_store_arg


def add_parser(sub, parent) -> None:
    p = sub.add_parser("status", help="chunks stored, leased and left per evaluation, and the workers on them",
                       parents=[parent])
    p.add_argument("--model", help="only this model")
    p.add_argument("--suite", help="only this suite")
    p.add_argument("--data", help="only this dataset spec or kind (e.g. digits, imagenet-val)")
    p.add_argument("--json", action="store_true", help="print machine-readable status")
    add_store_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitbench.errors import VitbenchError
    from vitbench.store import open_store
    from vitbench.store_admin import render_status, status
    store = open_store(existing=True)
    try:
        states = status(store, model=args.model, suite=args.suite, data=args.data)
    finally:
        store.close()
    if args.json:
        print(json.dumps([s.to_dict() for s in states], indent=2))
        return 0
    if not states:
        raise VitbenchError(f"store {store.location} holds no evaluation that matches; run `vitbench bench ...` "
                            "first (or relax --model/--suite/--data)")
    print(render_status(states))
    return 0
