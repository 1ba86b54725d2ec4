"""Reference leaderboards shipped as data (``leaderboards/*.yaml``), and comparisons with local results.

Each reference row keeps its standard AutoAttack accuracy (``autoattack``) apart from a published stronger
evaluation (``external``, e.g. an adaptive attack; RobustBench's field of that name), and says when its name is not
a RobustBench model id (``robustbench_id: false``: the paper's own name for a model RobustBench does not list).

A comparison only ranks local rows evaluated under the reference's setup: the same label space (and fixed
subset), number of examples, norm, eps and attack, and ranks them by AutoAttack accuracy on both sides. Other rows
are refused with the reason, or shown flagged NOT COMPARABLE and unranked with ``--allow-mismatch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tabulate import tabulate

from vitbench import _config
from vitbench.board.tables import Row
from vitbench.errors import VitbenchError, unknown
from vitbench.metrics import is_standard_autoattack
from vitbench.paths import package_file
from vitbench.threat import ThreatModel, check_eps, parse_eps, parse_norm

REFERENCE_DIR = package_file("board", "references")


@dataclass(frozen=True)
class ReferenceRow:
    """One published model: clean and standard AutoAttack accuracy (fractions), and ``external``, the robust
    accuracy of a stronger published evaluation when there is one (never used to rank against AutoAttack runs)."""

    model: str
    clean: float
    autoattack: float
    external: float | None = None
    robustbench_id: bool = True
    source: str | None = None
    notes: str | None = None

    def __post_init__(self) -> None:
        for key in ("clean", "autoattack", "external"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"row {self.model}: {key} {value} must be a fraction in [0, 1]")

    @property
    def note(self) -> str:
        """What the comparison table says about the row (its notes, and when its name is not a RobustBench id)."""
        parts = [] if self.robustbench_id else ["not a RobustBench id (the paper's name)"]
        if self.external is not None:
            parts.append(f"external evaluation {100 * self.external:.2f}")
        return "; ".join(parts + ([self.notes] if self.notes else []))


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
        object.__setattr__(self, "eps", check_eps(self.norm, parse_eps(self.eps)))

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
    if ref.attack == "autoattack-standard" and (head is None or not is_standard_autoattack(head)):
        return f"attack {head.label.rsplit(' ', 2)[0] if head else '?'} vs standard AutoAttack"
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
    """Merge comparable local rows into the reference, ranked by AutoAttack accuracy.

    Reference rows rank by their ``autoattack`` number (their ``external`` one is shown beside it, never ranked);
    local rows by their headline. Rows shown with ``allow_mismatch`` are marked NOT COMPARABLE and get no rank, so
    the ranks count the reference rows and the comparable local rows only.

    Args:
        published: local model name -> the reference row it reproduces (from the zoo's robustbench_name), for a
            "delta to published" column.

    Raises:
        VitbenchError: when no local row is comparable and ``allow_mismatch`` is False, or there is no local row.
    """
    published = published or {}
    by_name = {r.model: r for r in ref.rows}
    entries = [{"model": r.model, "source": "reference", "clean": r.clean, "robust": r.autoattack,
                "robust_ci95": _published_interval(r.autoattack, ref.n_examples), "n_examples": ref.n_examples,
                "external": r.external, "flag": r.note, "comparable": True} for r in ref.rows]
    refused = []
    for row in rows:
        why = mismatch(row, ref)
        if why and not allow_mismatch:
            refused.append((row.model, why))
            continue
        entries.append(_local_entry(row, why, by_name.get(published.get(row.model, ""))))
    if not any(e["source"] == "local" for e in entries):
        raise VitbenchError(_nothing_to_compare(ref, refused))
    entries.sort(key=lambda e: -(e["robust"] if e["robust"] is not None else -1))
    best = max(ref.rows, key=lambda r: r.autoattack)
    top = _published_interval(best.autoattack, ref.n_examples)
    rank = 0
    for e in entries:
        rank += e["comparable"]
        e["rank"] = rank if e["comparable"] else None
        e["delta_top"] = None if e["robust"] is None else e["robust"] - best.autoattack
        e["top_within_noise"] = _within_noise(e.get("robust_ci95"), top)
    for e in entries:
        target = by_name.get(published.get(e["model"], "")) if e["source"] == "local" else None
        if target is not None:
            e["published_within_noise"] = _within_noise(
                e.get("robust_ci95"), _published_interval(target.autoattack, ref.n_examples))
    return Comparison(ref, entries, refused)


def _published_interval(value: float, n: int) -> tuple[float, float]:
    """A published accuracy's own 95% interval, from the number of examples the reference evaluated on."""
    from vitbench import stats
    return stats.wilson(round(value * n), n)


def _within_noise(a: tuple[float, float] | None, b: tuple[float, float]) -> bool | None:
    """Whether two numbers cannot be told apart by their 95% intervals (None without an interval)."""
    from vitbench import stats
    return None if a is None else stats.overlap(a, b)


def _local_entry(row: Row, why: str | None, target: ReferenceRow | None) -> dict:
    head, clean = row.headline, row.cells.get("clean/accuracy")
    entry = {"model": row.model, "source": "local", "clean": clean.value if clean else None,
             "robust": head.value if head else None, "n_examples": row.n_examples,
             "robust_ci95": head.ci95 if head and head.ci95 else None, "external": None,
             "flag": f"NOT COMPARABLE: {why}" if why else "", "comparable": why is None}
    if target is not None and entry["robust"] is not None:
        entry["delta_published"] = entry["robust"] - target.autoattack
    return entry


def _nothing_to_compare(ref: Reference, refused: list[tuple[str, str]]) -> str:
    setup = f"{ref.name} ({ref.dataset}, {ref.n_examples} examples, {ref.threat}, {ref.attack})"
    if not refused:
        return (f"nothing to compare with {setup}: no local results match the filters; run `vitbench bench ...` "
                "first (or relax --data/--models/--norm/--eps)")
    reasons = "; ".join(f"{m}: {w}" for m, w in refused)
    return f"nothing to compare with {setup}: {reasons}; use --allow-mismatch to show them flagged"


def render_comparison(cmp: Comparison, fmt: str = "md") -> str:
    if fmt == "json":
        import json
        return json.dumps({"reference": cmp.ref.name, "title": cmp.ref.title, "source": cmp.ref.source,
                           "rows": cmp.table, "refused": [{"model": m, "reason": w} for m, w in cmp.refused]},
                          indent=2)

    def pct(v):
        return "" if v is None else f"{100 * v:.2f}"

    def robust(e):
        if e["robust"] is None or not e.get("robust_ci95"):
            return pct(e["robust"])
        lo, hi = e["robust_ci95"]
        return f"{pct(e['robust'])} [{100 * lo:.1f}, {100 * hi:.1f}]"

    def delta(v, noise=None):
        return "" if v is None else f"{100 * v:+.2f}" + (" (within noise)" if noise else "")
    header = ["rank", "model", "source", "n", "clean (%)", "robust (%) [95% CI]", "Δ top (pp)", "Δ published (pp)",
              "note"]
    body = [["-" if e["rank"] is None else e["rank"], e["model"], e["source"], e["n_examples"], pct(e["clean"]),
             robust(e), delta(e["delta_top"], e.get("top_within_noise")),
             delta(e.get("delta_published"), e.get("published_within_noise")), e["flag"]] for e in cmp.table]
    fmt_name = {"md": "github", "latex": "latex_booktabs"}.get(fmt, "github")
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        csv.writer(buf).writerows([header] + body)
        return buf.getvalue()
    text = tabulate(body, headers=header, tablefmt=fmt_name, disable_numparse=True)
    notes = [f"{cmp.ref.title}; source: {cmp.ref.source}. Ranks are among the {len(cmp.ref.rows)} reference rows "
             "listed here plus the comparable local rows, by standard AutoAttack accuracy (a row's external "
             "evaluation is noted, never ranked; RobustBench's site ranks by it when present). A published number's "
             "interval is Wilson's for its reference's number of examples; a delta is within noise when the two "
             "intervals overlap."]
    notes += [f"left out {m}: {w}" for m, w in cmp.refused]
    return text + "\n\n" + "\n".join(notes) if fmt == "md" else text
