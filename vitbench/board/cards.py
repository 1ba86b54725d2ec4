"""RobustBench result cards (model_info JSON) from stored runs and zoo entries.

Fields follow RobustBench's model_info files; accuracies are percent strings there (the only place vitbench
writes numbers as strings). ``autoattack_acc`` is always a standard AutoAttack result (never a reduced AutoAttack
or a PGD number); ``external`` is written only when the entry publishes an external evaluation at that eps
(RobustBench's leaderboard reads ``external`` first when present and converts it to a float). The paper facts
(authors, venue, architecture, additional data, forward passes) come from the entry's ``provenance``; the two
facts RobustBench needs as a boolean and a number are written as false / 1 when the entry leaves them unset, and
the footnote says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from vitbench.attacks.flags import CHECK_FLAGS
from vitbench.board.tables import Row
from vitbench.errors import VitbenchError
from vitbench.metrics import Column, is_standard_autoattack
from vitbench.threat import format_eps
from vitbench.zoo.schema import ZooEntry

#: row flags that make an evaluation unreliable (AutoAttack's checks, and PGD beating AutoAttack)
RELIABILITY_FLAGS = frozenset(CHECK_FLAGS.values()) | {"pgd-beats-autoattack"}


def _standard_row(entry: ZooEntry, rows: Sequence[Row]) -> tuple[Row, Column]:
    """The model's standard AutoAttack row with the most examples, and its AutoAttack column."""
    mine = [r for r in rows if r.model == entry.name and r.current and r.threat is not None]
    found = [(r, c) for r in mine for c in r.cells.values() if is_standard_autoattack(c)]
    if not found:
        others = sorted({c.label for r in mine for c in r.cells.values() if c.headline})
        seen = f" (it has only {', '.join(others)})" if others else ""
        raise VitbenchError(f"no standard AutoAttack result for {entry.name} in the store{seen}: a RobustBench card "
                            f"reports standard AutoAttack; run `vitbench bench {entry.name} --preset standard "
                            "--data ...` first")
    return max(found, key=lambda rc: rc[0].n_examples)


def _published(entry: ZooEntry, row: Row) -> dict[str, float]:
    """The entry's published numbers under the row's threat model, by metric."""
    norm, eps = row.threat
    return {p.metric: p.value for p in entry.published
            if p.eps is not None and math.isclose(p.eps, eps, rel_tol=1e-6, abs_tol=1e-9)
            and p.norm in (None, norm) and p.dataset in (row.label_space, entry.dataset)}


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def card(entry: ZooEntry, rows: Sequence[Row]) -> dict:
    """Build a card from the model's standard AutoAttack row (the one with the most examples).

    Raises:
        VitbenchError: when the model has no standard AutoAttack result in the store.
    """
    row, aa = _standard_row(entry, rows)
    clean = row.cells.get("clean/accuracy")
    prov = entry.provenance
    published = _published(entry, row)
    unreliable = [f for f in row.flags if f in RELIABILITY_FLAGS]
    assumed = [text for value, text in ((prov.additional_data, "additional_data false"),
                                        (prov.number_forward_passes, "number_forward_passes 1")) if value is None]
    footnote = [f"vitbench: {row.n_examples} examples of {row.dataset}"]
    if unreliable:
        footnote.append(f"flags: {', '.join(unreliable)}")
    if assumed:
        footnote.append(f"not recorded in the zoo entry, written as {' and '.join(assumed)}")
    out = {
        "link": prov.url or "",
        "name": prov.paper or entry.name,
        "authors": prov.authors or "",
        "additional_data": bool(prov.additional_data),
        "number_forward_passes": prov.number_forward_passes or 1,
        "dataset": entry.dataset,
        "venue": prov.venue or "",
        "architecture": prov.architecture or entry.arch,
        "eps": format_eps(row.threat[1]),
        "clean_acc": _pct(clean.value) if clean else "",
        "reported": _pct(published["autoattack"]) if "autoattack" in published else "",
        "autoattack_acc": _pct(aa.value),
    }
    if "external" in published:
        out["external"] = _pct(published["external"])
    out["footnote"] = "; ".join(footnote)
    out["unreliable"] = bool(unreliable)
    out[SIDECAR] = _intervals(clean, aa, row)
    return out


#: the card's extra field for what RobustBench's format has no place for (its loader reads only its own keys)
SIDECAR = "vitbench"


def _intervals(clean: Column | None, aa: Column, row: Row) -> dict:
    """The 95% intervals of the card's numbers, in percent, and the examples they are measured on."""
    def pct(col: Column | None):
        return None if col is None or col.ci95 is None else [round(100 * v, 2) for v in col.ci95]
    return {"n_examples": row.n_examples, "dataset_size": row.dataset_size, "interval": aa.method,
            "clean_acc_ci95": pct(clean), "autoattack_acc_ci95": pct(aa)}


def card_json(entry: ZooEntry, rows: Sequence[Row]) -> str:
    return json.dumps(card(entry, rows), indent=2) + "\n"
