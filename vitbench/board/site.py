"""A static leaderboard site generated from the store (``vitbench site``, :func:`vitbench.site`).

The site is plain files: HTML pages, one stylesheet and one small hand-written script (``site_assets/``), PNG
plots and JSON/JSONL/YAML downloads, every link relative, so it opens from disk (``file://``) or any static host
and needs no network when viewed. Pages work without JavaScript; the script adds sorting by any column and a row
filter.

- ``index.html``: a section per (dataset, threat model) with one table per topic (adversarial robustness,
  distribution shift, analyses): the rows, rank labels and numbers of ``vitbench leaderboard``, each number with
  its interval and its value in ``data-value`` (``data-ci-lo``/``data-ci-hi``) attributes; the merge with each
  ``--compare`` reference (reference rows marked, with their sources); the paired comparisons; the plots that
  draw several models; what each flag means.
- ``models/NAME.html``: the zoo entry, every stored run with its provenance, the model's plots, and downloads:
  the RobustBench card (when a standard AutoAttack result exists), the entry as YAML, the runs as JSON and the
  per-sample records of each evaluation as JSONL.
- ``compare/A--B.html``: the paired comparison (:func:`vitbench.compare`) of the two models of each pair of
  adjacent rows of a table that share examples.

The site is written into a temporary folder next to ``out`` and moved into place at the end (the previous site
renamed away, the new one renamed in, the old one removed), so a build that fails leaves the previous site as it
was. A folder that exists, is not empty and is not a vitbench site (no ``.vitbench-site`` marker) is refused.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vitbench.errors import VitbenchError
from vitbench.paths import package_file

if TYPE_CHECKING:
    from vitbench.board.compare import Comparison
    from vitbench.board.references import Comparison as ReferenceComparison
    from vitbench.board.references import Reference
    from vitbench.board.tables import Row
    from vitbench.metrics import Column
    from vitbench.store import RunRow, Store
    from vitbench.zoo.schema import ZooEntry

DEFAULT_TITLE = "vitbench leaderboard"
ASSETS = package_file("board", "site_assets")
ASSET_FILES = ("site.css", "site.js")
#: the file that marks a folder as a site vitbench wrote (and may replace)
MARKER = ".vitbench-site"

#: what every flag vitbench raises means (AutoAttack's checks, the suites' own checks, the leaderboard's)
FLAG_EXPLANATIONS: dict[str, str] = {
    "randomized-output": "AutoAttack's check: two forward passes on the same images gave different outputs, so "
                         "the model looks randomised; evaluate it with AutoAttack's rand version.",
    "softmax-output": "AutoAttack's check: the outputs look like probabilities (in [0, 1], summing to 1), not "
                      "logits; the attacks' losses expect logits, so the robust accuracy may be overestimated.",
    "dynamic-defense": "AutoAttack's check: the forward pass calls functions AutoAttack traces as a dynamic "
                       "defence; AutoAttack alone may not be enough to evaluate it.",
    "too-many-target-classes": "AutoAttack's check: more target classes were asked of APGD-T or FAB-T than the "
                               "model has classes other than the true one.",
    "too-few-classes": "AutoAttack's check: with 3 classes or fewer the (targeted) DLR loss cannot be used.",
    "zero-gradients": "AutoAttack's check: some examples have a zero input gradient, so gradient-based attacks "
                      "may fail on them and the robust accuracy may be overestimated (gradient masking).",
    "square-beat-white-box": "AutoAttack's check: the black-box Square attack lowered the robust accuracy after "
                             "the white-box attacks by more than 0.2 points, a sign of gradient masking; try "
                             "Square with more queries or an adaptive attack.",
    "attack-batch-reduced": "The AutoAttack batch was smaller than the config's (out-of-memory back-off or "
                            "--batch-size); pyautoattack's random starts depend on the batch, so the number can "
                            "differ slightly from a run at the configured batch size.",
    "accuracy-rises-with-eps": "PGD sweep check: the robust accuracy rises with eps somewhere on the curve, "
                               "which a sound attack cannot give (a larger ball holds the smaller one's examples).",
    "loss-falls-with-eps": "PGD sweep check: the adversarial loss of examples robust at two radii is lower at the "
                           "larger one: the attack is not finding the worst case (step size, gradient masking).",
    "more-steps-weaker": "PGD sweep check: more PGD steps gave a higher robust accuracy at some eps, beyond noise.",
    "pgd-beats-autoattack": "Leaderboard check: a PGD number is below the AutoAttack number at the same eps on "
                            "the same examples, so the AutoAttack evaluation was too weak.",
    "robust-above-clean": "Leaderboard check: a robust accuracy is above the clean accuracy on the same examples, "
                          "impossible for a deterministic model: the numbers do not belong together, or the model "
                          "is randomised.",
    "no-transformer-blocks": "Patch sensitivity: the model has no transformer blocks (a CNN), so the per-layer "
                             "attention stability and representation change are not measured.",
    "no-attention-maps": "Patch sensitivity: the transformer blocks' attention maps could not be captured, so "
                         "attention stability is not measured.",
    "channel-attention-maps": "Patch sensitivity: the attention maps are channel-by-channel (XCiT's cross-"
                              "covariance attention), so attention stability is that of the channel maps, not "
                              "of token attention.",
    "oracle-weaker-than-pgd": "Attack effectiveness check: a few-step PGD reached a higher loss than the oracle "
                              "attack, so the oracle is not an upper bound and the loss gaps are unreliable.",
}

PLOT_CAPTIONS = {
    "robustness_vs_eps": "Robust accuracy vs eps (PGD sweep), one line per model and number of steps.",
    "corruptions_accuracy_vs_severity": "Accuracy vs severity, one panel per corruption (severity 0 is clean).",
    "perturbations_flip_probability": "Flip probability per perturbation sequence, one bar per model.",
    "patch_sensitivity_layers": "Attention stability and representation change per transformer block under "
                                "patch occlusion.",
    "attack_effectiveness_vs_k": "Relative loss gap of PGD-k to the oracle attack vs the number of steps k.",
    "attack_effectiveness_vs_epoch": "Relative loss gap vs training epoch, per k.",
    "semantic_scores": "Semantic score per model: the panel mean (bar) and each panel model (dots).",
}
#: plots of one model (drawn on its page, never on the index)
SINGLE_MODEL_PLOTS = ("semantic_examples_",)
_URL = re.compile(r"https?://[^\s)\]>\"']+")


class SiteError(VitbenchError):
    """The site cannot be written where asked (a file, a folder that is not a site, no write access)."""


@dataclass(frozen=True)
class ReferenceTable:
    """A reference leaderboard merged with the local rows; ``mismatched``: no local row was comparable, so they
    are shown marked NOT COMPARABLE (as ``--allow-mismatch`` shows them)."""

    comparison: ReferenceComparison
    mismatched: bool


@dataclass(frozen=True)
class SiteInputs:
    """Everything a site shows, computed by :func:`vitbench.site` from one store and zoo.

    ``rows``/``labels``/``board_json``/``board_md`` are the leaderboard (``vitbench leaderboard``); ``runs`` every
    stored run (the paired comparisons rebuild rows from them, as ``vitbench compare`` does); ``shown_runs`` the
    runs of the rows' current model versions (plots, run tables, per-sample downloads).
    """

    title: str
    rows: Sequence[Row]
    labels: Sequence[str | None]
    board_json: str
    board_md: str
    runs: Sequence[RunRow]
    shown_runs: Sequence[RunRow]
    current: Mapping[str, str | None]
    entries: Mapping[str, ZooEntry]
    references: Sequence[ReferenceTable]
    store: Store
    data: str | None = None


# -- the output folder ------------------------------------------------------------------------------------------

def check_out(out: str | os.PathLike) -> Path:
    """The site folder as an absolute path, refused when it cannot become a site.

    Raises:
        SiteError: ``out`` is a file, a non-empty folder that is not a vitbench site, or its parent cannot be
            created.
    """
    path = Path(out).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise SiteError(f"--out {path} is a file: name a folder for the site (e.g. {path.parent / 'site'})")
    if path.is_dir() and not (path / MARKER).exists() and any(path.iterdir()):
        raise SiteError(f"--out {path} is a folder with other files in it and no {MARKER} marker (not a site "
                        "vitbench wrote): name a new or empty folder; nothing was changed")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SiteError(f"cannot create {path.parent} for --out ({exc.strerror or exc}): name a folder in a "
                        "directory you can write") from None
    return path


def _dir_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A fresh folder next to ``out`` to build in; moved into place when the block ends without error, removed
    (leaving ``out`` as it was) when it raises."""
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    except OSError as exc:
        raise SiteError(f"cannot write next to --out {out} ({exc.strerror or exc}): name a folder in a directory "
                        "you can write; nothing was changed") from None
    try:
        os.chmod(tmp, _dir_mode())  # mkdtemp's 0700 would hide the site from a web server's user
        yield tmp
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap(new: Path, out: Path) -> None:
    """Rename the previous site away, the new one in, then remove the previous one."""
    old = None
    try:
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old)  # onto the empty folder reserved by mkdtemp
        try:
            os.replace(new, out)
        except OSError:
            if old is not None:
                os.replace(old, out)
                old = None
            raise
    except OSError as exc:
        raise SiteError(f"cannot move the new site into {out} ({exc.strerror or exc}); the previous site is "
                        "unchanged") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_site(out: str | os.PathLike, inputs: SiteInputs) -> Path:
    """Build the site into a temporary folder next to ``out`` and move it into place.

    Returns:
        The site's folder (``index.html`` is its front page).

    Raises:
        SiteError: ``out`` cannot hold a site, or writing failed (the previous site is then left as it was).
    """
    path = check_out(out)
    with _staging(path) as tmp:
        try:
            _build(tmp, inputs)
        except OSError as exc:
            raise SiteError(f"cannot write the site ({exc.strerror or exc}: {exc.filename or tmp}); the previous "
                            f"site in {path} is unchanged") from None
    return path


# -- what the site holds ----------------------------------------------------------------------------------------

@dataclass
class _Section:
    """The rows of one (dataset, threat model), in leaderboard order, with their rank labels."""

    dataset: str
    threat: tuple[str, float] | None
    rows: list[tuple[Row, str | None]] = field(default_factory=list)
    pairs: list[_Pair] = field(default_factory=list)
    id: str = ""

    @property
    def title(self) -> str:
        threat = self.rows[0][0].threat_label() if self.threat else "no threat model (no AutoAttack run)"
        return f"{self.dataset} · {threat}"


@dataclass(frozen=True)
class _Pair:
    """The paired comparison of two models, and the page that shows it."""

    a: str
    b: str
    comparison: Comparison
    path: str  # relative to the site's root


@dataclass
class _Site:
    """What every page needs: the inputs, slugs, search texts, sections and comparisons."""

    inputs: SiteInputs
    slugs: dict[str, str]
    sections: list[_Section]
    pairs: list[_Pair]
    generated: str

    @property
    def models(self) -> list[str]:
        return list(self.slugs)

    def search_text(self, name: str) -> str:
        entry = self.inputs.entries.get(name)
        if entry is None:
            return name.lower()
        prov = entry.provenance
        words = [name, entry.arch, prov.architecture or "", prov.recipe or "", entry.dataset]
        return " ".join(w for w in words if w).lower()

    def model_href(self, name: str, root: str) -> str:
        return f"{root}models/{urllib.parse.quote(self.slugs[name])}.html"


def _slugs(names: Sequence[str]) -> dict[str, str]:
    """A file name per model (its name where it is safe; unique)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_.+-]", "_", name).lstrip(".") or "model"
        slug, i = base, 2
        while slug.lower() in used:
            slug, i = f"{base}-{i}", i + 1
        used.add(slug.lower())
        out[name] = slug
    return out


def _sections(rows: Sequence[Row], labels: Sequence[str | None]) -> list[_Section]:
    sections: dict[tuple, _Section] = {}
    for row, label in zip(rows, labels, strict=True):
        key = (row.dataset, row.threat)
        sections.setdefault(key, _Section(row.dataset, row.threat)).rows.append((row, label))
    ids = _slugs([f"setup-{s.dataset}-{s.rows[0][0].threat_label()}" for s in sections.values()])
    for section, slug in zip(sections.values(), ids.values(), strict=True):
        section.id = slug.replace("+", "_")
    return list(sections.values())


def _pairs(site: _Site) -> None:
    """The paired comparisons of adjacent rows of each section whose models share examples."""
    from vitbench.board.compare import compare_models
    inputs = site.inputs
    done: dict[tuple[str, str, str], _Pair | None] = {}
    stems: set[str] = set()
    for section in site.sections:
        for (upper, _), (lower, _) in zip(section.rows, section.rows[1:], strict=False):
            a, b = upper.model, lower.model
            key = (min(a, b), max(a, b), section.dataset)
            if a == b:
                continue
            if key not in done:
                try:
                    cmp = compare_models(inputs.runs, a, b, data=section.dataset, current=inputs.current)
                except VitbenchError:
                    done[key] = None
                    continue
                stem = f"{site.slugs[a]}--{site.slugs[b]}"
                while stem in stems:
                    stem += "-2"
                stems.add(stem)
                done[key] = _Pair(a, b, cmp, f"compare/{stem}.html")
                site.pairs.append(done[key])
            if done[key] is not None:
                section.pairs.append(done[key])


def _build(root: Path, inputs: SiteInputs) -> None:
    models = list(dict.fromkeys(row.model for row in inputs.rows))
    site = _Site(inputs, _slugs(models), _sections(inputs.rows, inputs.labels), [],
                 time.strftime("%Y-%m-%d %H:%M %Z"))
    _pairs(site)
    assets = root / "assets"
    assets.mkdir()
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, assets / name)
    _write(root / "leaderboard.json", inputs.board_json)
    _write(root / "leaderboard.md", inputs.board_md)
    shared = [p for p in _draw(inputs.shown_runs, root / "plots") if not p.name.startswith(SINGLE_MODEL_PLOTS)]
    for name in models:
        _model_files(site, name, root)
    for pair in site.pairs:
        _write(root / pair.path, _compare_page(site, pair))
        _write(root / pair.path.replace(".html", ".json"), json.dumps(pair.comparison.to_json(), indent=2) + "\n")
    _write(root / "index.html", _index_page(site, shared))
    _write(root / MARKER, json.dumps({"generator": _generator(), "built": site.generated}) + "\n")


def _generator() -> str:
    from vitbench import __version__
    return f"vitbench {__version__}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _draw(runs: Sequence[RunRow], folder: Path) -> list[Path]:
    from vitbench.board.plots import draw
    return [Path(p) for p in draw(list(runs), folder)] if runs else []


def reference_table(rows: Sequence[Row], ref: Reference, published: Mapping[str, str]) -> ReferenceTable:
    """The merge of the local rows with a reference, as ``vitbench leaderboard --compare``; when no local row is
    comparable, as ``--allow-mismatch`` shows it (local rows marked NOT COMPARABLE, unranked)."""
    from vitbench.board.references import compare
    try:
        return ReferenceTable(compare(rows, ref, published=dict(published)), False)
    except VitbenchError:
        return ReferenceTable(compare(rows, ref, allow_mismatch=True, published=dict(published)), True)


# -- HTML pieces -------------------------------------------------------------------------------------------------

def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _attrs(attrs: Mapping[str, object | None]) -> str:
    return "".join(f' {k}="{_e(v)}"' for k, v in attrs.items() if v is not None)


def _linkify(text: str) -> str:
    """Text with its URLs as links (everything escaped)."""
    out, last = [], 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;")
        out += [_e(text[last:match.start()]), f'<a href="{_e(url)}">{_e(url)}</a>']
        last = match.start() + len(url)
    return "".join(out) + _e(text[last:])


def _page(site: _Site, title: str, body: str, *, depth: int) -> str:
    root = "../" * depth
    inputs = site.inputs
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="generator" content="{_e(_generator())}">
<title>{_e(title)}</title>
<link rel="stylesheet" href="{root}assets/site.css">
<script src="{root}assets/site.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to the content</a>
<header class="site"><nav aria-label="Site"><a class="home" href="{root}index.html">{_e(inputs.title)}</a>
<a href="{root}index.html#models">Models</a> <a href="{root}index.html#flags">Flags</a></nav></header>
<main id="main">
{body}
<p id="sort-status" class="visually-hidden" aria-live="polite"></p>
</main>
<footer class="site">Generated by {_e(_generator())} on {_e(site.generated)} from {len(inputs.runs)} stored runs.
Static files: open <code>index.html</code> from disk or any static host; nothing is loaded from the network.</footer>
</body>
</html>
"""


def _wrap(table: str, caption_id: str) -> str:
    """A table in its own scrolling container (the page itself never scrolls sideways)."""
    return f'<div class="table-wrap" role="region" aria-labelledby="{caption_id}" tabindex="0">\n{table}\n</div>'


def _caption(caption_id: str, content: str) -> str:
    """A table caption (already escaped HTML) that stays in view while its table scrolls sideways."""
    return f'<caption id="{caption_id}"><span class="cap">{content}</span></caption>'


def _th(label: str, *, sort: str | None = "text", first: str | None = None, cls: str | None = None,
        extra: Mapping[str, object | None] | None = None) -> str:
    attrs = {"scope": "col", "data-sort": sort, "data-first": first, "class": cls, **(extra or {})}
    return f"<th{_attrs(attrs)}>{_e(label)}</th>"


def _value_attrs(value: float | None, ci: tuple[float, float] | None = None) -> dict[str, object | None]:
    if value is None or value != value:
        return {}
    out: dict[str, object | None] = {"data-value": repr(float(value))}
    if ci is not None:
        out["data-ci-lo"], out["data-ci-hi"] = repr(float(ci[0])), repr(float(ci[1]))
    return out


def _metric_cell(cid: str, col: Column | None, *, headline: bool) -> str:
    from vitbench.board.tables import cell_text
    if col is None or col.value != col.value:
        return f'<td class="none" data-metric="{_e(cid)}"></td>'
    attrs = {"data-metric": cid, **_value_attrs(col.value, col.ci95), "data-n": col.n, "data-method": col.method,
             "class": "headline" if headline else None}
    return f"<td{_attrs(attrs)}>{_e(cell_text(col))}</td>"


def _flag_badges(flags: Sequence[str], href: str) -> str:
    return " ".join(f'<a class="badge flag" href="{href}#flag-{_e(f)}" title="{_e(_explain(f))}">{_e(f)}</a>'
                    for f in flags)


def _explain(flag: str) -> str:
    return FLAG_EXPLANATIONS.get(flag, "No explanation recorded for this flag (see docs/battery.md).")


def _header(col: Column) -> str:
    return f"{col.label} (%)" if col.percent else col.label


def _rank_value(label: str | None) -> int | None:
    return None if label is None else int(label.rstrip("="))


# -- the index ---------------------------------------------------------------------------------------------------

def _board_table(site: _Site, section: _Section, topic: str, cols: Sequence[Column], *, flags: bool) -> str:
    from vitbench.board.tables import n_text
    table_id = f"{section.id}-{re.sub(r'[^a-z]+', '-', topic.lower()).strip('-')}"
    head = [_th("#", sort="number", first="ascending", cls="num"), _th("Model", cls="rowhead"),
            _th("n", sort="number", first="descending", cls="num")]
    head += [_th(_header(c), sort="number", first="descending" if c.higher_is_better else "ascending", cls="num",
                 extra={"data-metric": c.id, "title": c.id}) for c in cols]
    if flags:
        head.append(_th("Flags"))
    body = []
    for row, label in section.rows:
        attrs = {"data-model": row.name, "data-search": site.search_text(row.model), "data-dataset": row.dataset,
                 "data-threat": row.threat_label(), "data-n": row.n_examples}
        head_id = row.headline.id if row.headline else None
        cells = [f'<td class="num"{_attrs(_value_attrs(_rank_value(label)))}>{_e(label or "-")}</td>',
                 f'<th scope="row"><a href="{site.model_href(row.model, "")}">{_e(row.name)}</a></th>',
                 f'<td{_attrs({"data-value": row.n_examples})}>{_e(n_text(row))}</td>']
        cells += [_metric_cell(c.id, row.cells.get(c.id), headline=c.id == head_id) for c in cols]
        if flags:
            cells.append(f"<td>{_flag_badges(row.flags, '')}</td>")
        body.append(f"<tr{_attrs(attrs)}>{''.join(cells)}</tr>")
    caption = _caption(f"{table_id}-caption", f'{_e(topic)}: {_e(section.title)} '
                       f'<span class="note">({len(section.rows)} rows)</span>')
    table = (f'<table class="board sortable" id="{table_id}">\n{caption}\n<thead><tr>{"".join(head)}</tr></thead>\n'
             f'<tbody>\n' + "\n".join(body) + "\n</tbody>\n</table>")
    return _wrap(table, f"{table_id}-caption")


def _section_html(site: _Site, section: _Section) -> str:
    from vitbench.board.tables import column_order
    from vitbench.metrics import TOPICS
    rows = [row for row, _ in section.rows]
    cols = column_order(rows)
    topics = [t for t in dict.fromkeys(TOPICS.values()) if any(c.topic == t for c in cols)]
    heads = list(dict.fromkeys(r.headline.label for r in rows if r.headline))
    sizes = sorted({n for n in (r.n_examples for r in rows)})
    parts = [f'<section id="{section.id}" aria-labelledby="{section.id}-title">',
             f'<h2 id="{section.id}-title">{_e(section.title)}</h2>',
             f'<p>{len(rows)} rows on {", ".join(str(n) for n in sizes)} examples; ranked by '
             f'{_e(" / ".join(heads) or "nothing (no headline metric)")} (highlighted). '
             '<a href="#reading">How to read the tables</a></p>']
    for i, topic in enumerate(topics):
        parts.append(_board_table(site, section, topic, [c for c in cols if c.topic == topic], flags=i == 0))
    parts.append(_pairs_list(site, section))
    parts.append("</section>")
    return "\n".join(parts)


def _pairs_list(site: _Site, section: _Section) -> str:
    if not section.pairs:
        return ('<p class="note">No paired comparison: no two adjacent rows of this setup were evaluated on the '
                "same examples.</p>")
    items = []
    for pair in section.pairs:
        cmp = pair.comparison
        upper = next(r for r, _ in section.rows if r.model == pair.a)
        head = next((p for p in cmp.paired if upper.headline and p.metric == upper.headline.id), None)
        detail = "" if head is None else (f": {_e(head.label)} A − B = {100 * head.diff:+.1f} pp "
                                          f"[{100 * head.ci95[0]:+.1f}, {100 * head.ci95[1]:+.1f}], McNemar p = "
                                          f"{head.p_value:.3g}, {_e(head.verdict)}")
        items.append(f'<li><a href="{_e(pair.path)}">{_e(pair.a)} vs {_e(pair.b)}</a> '
                     f"({cmp.n_examples} shared examples){detail}</li>")
    return ("<h3>Paired comparisons</h3>\n<p class=\"note\">Each pair of adjacent rows whose models were evaluated "
            "on the same examples: the paired difference and an exact McNemar test, as "
            "<code>vitbench compare A B</code>.</p>\n<ul>\n" + "\n".join(items) + "\n</ul>")


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _ref_id(ref: Reference) -> str:
    return "ref-" + re.sub(r"[^A-Za-z0-9_-]", "-", ref.name)


def _reference_row(site: _Site, ref: Reference, entry: dict) -> str:
    """One row of a reference comparison (``references.compare``'s table entry): local rows link to their page,
    reference rows are marked and link to their source."""
    local, model = entry["source"] == "local", entry["model"]
    name = f'<a href="{site.model_href(model, "")}">{_e(model)}</a>' if local and model in site.slugs else _e(model)
    if local:
        source = '<span class="badge local">local</span> this store'
    else:
        own = next((r.source for r in ref.rows if r.model == model), None)
        first_url = next(iter(_URL.findall(ref.source)), None)
        link = (_linkify(own) if own else f'<a href="{_e(first_url)}">leaderboard</a>' if first_url
                else f'<a href="#{_ref_id(ref)}-source">as above</a>')
        source = f'<span class="badge ref">reference</span> <span class="src">{link}</span>'
    attrs = {"class": None if local else "ref", "data-source": entry["source"], "data-model": model,
             "data-search": site.search_text(model) if local else model.lower()}
    rank = entry["rank"]
    cells = [f'<td class="num"{_attrs(_value_attrs(rank))}>{"-" if rank is None else rank}</td>',
             f'<th scope="row">{name}</th>', f"<td>{source}</td>"]
    for key, signed in (("clean", False), ("robust", False), ("delta_top", True), ("delta_published", True)):
        cells.append(f"<td{_attrs(_value_attrs(entry.get(key)))}>{_pct(entry.get(key), signed)}</td>")
    cells.append(f"<td>{_e(entry['flag'])}</td>")
    return f"<tr{_attrs(attrs)}>{''.join(cells)}</tr>"


def _reference_section(site: _Site, table: ReferenceTable) -> str:
    cmp = table.comparison
    ref = cmp.ref
    sid = _ref_id(ref)
    head = [_th("#", sort="number", first="ascending", cls="num"), _th("Model", cls="rowhead"), _th("Source"),
            _th("Clean (%)", sort="number", first="descending", cls="num"),
            _th("Robust (%)", sort="number", first="descending", cls="num"),
            _th("Δ top (pp)", sort="number", first="descending", cls="num"),
            _th("Δ published (pp)", sort="number", first="descending", cls="num"), _th("Note")]
    body = [_reference_row(site, ref, entry) for entry in cmp.table]
    caption = _caption(f"{sid}-caption", f'{_e(ref.title)} <span class="note">({len(ref.rows)} reference rows, '
                       f'{sum(e["source"] == "local" for e in cmp.table)} local)</span>')
    table_html = (f'<table class="reference sortable" id="{sid}-table">\n{caption}\n<thead><tr>{"".join(head)}'
                  "</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>")
    note = ("" if not table.mismatched else
            '<p class="note">No local row was evaluated under this setup, so the local rows are shown marked NOT '
            "COMPARABLE and unranked (as <code>--allow-mismatch</code> shows them).</p>")
    left_out = "".join(f"<li>{_e(m)}: {_e(w)}</li>" for m, w in cmp.refused)
    return "\n".join([
        f'<section id="{sid}" aria-labelledby="{sid}-title">',
        f'<h2 id="{sid}-title">Compared with {_e(ref.name)}</h2>',
        f'<p id="{sid}-source">{_e(ref.title)}. Source: {_linkify(ref.source)}.</p>',
        f'<p>Reference rows are marked <span class="badge ref">reference</span>. Ranks count the reference rows and '
        f"the comparable local rows, by standard AutoAttack accuracy on {ref.n_examples} examples; a row's external "
        f"(stronger) evaluation is noted, never ranked. The same table as <code>vitbench leaderboard --compare "
        f"{_e(ref.name)}</code>.</p>", note, _wrap(table_html, f"{sid}-caption"),
        f'<p class="note">Left out (another setup):</p><ul class="note">{left_out}</ul>' if left_out else "",
        "</section>"])


def _models_section(site: _Site) -> str:
    runs: dict[str, int] = {}
    for run in site.inputs.shown_runs:
        runs[run.model] = runs.get(run.model, 0) + 1
    head = [_th("Model", cls="rowhead"), _th("Architecture"), _th("Recipe"), _th("Trained for"),
            _th("Runs", sort="number", first="descending", cls="num")]
    body = []
    for name in site.models:
        entry = site.inputs.entries.get(name)
        arch = recipe = trained = ""
        if entry is not None:
            arch = entry.provenance.architecture or entry.arch
            recipe = entry.provenance.recipe or ""
            trained = _threat_text(entry)
        body.append(f'<tr{_attrs({"data-model": name, "data-search": site.search_text(name)})}>'
                    f'<th scope="row"><a href="{site.model_href(name, "")}">{_e(name)}</a></th>'
                    f"<td>{_e(arch)}</td><td>{_e(recipe)}</td><td>{_e(trained)}</td>"
                    f'<td data-value="{runs.get(name, 0)}">{runs.get(name, 0)}</td></tr>')
    table = (f'<table class="models sortable" id="models-table">\n{_caption("models-caption", "Models")}\n'
             f'<thead><tr>{"".join(head)}</tr></thead>\n<tbody>\n' + "\n".join(body) + "\n</tbody>\n</table>")
    return (f'<section id="models" aria-labelledby="models-title">\n<h2 id="models-title">Models</h2>\n'
            f'{_wrap(table, "models-caption")}\n</section>')


def _threat_text(entry: ZooEntry) -> str:
    from vitbench.metrics import threat_label
    return "" if entry.threat_model is None else threat_label(entry.threat_model.norm, entry.threat_model.eps)


def _figures(paths: Sequence[Path], prefix: str) -> str:
    """Plots (PNG files written into the site) as figures with captions, linked as ``prefix`` + file name (a click
    opens the full-size image, for phones)."""
    figures = []
    for path in paths:
        width, height = _png_size(path)
        caption = _plot_caption(path.stem)
        src = prefix + urllib.parse.quote(path.name)
        figures.append(f'<figure><a href="{_e(src)}"><img src="{_e(src)}" alt="{_e(caption)}" width="{width}" '
                       f'height="{height}"></a><figcaption>{_e(caption)}</figcaption></figure>')
    return '<div class="plots">\n' + "\n".join(figures) + "\n</div>"


def _plot_caption(stem: str) -> str:
    if stem in PLOT_CAPTIONS:
        return PLOT_CAPTIONS[stem]
    if stem.startswith("semantic_examples_"):
        return (f"{stem[len('semantic_examples_'):]}: stored images (top) and their perturbations (bottom), with the "
                "panel's predictions.")
    return stem.replace("_", " ").capitalize() + "."


def _png_size(path: Path) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    return struct.unpack(">II", head[16:24]) if head[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)


def _flags_section(site: _Site) -> str:
    present = list(dict.fromkeys(f for row in site.inputs.rows for f in row.flags))
    shown = "".join(f'<dt id="flag-{_e(f)}"><span class="badge flag">{_e(f)}</span></dt><dd>{_e(_explain(f))}</dd>'
                    for f in present)
    every = "".join(f"<dt><code>{_e(f)}</code></dt><dd>{_e(text)}</dd>" for f, text in FLAG_EXPLANATIONS.items()
                    if f not in present)
    lead = ("<p>Flags raised on the rows above:</p>" if present else "<p>No row above carries a flag.</p>")
    return (f'<section id="flags" aria-labelledby="flags-title">\n<h2 id="flags-title">Flags</h2>\n{lead}\n'
            f'<dl class="flags">{shown}</dl>\n<details><summary>Every other flag vitbench raises</summary>'
            f'<dl class="flags">{every}</dl></details>\n</section>')


def _reading() -> str:
    return ('<section id="reading" aria-labelledby="reading-title">\n<h2 id="reading-title">How to read the tables'
            "</h2>\n<p>Accuracies are in percent with their 95% interval: <code>73.0 ± 4.3</code> (Wilson for "
            "accuracies, a bootstrap over examples for other metrics), or <code>[lo, hi]</code> where the interval "
            "is lopsided (near 0 or 100%). A rank shared by several rows (<code>2=</code>) means a row is not "
            "significantly different from the row above: an exact McNemar test on the examples both saw "
            "(Holm-corrected over adjacent pairs), else overlapping intervals. Rows ranked by different headline "
            "metrics are numbered separately. <code>40 of 500</code> marks a subset of the dataset; "
            "<code>[n=50]</code> in a header a column measured on fewer examples than its row. Click a header "
            "to sort by it; the box above the tables filters rows by model name, architecture or recipe.</p>\n"
            "</section>")


def _index_page(site: _Site, plots: Sequence[Path]) -> str:
    inputs = site.inputs
    toc = [f'<li><a href="#{s.id}">{_e(s.title)}</a></li>' for s in site.sections]
    toc += [f'<li><a href="#{_ref_id(t.comparison.ref)}">Compared with {_e(t.comparison.ref.name)}</a></li>'
            for t in inputs.references]
    toc += ['<li><a href="#models">Models</a></li>'] + (['<li><a href="#plots">Plots</a></li>'] if plots else [])
    toc += ['<li><a href="#flags">Flags</a></li>']
    scope = f" on {_e(inputs.data)}" if inputs.data else ""
    body = [f"<h1>{_e(inputs.title)}</h1>",
            f"<p>{len(site.models)} models, {len(inputs.rows)} leaderboard rows{scope}, computed from the results "
            "store. Downloads: <a href=\"leaderboard.json\">leaderboard.json</a> (what <code>vitbench leaderboard "
            f'--json</code> prints), <a href="leaderboard.md">leaderboard.md</a>.</p>',
            '<nav aria-label="Contents"><ul class="toc">' + "".join(toc) + "</ul></nav>",
            '<div class="filter" id="filter-box" hidden><label for="filter">Filter rows by name, architecture or '
            'recipe</label> <input id="filter" type="search" autocomplete="off" placeholder="e.g. vit light">'
            ' <output id="filter-count" for="filter"></output></div>']
    body += [_section_html(site, s) for s in site.sections]
    body += [_reference_section(site, t) for t in inputs.references]
    body.append(_models_section(site))
    if plots:
        body.append('<section id="plots" aria-labelledby="plots-title">\n<h2 id="plots-title">Plots</h2>\n'
                    + _figures(plots, "plots/") + "\n</section>")
    body += [_reading(), _flags_section(site)]
    return _page(site, inputs.title, "\n".join(body), depth=0)


# -- model pages -------------------------------------------------------------------------------------------------

def _model_files(site: _Site, name: str, root: Path) -> None:
    """A model's page and its downloads (plots, card, entry, runs, per-sample records)."""
    slug = site.slugs[name]
    folder = root / "models" / slug
    runs = [r for r in site.inputs.shown_runs if r.model == name]
    plots = _draw(runs, folder / "plots")
    downloads = _model_downloads(site, name, runs, folder)
    _write(root / "models" / f"{slug}.html", _model_page(site, name, runs, plots, downloads, folder))


def _model_downloads(site: _Site, name: str, runs: Sequence[RunRow], folder: Path) -> dict[str, object]:
    """Write the model's downloads; returns what was written (card, entry, runs, samples per eval, card note)."""
    import yaml
    out: dict[str, object] = {"samples": _write_samples(site.inputs.store, runs, folder / "samples")}
    entry = site.inputs.entries.get(name)
    if entry is not None:
        _write(folder / "entry.yaml", yaml.safe_dump({name: entry.to_yaml_dict()}, sort_keys=False))
        out["entry"] = "entry.yaml"
        from vitbench.board.cards import card_json
        try:
            _write(folder / "card.json", card_json(entry, site.inputs.rows))
            out["card"] = "card.json"
        except VitbenchError as exc:
            out["card_note"] = str(exc).split(":")[0]
    _write(folder / "runs.json", json.dumps([_run_record(r) for r in runs], indent=2) + "\n")
    out["runs"] = "runs.json"
    return out


def _run_record(run: RunRow) -> dict:
    return {k: v for k, v in asdict(run).items() if k != "columns"}


def _spans(store: Store, eval_key: str, n: int) -> list[tuple[int, int]]:
    """The stored chunks that tile [0, n) for an evaluation: the engine plans chunks of one size from 0, so at each
    start the planned chunk is the longest stored one ending at or before n."""
    done = store.done_chunks(eval_key)
    spans, start = [], 0
    while start < n:
        stops = [b for a, b in done if a == start and b <= n]
        if not stops:
            break
        spans.append((start, max(stops)))
        start = max(stops)
    return spans


def _write_samples(store: Store, runs: Sequence[RunRow], folder: Path) -> dict[tuple[str, int], str]:
    """One JSONL file per evaluation (eval key, n) of the runs: (example index, sample id, record) per line."""
    written: dict[tuple[str, int], str] = {}
    for run in runs:
        key = (run.eval_key, run.n_examples)
        if key in written:
            continue
        rows = store.sample_rows(run.eval_key, _spans(store, run.eval_key, run.n_examples))
        if not rows:
            continue
        fname = f"{run.suite}-{run.eval_key[:12]}-n{run.n_examples}.jsonl"
        lines = (json.dumps({"index": i, "sample_id": sid, **rec}) for i, sid, rec in rows)
        _write(folder / fname, "\n".join(lines) + "\n")
        written[key] = fname
    return written


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    """A definition list of (term, already escaped HTML) pairs, skipping empty ones."""
    items = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in pairs if v)
    return f'<dl class="facts">{items}</dl>'


def _entry_section(site: _Site, name: str, slug: str) -> str:
    import yaml
    entry = site.inputs.entries.get(name)
    if entry is None:
        return ('<section id="zoo" aria-labelledby="zoo-title"><h2 id="zoo-title">Zoo entry</h2><p>This model is '
                "not in the zoo the site was built with (a wrapped network, or an entry of another zoo file).</p>"
                "</section>")
    prov, prep, w = entry.provenance, entry.preprocessing, entry.weights
    arch_args = ", ".join(f"{k}={v}" for k, v in entry.arch_args.items())
    paper = _e(prov.paper or "")
    if prov.url:
        paper = f'{paper} <a href="{_e(prov.url)}">{_e(prov.url)}</a>' if paper else _linkify(prov.url)
    facts = _facts([
        ("Architecture", f"<code>{_e(entry.arch)}</code>" + (f" ({_e(arch_args)})" if arch_args else "")
         + (f"; {_e(prov.architecture)}" if prov.architecture else "")),
        ("Adapter", _e(entry.adapter or "")),
        ("Weights", _e(w.source)),
        ("sha256", f'<code class="sha256">{_e(w.sha256)}</code>' if w.sha256 else
         "not pinned in the entry (recorded on first verified use)"),
        ("Label space", f"{_e(entry.dataset)}, {entry.num_classes} classes"),
        ("Preprocessing", _e(f"input {prep.input_size} px, {prep.interpolation}, crop_pct {prep.crop_pct:g}, "
                             f"mean {list(prep.mean)}, std {list(prep.std)}")),
        ("Threat model", _e(_threat_text(entry) or "none (a standard model)")),
        ("Recipe", _e(prov.recipe or "")), ("Paper", paper), ("Authors", _e(prov.authors or "")),
        ("Venue", _e(prov.venue or "")), ("RobustBench id", _e(prov.robustbench_name or "")),
        ("Notes", _e(prov.notes or "")), ("Zoo file", _e(Path(entry.origin).name if entry.origin else ""))])
    parts = [f'<section id="zoo" aria-labelledby="zoo-title"><h2 id="zoo-title">Zoo entry</h2>{facts}',
             _published_table(entry)]
    for key, label in (("config", "Training config"), ("selection", "Model selection")):
        value = getattr(prov, key)
        if value:
            parts.append(f"<details><summary>{label}</summary><pre>{_e(yaml.safe_dump(value, sort_keys=False))}"
                         "</pre></details>")
    parts.append(f'<p><a href="{_e(slug)}/entry.yaml" download>The entry as YAML</a></p></section>')
    return "\n".join(parts)


def _published_table(entry: ZooEntry) -> str:
    from vitbench.metrics import threat_label
    from vitbench.threat import format_eps
    if not entry.published:
        return "<p>No published numbers in the entry.</p>"
    body = []
    for p in entry.published:
        threat = threat_label(p.norm, p.eps) if p.norm and p.eps is not None else (
            format_eps(p.eps) if p.eps is not None else "")
        body.append(f"<tr><th scope=\"row\">{_e(p.metric)}</th><td{_attrs(_value_attrs(p.value))}>"
                    f"{100 * p.value:.2f}</td><td>{_e(p.dataset)}</td><td>{_e(threat)}</td>"
                    f"<td>{_e(p.n_examples or '')}</td><td>{_linkify(p.source)}</td></tr>")
    head = "".join([_th("Metric"), _th("Value (%)", sort="number", first="descending", cls="num"), _th("Data"),
                    _th("Threat"), _th("n"), _th("Source")])
    table = (f'<table class="sortable" id="published-table">\n{_caption("published-caption", "Published numbers")}'
             f"\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>")
    return _wrap(table, "published-caption")


def _results_section(site: _Site, name: str) -> str:
    from vitbench.board.tables import cell_text, column_order, n_text
    parts = ['<section id="results" aria-labelledby="results-title"><h2 id="results-title">Results</h2>']
    for i, (row, label) in enumerate((r, lab) for r, lab in zip(site.inputs.rows, site.inputs.labels, strict=True)
                                     if r.model == name):
        section = next(s for s in site.sections if any(r is row for r, _ in s.rows))
        body = []
        for col in column_order([row]):
            attrs = {"data-metric": col.id, **_value_attrs(col.value, col.ci95)}
            body.append(f'<tr><th scope="row" title="{_e(col.id)}">{_e(_header(col))}</th>'
                        f"<td{_attrs(attrs)}>{_e(cell_text(col))}</td>"
                        f"<td class=\"num\">{_e(col.n if col.n is not None else '')}</td>"
                        f"<td>{_e(col.method or '')}</td><td>{_e(col.topic)}</td></tr>")
        head = "".join([_th("Metric"), _th("Value", sort="number", first="descending", cls="num"),
                        _th("n", sort=None, cls="num"),
                        _th("Interval", sort=None), _th("Topic")])
        cap = f"results-{i}-caption"
        caption = _caption(cap, f"{_e(row.dataset)}, {_e(n_text(row))} examples, {_e(row.threat_label())}: rank "
                                f'{_e(label or "-")} <span class="note">(<a href="../index.html#{section.id}">in '
                                "the leaderboard</a>)</span>")
        table = (f'<table class="sortable" id="results-{i}">\n{caption}\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
                 + "\n".join(body) + "\n</tbody>\n</table>")
        parts.append(_wrap(table, cap))
        if row.flags:
            parts.append(f"<p>Flags: {_flag_badges(row.flags, '../index.html')}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _runs_section(site: _Site, runs: Sequence[RunRow], slug: str, downloads: Mapping[str, object]) -> str:
    shown = {rid for row in site.inputs.rows for rid in row.runs}
    samples: Mapping[tuple[str, int], str] = downloads["samples"]  # type: ignore[assignment]
    head = "".join([_th("Run", sort="number", first="descending", cls="num"), _th("Suite"), _th("Data"),
                    _th("n", sort="number", cls="num"), _th("Seed", sort="number", cls="num"), _th("Date"),
                    _th("Seconds", sort="number", cls="num"), _th("Cached"), _th("Device"), _th("Versions"),
                    _th("Evaluation key"), _th("Records", sort=None)])
    body, details = [], []
    for run in runs:
        prov = run.provenance
        versions = ", ".join(f"{k} {v}" for k, v in sorted((prov.get("versions") or {}).items()))
        fname = samples.get((run.eval_key, run.n_examples))
        link = f'<a href="{_e(slug)}/samples/{_e(fname)}" download>JSONL</a>' if fname else ""
        mark = " (in the leaderboard)" if run.run_id in shown else ""
        body.append(f'<tr data-run="{run.run_id}"><td data-value="{run.run_id}">{run.run_id}</td>'
                    f"<td>{_e(run.suite)}{_e(mark)}</td><td>{_e(run.dataset)}</td>"
                    f'<td data-value="{run.n_examples}">{run.n_examples}</td>'
                    f'<td data-value="{run.seed}">{run.seed}</td>'
                    f"<td>{_e(run.created)}</td><td{_attrs(_value_attrs(run.seconds))}>{run.seconds:.1f}</td>"
                    f"<td>{'yes' if run.cached else 'no'}</td><td>{_e(prov.get('device', ''))}</td>"
                    f"<td>{_e(versions)}</td><td><code>{_e(run.eval_key)}</code></td><td>{link}</td></tr>")
        record = {"config": run.config, "provenance": prov, "flags": run.flags, "data_fingerprint":
                  run.data_fingerprint, "model_fingerprint": run.model_fingerprint,
                  "weights_sha256": run.weights_sha256}
        details.append(f"<details><summary>Run {run.run_id} ({_e(run.suite)}): config and provenance</summary>"
                       f"<pre>{_e(json.dumps(record, indent=2, sort_keys=True))}</pre></details>")
    table = (f'<table class="sortable" id="runs-table">\n{_caption("runs-caption", "Stored runs of this version")}'
             f'\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body) + "\n</tbody>\n</table>")
    return ('<section id="runs" aria-labelledby="runs-title"><h2 id="runs-title">Runs</h2>\n<p>Every stored run of '
            "this model version (oldest first): seconds is the run's own compute time (0 for a cache hit), the "
            "evaluation key identifies the weights, data and config; the leaderboard takes the latest run of each "
            f"config.</p>\n{_wrap(table, 'runs-caption')}\n" + "\n".join(details) + "\n</section>")


def _downloads_section(name: str, slug: str, downloads: Mapping[str, object]) -> str:
    items = []
    if "card" in downloads:
        items.append(f'<li><a href="{_e(slug)}/card.json" download>RobustBench card</a> (<code>model_info</code> '
                     "JSON from the standard AutoAttack row)</li>")
    if "entry" in downloads:
        items.append(f'<li><a href="{_e(slug)}/entry.yaml" download>Zoo entry</a> (YAML)</li>')
    items.append(f'<li><a href="{_e(slug)}/runs.json" download>Runs</a> (JSON: metrics, config, provenance)</li>')
    samples: Mapping[tuple[str, int], str] = downloads["samples"]  # type: ignore[assignment]
    for fname in samples.values():
        items.append(f'<li><a href="{_e(slug)}/samples/{_e(fname)}" download>{_e(fname)}</a> (per-sample records, '
                     "JSONL)</li>")
    note = downloads.get("card_note")
    card = f'<p class="note">No RobustBench card: {_e(note)}.</p>' if note else ""
    return ('<section id="downloads" aria-labelledby="downloads-title"><h2 id="downloads-title">Downloads</h2>\n'
            f'<ul class="downloads">{"".join(items)}</ul>{card}</section>')


def _model_page(site: _Site, name: str, runs: Sequence[RunRow], plots: Sequence[Path],
                downloads: Mapping[str, object], folder: Path) -> str:
    slug = site.slugs[name]
    entry = site.inputs.entries.get(name)
    flags = list(dict.fromkeys(f for row in site.inputs.rows if row.model == name for f in row.flags))
    summary = "" if entry is None else (
        f'<p class="muted">{_e(entry.provenance.architecture or entry.arch)} · {_e(entry.dataset)} · '
        f'{_e("trained for " + _threat_text(entry) if entry.threat_model else "no threat model")}'
        + (f" · recipe {_e(entry.provenance.recipe)}" if entry.provenance.recipe else "") + "</p>")
    pairs = [p for p in site.pairs if name in (p.a, p.b)]
    compare = "".join(f'<li><a href="../{_e(p.path)}">{_e(p.a)} vs {_e(p.b)}</a> ({p.comparison.n_examples} shared '
                      "examples)</li>" for p in pairs)
    body = [f'<p><a href="../index.html">← {_e(site.inputs.title)}</a></p>', f"<h1>{_e(name)}</h1>", summary,
            f"<p>Flags: {_flag_badges(flags, '../index.html')}</p>" if flags else "",
            '<nav aria-label="On this page"><ul class="toc"><li><a href="#results">Results</a></li>'
            '<li><a href="#zoo">Zoo entry</a></li><li><a href="#runs">Runs</a></li>'
            + ('<li><a href="#plots">Plots</a></li>' if plots else "")
            + '<li><a href="#downloads">Downloads</a></li></ul></nav>',
            _results_section(site, name), _entry_section(site, name, slug), _runs_section(site, runs, slug, downloads)]
    if plots:
        body.append('<section id="plots" aria-labelledby="plots-title"><h2 id="plots-title">Plots</h2>\n'
                    + _figures(plots, f"{urllib.parse.quote(slug)}/plots/") + "\n</section>")
    body.append(_downloads_section(name, slug, downloads))
    if compare:
        body.append('<section id="comparisons" aria-labelledby="comparisons-title"><h2 id="comparisons-title">'
                    f"Paired comparisons</h2><ul>{compare}</ul></section>")
    return _page(site, f"{name} · {site.inputs.title}", "\n".join(body), depth=1)


# -- comparison pages --------------------------------------------------------------------------------------------

def _compare_page(site: _Site, pair: _Pair) -> str:
    cmp = pair.comparison
    head = "".join([_th("Metric"), _th("n", sort="number", cls="num"),
                    _th(f"A: {cmp.a} (%)", sort="number", first="descending", cls="num"),
                    _th(f"B: {cmp.b} (%)", sort="number", first="descending", cls="num"),
                    _th("A − B (pp) [95% CI]", sort="number", first="descending", cls="num"),
                    _th("Only A / only B right", sort=None, cls="num"),
                    _th("McNemar p", sort="number", first="ascending", cls="num"), _th("Verdict")])
    body = []
    for p in cmp.paired:
        diff = f"{100 * p.diff:+.1f} [{100 * p.ci95[0]:+.1f}, {100 * p.ci95[1]:+.1f}]"
        body.append(f'<tr data-metric="{_e(p.metric)}"><th scope="row" title="{_e(p.metric)}">{_e(p.label)}</th>'
                    f'<td data-value="{p.n}">{p.n}</td><td{_attrs(_value_attrs(p.a))}>{100 * p.a:.1f}</td>'
                    f"<td{_attrs(_value_attrs(p.b))}>{100 * p.b:.1f}</td>"
                    f"<td{_attrs(_value_attrs(p.diff, p.ci95))}>{diff}</td><td class=\"num\">{p.only_a} / "
                    f"{p.only_b}</td><td{_attrs(_value_attrs(p.p_value))}>{p.p_value:.3g}</td>"
                    f"<td>{_e(p.verdict)}</td></tr>")
    caption = _caption("paired-caption", f"Paired differences on {cmp.n_examples} shared examples of "
                                         f"{_e(cmp.dataset)}")
    table = (f'<table class="sortable" id="paired-table">\n{caption}\n<thead><tr>{head}</tr></thead>\n'
             "<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>")
    json_name = Path(pair.path).with_suffix(".json").name
    links = " · ".join(f'<a href="{site.model_href(m, "../")}">{_e(m)}</a>' for m in (cmp.a, cmp.b)
                       if m in site.slugs)
    body_html = [f'<p><a href="../index.html">← {_e(site.inputs.title)}</a></p>',
                 f"<h1>{_e(cmp.a)} vs {_e(cmp.b)}</h1>", f"<p>Models: {links}</p>",
                 f"<p>On {_e(cmp.dataset)}, the {cmp.n_examples} examples both models were evaluated on. For each "
                 "accuracy both have: A − B with its 95% interval (Newcombe's interval for paired proportions) and "
                 "an exact McNemar test on the examples only one of them got right; <em>within noise</em> means "
                 f"p ≥ 0.05. The same numbers as <code>vitbench compare {_e(cmp.a)} {_e(cmp.b)} --data "
                 f"{_e(cmp.dataset)}</code>.</p>", _wrap(table, "paired-caption"),
                 f'<p><a href="{_e(json_name)}" download>The comparison as JSON</a></p>']
    return _page(site, f"{cmp.a} vs {cmp.b} · {site.inputs.title}", "\n".join(body_html), depth=1)
