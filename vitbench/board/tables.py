"""Leaderboard rows from stored runs, and rendering (Markdown, CSV, JSON, LaTeX through tabulate).

A row is one version of a model (its weights and input pipeline) under one evaluation setup: (dataset, number of
examples, threat model). The threat model of a row comes from its AutoAttack column; runs without one (clean,
PGD sweeps, the corruption suites) join every row of the same model version, dataset and example count. For each
column the latest run wins. Columns come stored with each run (id, label, kind, attack, threat, n, interval), so
nothing here imports a suite or torch.

Rows are sorted by their headline metric (AutoAttack when present, else the first robust column, else clean
accuracy); rows whose headlines are different metrics are never ranked against each other. Within a group, a row
whose headline is not significantly different from the row above shares its rank (``2=``): an exact McNemar test on
the per-example outcomes where both rows were evaluated on the same examples, Holm-corrected over the group's
adjacent pairs, else whether the two 95% intervals overlap. ``strict=True`` numbers the rows 1, 2, 3.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from tabulate import tabulate

from vitbench import stats
from vitbench.metrics import TOPICS, Column, Metric, threat_label
from vitbench.store import RunRow

FORMATS = ("md", "csv", "json", "latex")
CI_FORMATS = ("pm", "interval", "none")
PGD_VS_AA_TOLERANCE = 0.005
#: column kinds that describe the model on its label space, not one evaluation setup: they join every row
AUX_KINDS = ("corruption", "shift", "perturbation")
#: significance level of the rank groups
RANK_ALPHA = 0.05


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
    data_fingerprint: str = ""
    dataset_size: int | None = None
    seeded: dict[str, dict[int, Column]] = field(default_factory=dict, repr=False)  # column id -> seed -> column

    @property
    def name(self) -> str:
        """The model's name, with the short weights sha256 appended for a version the zoo no longer holds."""
        return self.model if self.current else f"{self.model}@{(self.weights_sha256 or self.fingerprint)[:8]}"

    @property
    def subset(self) -> bool:
        """Whether the row covers fewer examples than its dataset holds."""
        return self.dataset_size is not None and self.n_examples < self.dataset_size

    @property
    def headline(self) -> Column | None:
        """The row's ranking metric: its strongest AutoAttack column (lowest rank), else its first robust column,
        else clean accuracy."""
        marked = sorted((c for c in self.cells.values() if c.headline), key=lambda c: (c.rank, c.id))
        if marked:
            return marked[0]
        robust = sorted(self.robust_columns(), key=lambda c: (c.rank, c.id))
        return robust[0] if robust else self.cells.get("clean/accuracy")

    def column(self, key: str) -> Column:
        """A cell by metric id (``autoattack/standard/robust_accuracy@linf:4/255``) or by its label (``AA Linf 4/255``).

        Raises:
            KeyError: naming the ids present.
        """
        if key in self.cells:
            return self.cells[key]
        for col in self.cells.values():
            if col.label == key:
                return col
        raise KeyError(f"{key!r} is not a column of {self.name} (ids: {', '.join(sorted(self.cells))})")

    def robust_columns(self) -> list[Column]:
        """Robust-accuracy columns measured on the row's own examples (no ``[n=...]`` suffix)."""
        return [c for c in self.cells.values() if c.kind == "robust" and "[n=" not in c.id]

    def threat_label(self) -> str:
        return "-" if self.threat is None else threat_label(*self.threat)


def run_columns(run: RunRow) -> list[Column]:
    """The columns a run contributes: stored with it; rebuilt through its suite for runs stored before columns
    were (that path imports the suites)."""
    if run.columns:
        return [Column.from_dict(c) for c in run.columns]
    from vitbench import _config
    from vitbench.suites import get_suite
    suite = get_suite(run.suite)
    config = _config.build(suite.Config, run.config, f"stored run {run.run_id}")
    metrics = {k: Metric.from_stored(v) for k, v in run.metrics.items()}
    return suite.columns(config, metrics)


def _latest(runs: Sequence[RunRow]) -> list[RunRow]:
    """The latest run per (model version, data, n, suite, config, seed); a sequential (``--until-ci``) run only
    where no ordinary run of the same evaluation exists (a full run supersedes the quick one)."""
    def evaluation(run: RunRow) -> tuple:
        return (run.model, run.model_fingerprint, run.data_fingerprint, run.suite,
                json.dumps(run.config, sort_keys=True), run.seed)
    keyed = [(evaluation(run), run) for run in runs]
    ordinary = {key for key, run in keyed if "sequential" not in run.flags}
    latest: dict[tuple, RunRow] = {}
    for key, run in keyed:
        if "sequential" in run.flags and key in ordinary:
            continue
        latest[key + (run.n_examples,)] = run
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
        columns = run_columns(run)
        head = next((c for c in columns if c.headline), None)
        if head is None or head.threat is None:
            floating.append((run, columns))
            continue
        row = rows.setdefault(_key(run, head.threat), _new_row(run, head.threat, versions))
        _add(row, run, columns)
    floating.sort(key=lambda t: (_is_aux(t[1]), t[0].suite == "clean"))
    for run, columns in floating:
        targets = _targets(rows, run, _is_aux(columns))
        if not targets:
            row = _new_row(run, None, versions)
            rows[_key(run, None)] = row
            targets = [row]
        for row in targets:
            _add(row, run, columns if run.n_examples == row.n_examples
                 else [c.with_n_label(run.n_examples) for c in columns])
    out = [r for r in rows.values() if _threat_matches(r, norm, eps)]
    for row in out:
        _merge_seeds(row)
        row.flags += [f for f in _cross_checks(row) if f not in row.flags]
    return sorted(out, key=_sort_key)


def _merge_seeds(row: Row) -> None:
    """A column measured under several seeds (``bench --seeds``) shows their mean, with the spread across seeds
    beside the latest run's sampling interval; per-example outcomes no longer describe one evaluation."""
    for cid, by_seed in row.seeded.items():
        if len(by_seed) < 2:
            continue
        values = [c.value for c in by_seed.values()]
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        row.cells[cid] = replace(row.cells[cid], value=mean, seeds=len(values), seed_sd=sd, outcomes=None)


def _key(run: RunRow, threat) -> tuple:
    return (run.model, run.model_fingerprint, run.data_fingerprint, run.n_examples, threat)


def _is_aux(columns: Sequence[Column]) -> bool:
    return bool(columns) and all(c.kind in AUX_KINDS for c in columns)


def _new_row(run: RunRow, threat, versions: Mapping[str, str]) -> Row:
    return Row(run.model, run.dataset, run.label_space, run.n_examples, threat, fingerprint=run.model_fingerprint,
               weights_sha256=run.weights_sha256, current=run.model_fingerprint == versions[run.model],
               data_fingerprint=run.data_fingerprint, dataset_size=run.provenance.get("dataset_size"))


def _targets(rows: dict, run: RunRow, aux: bool) -> list[Row]:
    """The rows of the same model version a run without its own threat model joins: those of the same data and
    example count; else those of the same data (any count); for corruption / shift / perturbation columns, every
    row of the model version on that label space."""
    quick = "sequential" in run.flags  # quick runs and ordinary runs never share a row
    mine = {key: row for key, row in rows.items() if key[:2] == (run.model, run.model_fingerprint)
            and ("sequential" in row.flags) == quick}
    if aux:
        return [row for row in mine.values() if row.label_space == run.label_space]
    exact = [row for (_, _, fp, n, _), row in mine.items() if (fp, n) == (run.data_fingerprint, run.n_examples)]
    return exact or [row for (_, _, fp, _, _), row in mine.items() if fp == run.data_fingerprint]


def _add(row: Row, run: RunRow, columns: Sequence[Column]) -> None:
    for col in columns:
        row.cells[col.id] = col
        row.seeded.setdefault(col.id, {})[run.seed] = col
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
    clean = row.cells.get("clean/accuracy")
    if clean is not None and any(c.value > clean.value + 1e-9 for c in row.robust_columns()):
        flags.append("robust-above-clean")
    head = next((c for c in row.cells.values() if c.headline), None)
    if head is None or head.threat is None:
        return flags
    pgd = [c for c in row.robust_columns() if (c.attack or "").startswith("PGD") and c.threat == head.threat]
    if any(c.value < head.value - PGD_VS_AA_TOLERANCE for c in pgd):
        flags.append("pgd-beats-autoattack")
    return flags


def _group(row: Row) -> tuple:
    """Rows ranked against each other: same label space, example count and headline metric."""
    head = row.headline
    kind = 3 if head is None else (0 if head.headline else (2 if head.kind == "clean" else 1))
    return (row.label_space, -row.n_examples, kind, head.id if head else "", "sequential" in row.flags)


def _sort_key(row: Row):
    head = row.headline
    value = head.value if head and head.value == head.value else -math.inf
    return _group(row) + (-value if (head is None or head.higher_is_better) else value, row.name)


def ranks(rows: Sequence[Row]) -> list[int | None]:
    """Position of each (sorted) row within its group (1, 2, 3, ...); rows whose headlines differ are never ranked
    together, and a row with no headline metric has no rank (None)."""
    out, previous, rank = [], None, 0
    for row in rows:
        if row.headline is None or "sequential" in row.flags:  # a quick --until-ci run is not ranked
            out.append(None)
            continue
        group = _group(row)
        rank = 1 if group != previous else rank + 1
        previous = group
        out.append(rank)
    return out


def adjacent_difference(upper: Row, lower: Row) -> tuple[float | None, bool]:
    """(exact McNemar p-value, None when the rows were not evaluated on the same examples; whether their
    headline intervals overlap) for two rows of one group."""
    a, b = upper.headline, lower.headline
    paired = (a.outcomes and b.outcomes and len(a.outcomes) == len(b.outcomes)
              and upper.data_fingerprint == lower.data_fingerprint)
    if paired:
        only_a = sum(x == "1" and y == "0" for x, y in zip(a.outcomes, b.outcomes, strict=True))
        only_b = sum(x == "0" and y == "1" for x, y in zip(a.outcomes, b.outcomes, strict=True))
        return stats.mcnemar_exact(only_a, only_b), False
    overlap = a.ci95 is not None and b.ci95 is not None and stats.overlap(a.ci95, b.ci95)
    return None, overlap


def rank_labels(rows: Sequence[Row], *, strict: bool = False) -> list[str | None]:
    """The rank shown for each (sorted) row: ``1``, ``2=``, ``2=``, ``4``; a row shares the rank of the row above
    when their headlines are not significantly different (see the module docstring). ``strict``: 1, 2, 3."""
    plain = ranks(rows)
    if strict:
        return [None if r is None else str(r) for r in plain]
    shown: list[int | None] = list(plain)
    for group in _groups(rows, plain):
        tests = [adjacent_difference(rows[i - 1], rows[i]) for i in group[1:]]
        adjusted = iter(stats.holm([p for p, _ in tests if p is not None]))
        for i, (p, overlap) in zip(group[1:], tests, strict=True):
            same = next(adjusted) >= RANK_ALPHA if p is not None else overlap
            if same:
                shown[i] = shown[i - 1]
    tied: dict[tuple, int] = {}
    for i, r in enumerate(shown):
        tied[(_group(rows[i]), r)] = tied.get((_group(rows[i]), r), 0) + 1
    return [None if r is None else f"{r}=" if tied[(_group(rows[i]), r)] > 1 else str(r)
            for i, r in enumerate(shown)]


def _groups(rows: Sequence[Row], plain: Sequence[int | None]) -> list[list[int]]:
    groups: list[list[int]] = []
    for i, rank in enumerate(plain):
        if rank is None:
            continue
        if rank == 1:
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


# -- rendering -------------------------------------------------------------------------------------------------

def column_order(rows: Sequence[Row]) -> list[Column]:
    """One column descriptor per id present, in rank order (then naturally by label)."""
    seen: dict[str, Column] = {}
    for row in rows:
        for col in row.cells.values():
            seen.setdefault(col.id, col)
    return sorted(seen.values(), key=lambda c: (c.rank, _natural(c.label)))


def _natural(label: str) -> tuple:
    parts = label.replace("/", " ").split()
    key = []
    for p in parts:
        try:
            key.append((0, float(p), ""))
        except ValueError:
            key.append((1, 0.0, p))
    return tuple(key)


def _number(value: float, percent: bool) -> str:
    text = f"{100 * value:.1f}" if percent else f"{value:.4f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.0"


#: a 95% interval is shown as value ± half-width when its two sides differ by at most this share of the wider one
SYMMETRY = 0.25


def cell_text(col: Column | None, ci: str = "pm") -> str:
    """A cell with its 95% interval: ``73.0 ± 4.3`` (``pm``: the interval's half-width, when it is about
    symmetric, else the interval itself, as near 0 or 100%: ``100.0 [83.9, 100.0]``), ``73.0 [68.7, 77.3]``
    (``interval``), or the value alone (``none``); a mean over seeds adds their spread."""
    if col is None or col.value != col.value:
        return ""
    text = _number(col.value, col.percent)
    if ci != "none" and col.ci95 is not None:
        lo, hi = col.ci95
        below, above = col.value - lo, hi - col.value
        if ci == "pm" and abs(above - below) <= SYMMETRY * max(above, below, 1e-12):
            text = f"{text} ± {_number((above + below) / 2, col.percent)}"
        else:
            text = f"{text} [{_number(lo, col.percent)}, {_number(hi, col.percent)}]"
    if col.seeds > 1 and col.seed_sd is not None:
        text += f" (sd {_number(col.seed_sd, col.percent)} over {col.seeds} seeds)"
    return text


def n_text(row: Row) -> str:
    """The row's number of examples, with the dataset's size when the row covers a subset of it."""
    return f"{row.n_examples} of {row.dataset_size}" if row.subset else str(row.n_examples)


def column_record(col: Column) -> dict:
    """A column as JSON: the fields ``bench --json`` gives a metric, with the column's description."""
    out = {k: v for k, v in col.to_dict().items() if k not in ("id", "outcomes")}
    out["topic"] = col.topic
    return out


def to_records(rows: Sequence[Row], *, strict: bool = False) -> list[dict]:
    """Rows as plain dicts with float fractions (the JSON output): metrics keyed by their ids."""
    return [{"rank": rank, "rank_label": label, "model": r.name, "dataset": r.dataset, "label_space": r.label_space,
             "n_examples": r.n_examples, "dataset_size": r.dataset_size, "subset": r.subset,
             "weights_sha256": r.weights_sha256, "model_fingerprint": r.fingerprint, "current": r.current,
             "threat_model": None if r.threat is None else {"norm": r.threat[0], "eps": r.threat[1]},
             "headline": None if r.headline is None else r.headline.id,
             "metrics": {cid: column_record(col) for cid, col in r.cells.items()}, "flags": r.flags, "runs": r.runs}
            for rank, label, r in zip(ranks(rows), rank_labels(rows, strict=strict), rows, strict=True)]


def _header(col: Column) -> str:
    return f"{col.label} (%)" if col.percent else col.label


def _table(rows: Sequence[Row], cols: Sequence[Column], labels: Sequence[str | None], ci: str
           ) -> tuple[list[str], list[list]]:
    header = ["#", "model", "data", "n", "threat"] + [_header(c) for c in cols]
    body = [["-" if rank is None else rank, row.name, row.dataset, n_text(row), row.threat_label()]
            + [cell_text(row.cells.get(c.id), ci) for c in cols] for rank, row in zip(labels, rows, strict=True)]
    return header, body


def _csv(rows: Sequence[Row], cols: Sequence[Column], labels: Sequence[str | None]) -> str:
    """CSV with numbers, not text: each metric's value and its interval's ends in columns of their own."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    head = ["rank", "model", "data", "n", "dataset_size", "threat"]
    for c in cols:
        head += [c.id, f"{c.id} ci95 lo", f"{c.id} ci95 hi"]
    writer.writerow(head + ["flags"])
    for rank, row in zip(labels, rows, strict=True):
        line = [rank or "", row.name, row.dataset, row.n_examples, row.dataset_size or "", row.threat_label()]
        for c in cols:
            cell = row.cells.get(c.id)
            ci = cell.ci95 if cell and cell.ci95 else ("", "")
            line += ["" if cell is None or cell.value != cell.value else repr(cell.value), *ci]
        writer.writerow(line + [", ".join(row.flags)])
    return buf.getvalue()


def render(rows: Sequence[Row], fmt: str = "md", *, title: str | None = None, ci: str = "pm",
           strict: bool = False) -> str:
    """Render rows; accuracies in percent, each with its 95% interval (``ci``: pm, interval or none). Markdown
    splits the columns into topic tables (adversarial robustness, distribution shift, analyses) that share the row
    order; CSV (numbers, interval ends in their own columns) and LaTeX give one table."""
    if fmt == "json":
        return json.dumps(to_records(rows, strict=strict), indent=2)
    cols = column_order(rows)
    labels = rank_labels(rows, strict=strict)
    if fmt == "csv":
        return _csv(rows, cols, labels)
    if fmt == "latex":
        header, body = _table(rows, cols, labels, ci)
        return tabulate(body, headers=header, tablefmt="latex_booktabs", disable_numparse=True)
    parts = [title] if title else []
    topics = list(dict.fromkeys(TOPICS.values()))
    present = [t for t in topics if any(c.topic == t for c in cols)]
    for topic in present:
        group = [c for c in cols if c.topic == topic]
        header, body = _table(rows, group, labels, ci)
        if topic == topics[0]:
            header.append("flags")
            for line, row in zip(body, rows, strict=True):
                line.append(", ".join(row.flags))
        table = tabulate(body, headers=header, tablefmt="github", disable_numparse=True)
        parts.append(f"{topic}\n\n{table}" if topic != topics[0] or len(present) > 1 else table)
    return "\n\n".join(parts)
