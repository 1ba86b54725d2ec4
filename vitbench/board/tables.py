"""Leaderboard rows from stored runs, and rendering (Markdown, CSV, JSON, LaTeX through tabulate).

A row is one model under one evaluation setup: (model, dataset, number of examples, threat model). The threat
model of a row comes from its AutoAttack runs; runs without a single threat model (clean, PGD sweeps, later the
corruption suites) join every row of the same model, dataset and example count. For each column the latest run
wins. Rows are sorted by the headline metric (AutoAttack when present, else the row's first robust column, else
clean accuracy); rows whose headlines are different metrics (another attack, eps or example count) are never
ranked against each other: the rank restarts for each group.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from tabulate import tabulate

from vitbench import _config
from vitbench.store import RunRow
from vitbench.suites import get_suite
from vitbench.suites.base import Column
from vitbench.threat import format_eps

FORMATS = ("md", "csv", "json", "latex")
PGD_VS_AA_TOLERANCE = 0.005


@dataclass
class Row:
    """One leaderboard row: one version of a model (its weights and input pipeline) under one setup."""

    model: str
    dataset: str
    label_space: str
    n_examples: int
    threat: tuple[str, float] | None
    cells: dict[str, Column] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    fingerprint: str = ""
    weights_sha256: str | None = None
    current: bool = True

    @property
    def name(self) -> str:
        """The model's name, with the short weights sha256 appended for a version the zoo no longer holds."""
        return self.model if self.current else f"{self.model}@{(self.weights_sha256 or self.fingerprint)[:8]}"

    @property
    def headline(self) -> Column | None:
        """The row's ranking metric: its strongest AutoAttack column (lowest rank), else its first robust column,
        else clean accuracy."""
        marked = sorted((c for c in self.cells.values() if c.headline), key=lambda c: (c.rank, c.label))
        if marked:
            return marked[0]
        robust = sorted((c for c in self.robust_columns()), key=lambda c: c.rank)
        return robust[0] if robust else self.cells.get("Clean")

    def robust_columns(self) -> list[Column]:
        """Robust-accuracy columns measured on the row's own examples (no ``[n=...]`` label)."""
        return [c for c in self.cells.values() if (c.headline or 20 <= c.rank < 40) and "[n=" not in c.label]

    def threat_label(self) -> str:
        if self.threat is None:
            return "-"
        norm, eps = self.threat
        return f"{'Linf' if norm == 'linf' else 'L2'} {format_eps(eps)}"


def _latest(runs: Sequence[RunRow]) -> list[RunRow]:
    """The latest run per (model version, data, n, suite, config)."""
    latest: dict[tuple, RunRow] = {}
    for run in runs:
        latest[(run.model, run.model_fingerprint, run.data_fingerprint, run.n_examples, run.suite,
                _config.canonical_json(run.config))] = run
    return sorted(latest.values(), key=lambda r: r.run_id)


def current_versions(runs: Sequence[RunRow], current: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The version (model fingerprint) shown as each model: the zoo's current one where known, else the version
    of the model's latest run."""
    out: dict[str, str] = {}
    for run in sorted(runs, key=lambda r: r.run_id):
        out[run.model] = run.model_fingerprint
    for name, fp in (current or {}).items():
        if fp is not None and name in out:
            out[name] = fp
    return out


def current_runs(runs: Sequence[RunRow], current: Mapping[str, str | None] | None = None) -> list[RunRow]:
    """The runs of each model's current version only (for plots and cards)."""
    versions = current_versions(runs, current)
    return [r for r in runs if r.model_fingerprint == versions[r.model]]


def _rebuild(run: RunRow):
    suite = get_suite(run.suite)
    config = _config.build(suite.Config, run.config, f"stored run {run.run_id}")
    from vitbench.suites.base import Metric
    metrics = {k: Metric(v[0], v[1]) for k, v in run.metrics.items()}
    return suite, config, metrics


def build_rows(runs: Sequence[RunRow], *, data: str | None = None, norm: str | None = None,
               eps: float | None = None, models: Sequence[str] | None = None,
               current: Mapping[str, str | None] | None = None, all_versions: bool = False) -> list[Row]:
    """Group stored runs into leaderboard rows (see the module docstring).

    Args:
        current: model name -> fingerprint of the version the zoo holds now (None where unknown); runs of other
            versions (replaced weights or preprocessing) are left out, or with ``all_versions`` shown as rows of
            their own named ``NAME@SHA8``.
    """
    versions = current_versions(runs, current)
    selected = [r for r in _latest(runs)
                if (data is None or data in (r.dataset, r.label_space))
                and (not models or r.model in models)
                and (all_versions or r.model_fingerprint == versions[r.model])]
    rows: dict[tuple, Row] = {}
    floating = []
    for run in selected:
        suite, config, metrics = _rebuild(run)
        threat = suite.threat(config) if run.suite == "autoattack" else None
        if threat is None:
            floating.append((run, suite, config, metrics))
            continue
        row = rows.setdefault((run.model, run.model_fingerprint, run.data_fingerprint, run.n_examples, threat),
                              _new_row(run, threat, versions))
        _add(row, run, suite.columns(config, metrics))
    floating.sort(key=lambda t: (t[1].aux, t[0].suite == "clean"))
    for run, suite, config, metrics in floating:
        targets = _targets(rows, run, suite)
        if not targets:
            row = _new_row(run, None, versions)
            rows[(run.model, run.model_fingerprint, run.data_fingerprint, run.n_examples, None)] = row
            targets = [row]
        for row in targets:
            _add(row, run, _labelled(suite.columns(config, metrics), run, row))
    out = [r for r in rows.values() if _threat_matches(r, norm, eps)]
    for row in out:
        row.flags += [f for f in _cross_checks(row) if f not in row.flags]
    return sorted(out, key=_sort_key)


def _new_row(run: RunRow, threat, versions: Mapping[str, str]) -> Row:
    return Row(run.model, run.dataset, run.label_space, run.n_examples, threat, fingerprint=run.model_fingerprint,
               weights_sha256=run.weights_sha256, current=run.model_fingerprint == versions[run.model])


def _targets(rows: dict, run: RunRow, suite) -> list[Row]:
    """The rows of the same model version a run without its own threat model joins: those of the same data and
    example count; else those of the same data (any count); for corruption / shift / perturbation suites, every row
    of the model version on that label space."""
    mine = {key: row for key, row in rows.items() if key[:2] == (run.model, run.model_fingerprint)}
    if suite.aux:
        return [row for row in mine.values() if row.label_space == run.label_space]
    exact = [row for (_, _, fp, n, _), row in mine.items() if (fp, n) == (run.data_fingerprint, run.n_examples)]
    return exact or [row for (_, _, fp, _, _), row in mine.items() if fp == run.data_fingerprint]


def _labelled(columns: Sequence[Column], run: RunRow, row: Row) -> list[Column]:
    """Columns measured on another number of examples than the row's carry their own: "Clean [n=500]"."""
    if run.n_examples == row.n_examples:
        return list(columns)
    return [replace(c, label=f"{c.label} [n={run.n_examples}]", headline=False) for c in columns]


def _add(row: Row, run: RunRow, columns: Sequence[Column]) -> None:
    for col in columns:
        row.cells[col.label] = col
    row.flags += [f for f in run.flags if f not in row.flags]
    row.runs.append(run.run_id)


def _threat_matches(row: Row, norm: str | None, eps: float | None) -> bool:
    if norm is None and eps is None:
        return True
    if row.threat is None:
        return False
    if norm is not None and row.threat[0] != norm:
        return False
    return eps is None or math.isclose(row.threat[1], eps, rel_tol=1e-6, abs_tol=1e-9)


def _cross_checks(row: Row) -> list[str]:
    """Consistency checks between the columns of a row (all measured on the same examples of one model version):
    PGD reaching lower accuracy than AutoAttack at the same eps means the AutoAttack run was too weak; a robust
    accuracy above the clean accuracy is impossible for a deterministic model and means the numbers do not fit."""
    flags = []
    clean = row.cells.get("Clean")
    if clean is not None and any(c.value > clean.value + 1e-9 for c in row.robust_columns()):
        flags.append("robust-above-clean")
    head = next((c for c in row.cells.values() if c.headline), None)
    if head is None or row.threat is None:
        return flags
    label = head.label.split(" ", 1)[1] if " " in head.label else ""
    pgd = [c for c in row.cells.values() if c.label.startswith("PGD-") and c.label.endswith(" " + label)]
    if any(c.value < head.value - PGD_VS_AA_TOLERANCE for c in pgd):
        flags.append("pgd-beats-autoattack")
    return flags


def _group(row: Row) -> tuple:
    """Rows ranked against each other: same label space, example count and headline metric."""
    head = row.headline
    kind = 3 if head is None else (0 if head.headline else (2 if head.label == "Clean" else 1))
    return (row.label_space, -row.n_examples, kind, head.label if head else "")


def _sort_key(row: Row):
    head = row.headline
    return _group(row) + (-(head.value if head else 0.0), row.name)


def ranks(rows: Sequence[Row]) -> list[int | None]:
    """Rank of each (sorted) row within its group; rows whose headlines differ are never ranked together, and a
    row with no headline metric (e.g. only corruption columns) has no rank (None; shown as "-")."""
    out, previous, rank = [], None, 0
    for row in rows:
        if row.headline is None:
            out.append(None)
            continue
        group = _group(row)
        rank = 1 if group != previous else rank + 1
        previous = group
        out.append(rank)
    return out


# -- rendering -------------------------------------------------------------------------------------------------

def column_order(rows: Sequence[Row]) -> list[str]:
    seen: dict[str, int] = {}
    for row in rows:
        for col in row.cells.values():
            seen.setdefault(col.label, col.rank)
    return sorted(seen, key=lambda label: (seen[label], _natural(label)))


def _natural(label: str) -> tuple:
    parts = label.replace("/", " ").split()
    key = []
    for p in parts:
        try:
            key.append((0, float(p), ""))
        except ValueError:
            key.append((1, 0.0, p))
    return tuple(key)


GROUPS = ((0, 50, "Adversarial robustness"), (50, 70, "Distribution shift"), (70, 1000, "Analyses"))


def _cell(col: Column | None) -> str:
    if col is None or col.value != col.value:
        return ""
    text = f"{100 * col.value:.2f}" if col.percent else f"{col.value:.4f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.00"


def to_records(rows: Sequence[Row]) -> list[dict]:
    """Rows as plain dicts with float fractions (the JSON output)."""
    return [{"rank": rank, "model": r.name, "dataset": r.dataset, "n_examples": r.n_examples,
             "weights_sha256": r.weights_sha256, "model_fingerprint": r.fingerprint, "current": r.current,
             "threat_model": None if r.threat is None else {"norm": r.threat[0], "eps": r.threat[1]},
             "headline": None if r.headline is None else r.headline.label,
             "metrics": {label: col.value for label, col in r.cells.items()}, "flags": r.flags, "runs": r.runs}
            for rank, r in zip(ranks(rows), rows)]


def _table(rows: Sequence[Row], labels: Sequence[str]) -> tuple[list[str], list[list]]:
    percent = {lab: next(r.cells[lab].percent for r in rows if lab in r.cells) for lab in labels}
    header = ["#", "model", "data", "n", "threat"] + [f"{lab} (%)" if percent[lab] else lab for lab in labels]
    body = [["-" if rank is None else rank, row.name, row.dataset, row.n_examples, row.threat_label()]
            + [_cell(row.cells.get(lab)) for lab in labels] for rank, row in zip(ranks(rows), rows)]
    return header, body


def render(rows: Sequence[Row], fmt: str = "md", *, title: str | None = None) -> str:
    """Render rows; accuracies in percent. Markdown splits the columns into topic tables (adversarial robustness,
    distribution shift, analyses) that share the row order; CSV and LaTeX give one table."""
    if fmt == "json":
        return json.dumps(to_records(rows), indent=2)
    labels = column_order(rows)
    if fmt == "csv":
        header, body = _table(rows, labels)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header + ["flags"])
        writer.writerows(line + [", ".join(row.flags)] for line, row in zip(body, rows))
        return buf.getvalue()
    if fmt == "latex":
        header, body = _table(rows, labels)
        return tabulate(body, headers=header, tablefmt="latex_booktabs", disable_numparse=True)
    rank = {lab: next(r.cells[lab].rank for r in rows if lab in r.cells) for lab in labels}
    parts = [title] if title else []
    for lo, hi, name in GROUPS:
        group = [lab for lab in labels if lo <= rank[lab] < hi]
        if not group:
            continue
        header, body = _table(rows, group)
        if lo == 0:
            header.append("flags")
            for line, row in zip(body, rows):
                line.append(", ".join(row.flags))
        table = tabulate(body, headers=header, tablefmt="github", disable_numparse=True)
        parts.append(f"{name}\n\n{table}" if lo > 0 or len(labels) != len(group) else table)
    return "\n\n".join(parts)
