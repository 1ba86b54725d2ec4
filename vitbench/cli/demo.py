"""``vitbench demo``: the demo battery on the bundled zoo over the embedded digits set, then the leaderboard and
its site."""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_MODELS = ("digits-vit.standard", "digits-vit.light", "digits-resnet.standard", "digits-resnet.light")
DEMO_EPS = 0.1
DEMO_NORM = "linf"
DEMO_EXAMPLES = 100
DEMO_DATA = "digits"


def add_parser(sub, parent) -> None:
    from vitbench.cli.bench import add_bench_args
    p = sub.add_parser("demo", help="run the demo battery on the bundled zoo and print the leaderboard",
                       parents=[parent])
    add_bench_args(p, models=False, defaults={"data": DEMO_DATA, "preset": "demo (standard with --standard)",
                                              "n-examples": str(DEMO_EXAMPLES), "norm": DEMO_NORM,
                                              "eps": f"{DEMO_EPS:g}"})
    p.add_argument("--standard", action="store_true",
                   help="standard AutoAttack (adds FAB-T and Square: much slower) instead of APGD-CE + APGD-T")
    p.add_argument("--site", type=Path, metavar="DIR",
                   help="write the leaderboard site of the demo's dataset into DIR (default: VITBENCH_HOME/site)")
    p.set_defaults(func=run, data=DEMO_DATA, n_examples=DEMO_EXAMPLES, eps=DEMO_EPS, norm=DEMO_NORM)


def run(args: argparse.Namespace) -> int:
    import sys

    from vitbench.api import site
    from vitbench.cli._common import load_zoo
    from vitbench.cli.bench import execute, print_results
    from vitbench.suites import load_preset, preset_from_suites
    zoo = load_zoo(args)
    entries = [zoo.get(name) for name in DEMO_MODELS]
    site_dir = _site_dir(args)  # a --site that cannot hold a site fails now, not after the battery
    if args.suite:
        preset = preset_from_suites(args.suite)
    else:
        preset = load_preset(args.preset or ("standard" if args.standard else "demo"))
    print(f"vitbench demo: {len(entries)} bundled models, {args.n_examples} digits test images, "
          f"preset {preset.name}, L-inf eps {args.eps:g}", file=sys.stderr)
    results = execute(args, entries, preset)
    print_results(results, as_json=args.json)
    if not args.json and preset.name == "demo":
        print("\nAA[APGD-CE+APGD-T] is a reduced AutoAttack; `vitbench demo --standard` runs the standard version.")
    out = site(site_dir, data=args.data, zoo=zoo)
    print(f"\nsite: {out / 'index.html'}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _site_dir(args: argparse.Namespace) -> Path:
    """Where the demo writes the site of everything stored for its dataset (--site, else VITBENCH_HOME/site)."""
    from vitbench.board.site import check_out
    from vitbench.paths import home
    return check_out(args.site or home() / "site")
