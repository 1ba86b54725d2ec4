"""``vitbench export --samples MODEL --suite S [--data D] --out FILE``: per-sample records as parquet or JSONL."""

from __future__ import annotations

import argparse
import sys

from vitbench.cli._common import load_zoo


def add_parser(sub, parent) -> None:
    p = sub.add_parser("export", help="write stored per-sample records to parquet or JSONL", parents=[parent])
    p.add_argument("--samples", metavar="MODEL", required=True, help="the model whose per-sample records to write")
    p.add_argument("--suite", required=True, help="the suite whose run to write (its latest)")
    p.add_argument("--data", help="only runs on this dataset spec or label space")
    p.add_argument("--out", required=True, help="FILE.parquet or FILE.jsonl")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitbench.api import export_samples
    path = export_samples(args.samples, args.suite, args.out, data=args.data, zoo=load_zoo(args))
    print(f"wrote {path}", file=sys.stderr)
    return 0
