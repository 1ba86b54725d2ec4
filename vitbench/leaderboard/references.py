"""Reference leaderboards shipped as data (``leaderboards/*.yaml``), and comparisons with local results.

A comparison only ranks local rows evaluated under the reference's setup: the same label space (and fixed
subset), number of examples, norm, eps and attack. Other rows are refused with the reason, or shown flagged with
``--allow-mismatch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tabulate import tabulate

from vitbench import _config
from vitbench.errors import VitbenchError, unknown
from vitbench.leaderboard.tables import Row
from vitbench.paths import package_file
from vitbench.threat import ThreatModel, parse_eps, parse_norm

REFERENCE_DIR = package_file("leaderboard", "references")


@dataclass(frozen=True)
class ReferenceRow:
    model: str
    clean: float
    robust: float
    source: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class Reference:
    """A published leaderboard: its setup and rows (accuracies as fractions), each with a source."""

    title: str
    dataset: str
    n_examples: int
    norm: str
    eps: float
    attack: str
    source: str
    rows: tuple[ReferenceRow, ...]
    subset: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm))
        object.__setattr__(self, "eps", parse_eps(self.eps))

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel(self.norm, self.eps)  # type: ignore[arg-type]


def reference_names() -> list[str]:
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.yaml"))


def load_reference(name: str) -> Reference:
    """A shipped reference by name (a unique prefix ending at a dash is enough: ``robustbench-imagenet``)."""
    names = reference_names()
    matches = [n for n in names if n == name] or [n for n in names if n.startswith(name + "-")]
    if len(matches) != 1:
        if len(matches) > 1:
            raise VitbenchError(f"reference {name!r} is ambiguous: {', '.join(matches)}")
        raise unknown("reference leaderboard", name, names)
    path = REFERENCE_DIR / f"{matches[0]}.yaml"
    doc = _config.load_yaml(path.read_text(), str(path))
    doc = dict(doc, name=matches[0])
    return _config.build(Reference, doc, str(path))


def mismatch(row: Row, ref: Reference) -> str | None:
    """Why a local row is not comparable with a reference (None when it is)."""
    if row.label_space != ref.dataset:
        return f"dataset {row.label_space} vs {ref.dataset}"
    split = _split_of(row.dataset)
    if split not in (None, "test"):
        return f"split {split} vs the test set"
    if ref.subset and f"subset={ref.subset}" not in row.dataset:
        return f"data {row.dataset} is not the {ref.subset} subset"
    if row.n_examples != ref.n_examples:
        return f"{row.n_examples} examples vs {ref.n_examples}"
    if row.threat is None:
        return "no AutoAttack run"
    if row.threat[0] != ref.norm or not math.isclose(row.threat[1], ref.eps, rel_tol=1e-6, abs_tol=1e-9):
        return f"threat {row.threat_label()} vs {ref.threat}"
    head = row.headline
    if ref.attack == "autoattack-standard" and (head is None or not head.label.startswith("AA ")):
        return f"attack {head.label.split(' ')[0] if head else '?'} vs standard AutoAttack"
    return None


def _split_of(spec: str) -> str | None:
    """The ``split=`` option of a dataset spec, if any (published leaderboards use test / validation sets)."""
    import urllib.parse
    query = spec.partition("?")[2]
    return dict(urllib.parse.parse_qsl(query)).get("split") if query else None


@dataclass
class Comparison:
    ref: Reference
    table: list[dict]
    refused: list[tuple[str, str]]


def compare(rows: Sequence[Row], ref: Reference, *, allow_mismatch: bool = False,
            published: dict[str, str] | None = None) -> Comparison:
    """Merge comparable local rows into the reference, ranked by robust accuracy.

    Args:
        published: local model name -> the reference row it reproduces (from the zoo's robustbench_name), for a
            "delta to published" column.

    Raises:
        VitbenchError: when no local row is comparable and ``allow_mismatch`` is False.
    """
    published = published or {}
    by_name = {r.model: r for r in ref.rows}
    entries, refused = [], []
    for r in ref.rows:
        entries.append({"model": r.model, "source": "reference", "clean": r.clean, "robust": r.robust,
                        "flag": r.notes or ""})
    for row in rows:
        why = mismatch(row, ref)
        if why and not allow_mismatch:
            refused.append((row.model, why))
            continue
        head = row.headline
        clean = row.cells.get("Clean")
        entry = {"model": row.model, "source": "local", "clean": clean.value if clean else None,
                 "robust": head.value if head else None, "flag": f"NOT COMPARABLE: {why}" if why else ""}
        target = by_name.get(published.get(row.model, ""))
        if target is not None and entry["robust"] is not None:
            entry["delta_published"] = entry["robust"] - target.robust
        entries.append(entry)
    if not any(e["source"] == "local" for e in entries):
        reasons = "; ".join(f"{m}: {w}" for m, w in refused) or "no local results"
        raise VitbenchError(f"nothing to compare with {ref.name} ({ref.dataset}, {ref.n_examples} examples, "
                            f"{ref.threat}, {ref.attack}): {reasons}; use --allow-mismatch to show them flagged")
    entries.sort(key=lambda e: -(e["robust"] if e["robust"] is not None else -1))
    top = max(r.robust for r in ref.rows)
    for rank, e in enumerate(entries, 1):
        e["rank"] = rank
        e["delta_top"] = None if e["robust"] is None else e["robust"] - top
    return Comparison(ref, entries, refused)


def render_comparison(cmp: Comparison, fmt: str = "md") -> str:
    if fmt == "json":
        import json
        return json.dumps({"reference": cmp.ref.name, "title": cmp.ref.title, "source": cmp.ref.source,
                           "rows": cmp.table, "refused": [{"model": m, "reason": w} for m, w in cmp.refused]},
                          indent=2)

    def pct(v):
        return "" if v is None else f"{100 * v:.2f}"

    def delta(v):
        return "" if v is None else f"{100 * v:+.2f}"
    header = ["rank", "model", "source", "clean (%)", "robust (%)", "Δ top (pp)", "Δ published (pp)", "note"]
    body = [[e["rank"], e["model"], e["source"], pct(e["clean"]), pct(e["robust"]), delta(e["delta_top"]),
             delta(e.get("delta_published")), e["flag"]] for e in cmp.table]
    fmt_name = {"md": "github", "latex": "latex_booktabs"}.get(fmt, "github")
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        csv.writer(buf).writerows([header] + body)
        return buf.getvalue()
    text = tabulate(body, headers=header, tablefmt=fmt_name, disable_numparse=True)
    notes = [f"{cmp.ref.title}; source: {cmp.ref.source}. Ranks are among the {len(cmp.ref.rows)} reference rows "
             "listed here plus the local rows."]
    notes += [f"left out {m}: {w}" for m, w in cmp.refused]
    return text + "\n\n" + "\n".join(notes) if fmt == "md" else text
