"""``vitbench list suites|presets|recipes|datasets|references``: what is registered, one line each."""

from __future__ import annotations

import argparse

WHAT = ("suites", "presets", "recipes", "datasets", "references")


def add_parser(sub, parent) -> None:
    p = sub.add_parser("list", help="list registered suites, presets, recipes, dataset kinds, references",
                       parents=[parent])
    p.add_argument("what", choices=WHAT)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name, summary in _items(args.what):
        print(f"{name:<28} {summary}")
    return 0


def _items(what: str) -> list[tuple[str, str]]:
    if what == "suites":
        from vitbench.suites import suites
        return [(n, s.summary) for n, s in sorted(suites().items())]
    if what == "presets":
        from vitbench.suites import load_preset, preset_names
        return [(n, " ".join(load_preset(n).description.split())) for n in preset_names()]
    if what == "recipes":
        from vitbench.training.recipes import recipes
        return [(n, r.summary) for n, r in sorted(recipes().items())]
    if what == "references":
        from vitbench.board.references import load_reference, reference_names
        return [(n, load_reference(n).title) for n in reference_names()]
    from vitbench.data.specs import KINDS
    return [(k.name + (":PATH" if k.needs_location else ""),
             k.summary + (f" [options: {', '.join(k.options)}]" if k.options else ""))
            for k in sorted(KINDS.all().values(), key=lambda k: k.name)]
