"""RobustBench result cards (model_info JSON) from stored runs and zoo entries.

Fields follow RobustBench's model_info files; accuracies are percent strings there (the only place vitbench
writes numbers as strings).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from vitbench.errors import VitbenchError
from vitbench.leaderboard.tables import Row
from vitbench.threat import format_eps
from vitbench.zoo.schema import ZooEntry


def card(entry: ZooEntry, rows: Sequence[Row]) -> dict:
    """Build a card from the model's best-documented row (standard AutoAttack preferred).

    Raises:
        VitbenchError: when the model has no AutoAttack result in the store.
    """
    candidates = [r for r in rows if r.model == entry.name and r.current and r.threat is not None and r.headline is not None]
    if not candidates:
        raise VitbenchError(f"no AutoAttack result for {entry.name} in the store: run "
                            f"`vitbench bench {entry.name} --preset standard --data ...` first")
    candidates.sort(key=lambda r: (not r.headline.label.startswith("AA "), -r.n_examples))
    row = candidates[0]
    clean = row.cells.get("Clean")
    prov = entry.provenance
    reported = {p.metric: p.value for p in entry.published
                if p.eps is not None and row.threat and abs(p.eps - row.threat[1]) < 1e-9}
    footnote = []
    if not row.headline.label.startswith("AA "):
        footnote.append(f"evaluated with {row.headline.label.split(' ')[0]}, not standard AutoAttack")
    footnote.append(f"vitbench: {row.n_examples} examples of {row.dataset}")
    return {
        "link": prov.url or "",
        "name": prov.paper or entry.name,
        "authors": "",
        "additional_data": False,
        "number_forward_passes": 1,
        "dataset": entry.dataset,
        "venue": "",
        "architecture": entry.arch,
        "eps": format_eps(row.threat[1]),
        "clean_acc": f"{100 * clean.value:.2f}" if clean else "",
        "reported": f"{100 * reported['autoattack']:.2f}" if "autoattack" in reported else "",
        "autoattack_acc": f"{100 * row.headline.value:.2f}",
        "external": "",
        "footnote": "; ".join(footnote),
        "unreliable": bool(row.flags),
    }


def card_json(entry: ZooEntry, rows: Sequence[Row]) -> str:
    return json.dumps(card(entry, rows), indent=2) + "\n"
