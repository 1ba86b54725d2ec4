"""The static site (``vitbench site``): the files it writes, its atomic replacement and its errors; and, where
Chromium, chromedriver and selenium are installed, the site driven in a real browser from disk.

The browser tests install nothing: they skip (naming what is missing) without the browser, or fail with
VITBENCH_REQUIRE_BROWSER=1 (as CI sets it). With VITBENCH_SITE_SCREENSHOTS=DIR they also copy their screenshots
into DIR (docs/images/site.png is the desktop one: ``VITBENCH_SITE_SCREENSHOTS=/tmp/shots pytest
tests/test_site.py -k screenshots``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import vitbench
from vitbench.board import site as web
from vitbench.board.tables import cell_text
from vitbench.metrics import Column, threat_label

MODELS = ("digits-vit.light", "digits-resnet.light", "digits-vit.standard")
N = 40
REFERENCE = "robustbench-imagenet-linf-4"
#: a quick battery: every topic table, three plots; the standard model also gets a standard AutoAttack run
#: (cheap on a non-robust model) so that it has a RobustBench card
PRESET = """description: the site tests' battery
suites:
  - suite: clean
  - suite: autoattack
    version: custom
    attacks: [apgd-ce]
  - suite: pgd_sweep
    eps_factors: [0.5, 1.0, 2.0]
    steps: [5]
  - suite: corruptions
    corruptions: [gaussian_noise, brightness]
    severities: [1, 3]
  - suite: patch_sensitivity
    patch_size: 8
"""


@contextlib.contextmanager
def _home(home: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VITBENCH_HOME", str(home))
        mp.setenv("VITBENCH_PROGRESS", "0")
        mp.delenv("VITBENCH_STORE", raising=False)
        mp.delenv("VITBENCH_ZOO", raising=False)
        mp.chdir(home)
        yield mp


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A home whose store holds the three models' runs on the first N digits images."""
    home = tmp_path_factory.mktemp("site-home")
    preset = home / "site-test.yaml"
    preset.write_text(PRESET)
    torch.set_num_threads(1)
    with _home(home):
        vitbench.evaluate_many(MODELS, "digits", preset=str(preset), eps=0.1, n_examples=N, device="cpu")
        vitbench.evaluate("digits-vit.standard", "digits", suites=["autoattack"], eps=0.1, n_examples=N,
                          device="cpu")
    return home


@pytest.fixture(scope="module")
def built(home, tmp_path_factory) -> Path:
    """The site of that store, with the RobustBench ImageNet reference merged in."""
    out = tmp_path_factory.mktemp("site-out") / "site"
    with _home(home):
        assert vitbench.site(out, compare=[REFERENCE]) == out
    return out


@pytest.fixture(scope="module")
def board(home) -> list[dict]:
    """What ``vitbench leaderboard --json`` prints for that store."""
    from vitbench.cli.main import main
    buf = io.StringIO()
    with _home(home), contextlib.redirect_stdout(buf):
        assert main(["leaderboard", "--json"]) == 0
    return json.loads(buf.getvalue())


class _Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the text inside each element id'd."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(path: Path) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tags


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- without a browser ----------------------------------------------------------------------------------------

def test_the_site_holds_every_page_and_download(built, home, board):
    assert json.loads((built / "leaderboard.json").read_text()) == board
    for name in ("index.html", "assets/site.css", "assets/site.js", web.MARKER, "plots/robustness_vs_eps.png"):
        assert (built / name).is_file(), name
    from vitbench.store import open_store
    store = open_store(home / "results.sqlite")
    try:
        runs = store.runs()
        for model in MODELS:
            assert (built / "models" / f"{model}.html").is_file()
            folder = built / "models" / model
            assert {p.name for p in (folder / "plots").iterdir()} == {
                "robustness_vs_eps.png", "corruptions_accuracy_vs_severity.png", "patch_sensitivity_layers.png"}
            mine = [r for r in runs if r.model == model]
            saved = {json.loads(line)["index"] for p in (folder / "samples").iterdir()
                     for line in p.read_text().splitlines()}
            assert saved == set(range(N)) and len(list((folder / "samples").iterdir())) == len(mine)
            run = mine[0]
            file = next((folder / "samples").glob(f"{run.suite}-{run.eval_key[:12]}-n{N}.jsonl"))
            lines = [json.loads(line) for line in file.read_text().splitlines()]
            stored = store.sample_rows(run.eval_key, [(0, N)])
            assert lines == [{"index": i, "sample_id": sid, **rec} for i, sid, rec in stored]
            assert [r["run_id"] for r in json.loads((folder / "runs.json").read_text())] == [r.run_id for r in mine]
    finally:
        store.close()
    from vitbench.board.cards import card
    from vitbench.board.tables import build_rows
    from vitbench.zoo.schema import load_zoo
    cards = {m for m in MODELS if (built / "models" / m / "card.json").exists()}
    assert cards == {"digits-vit.standard"}  # the only standard AutoAttack result
    rows = build_rows(runs)
    got = json.loads((built / "models" / "digits-vit.standard" / "card.json").read_text())
    assert got == card(load_zoo().get("digits-vit.standard"), rows)
    pairs = sorted(p.name for p in (built / "compare").glob("*.html"))
    order = [r["model"] for r in board]
    expected = sorted(f"{a}--{b}.html" for a, b in zip(order, order[1:], strict=False))
    assert pairs == expected


def test_pages_are_semantic_and_load_nothing_from_the_network(built):
    pages = [built / "index.html", *(built / "models").glob("*.html"), *(built / "compare").glob("*.html")]
    assert len(pages) == 1 + len(MODELS) + 2
    for page in pages:
        tags = _tags(page)
        tables = sum(t == "table" for t, _ in tags)
        assert tables and sum(t == "caption" for t, _ in tags) == tables, page
        assert sum(t == "thead" for t, _ in tags) == tables
        assert all(a.get("scope") in ("col", "row") for t, a in tags if t == "th"), page
        assert ("html", {"lang": "en"}) in tags and any(a.get("name") == "viewport" for t, a in tags if t == "meta")
        for tag, attrs in tags:
            ref = attrs.get("src") if tag in ("img", "script") else attrs.get("href") if tag == "link" else None
            if ref is not None:
                assert not re.match(r"(https?:)?//", ref), (page, ref)
                assert (page.parent / ref).is_file(), (page, ref)
            if tag == "a" and not re.match(r"(https?:|#)", attrs["href"]):
                assert (page.parent / attrs["href"].split("#")[0]).exists(), (page, attrs["href"])


def test_every_flag_vitbench_raises_is_explained():
    """Flags are strings in the code: every one the suites, AutoAttack's checks and the leaderboard raise has an
    explanation on the site."""
    from vitbench.attacks.flags import CHECK_FLAGS
    root = Path(vitbench.__file__).parent
    found = set(CHECK_FLAGS.values())
    for path in root.rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r'flags\.append\("([a-z0-9-]+)"\)', text))
        found |= set(re.findall(r'^FLAG_[A-Z_]+ = "([a-z0-9-]+)"', text, flags=re.M))
        found |= set(re.findall(r'return \["([a-z0-9-]+)"\] if', text))
    assert len(found) >= 15
    assert found <= set(web.FLAG_EXPLANATIONS), found - set(web.FLAG_EXPLANATIONS)


def test_a_failed_build_leaves_the_previous_site_byte_identical(home, tmp_path, monkeypatch):
    out = tmp_path / "public" / "site"
    with _home(home) as mp:
        vitbench.site(out)
        before = _tree(out)
        real = web._compare_page
        calls = []

        def fail_midway(site, pair):
            calls.append(pair)
            if len(calls) == 2:  # the index, the model pages and a comparison page are written by now
                raise RuntimeError("disk on fire")
            return real(site, pair)
        mp.setattr(web, "_compare_page", fail_midway)
        with pytest.raises(RuntimeError, match="disk on fire"):
            vitbench.site(out, title="a new title")
        assert len(calls) == 2
        assert _tree(out) == before
        assert sorted(p.name for p in out.parent.iterdir()) == ["site"]  # no half-built or old folder left
        mp.setattr(web, "_compare_page", real)
        vitbench.site(out, title="a new title")
    assert "a new title" in (out / "index.html").read_text() and _tree(out) != before
    assert sorted(p.name for p in out.parent.iterdir()) == ["site"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_bad_outputs_and_references_are_one_line_errors(home, tmp_path, cli, monkeypatch):
    afile = tmp_path / "a-file"
    afile.write_text("keep me")
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_text("meow")
    cases = [(["--out", afile], "is a file"),
             (["--out", other], "no .vitbench-site marker"),
             (["--out", afile / "site"], f"cannot create {afile}"),
             (["--out", tmp_path / "new", "--compare", "robustbench-imagenet-linf-5"], "unknown reference"),
             (["--out", tmp_path / "new", "--data", "cifar10"], "no stored results for cifar10")]
    monkeypatch.setenv("VITBENCH_STORE", str(home / "results.sqlite"))
    for args, message in cases:
        res = cli("site", *args)
        assert res.code == 2 and message in res.err and res.err.count("\n") == 1, (args, res)
    assert afile.read_text() == "keep me" and [p.name for p in other.iterdir()] == ["cat.jpg"]
    assert not (tmp_path / "new").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-built site left


def test_the_cli_prints_the_index_and_escapes_what_the_zoo_says(tiny_zoo, cli, tmp_path):
    """Everything from the zoo or the store is HTML-escaped: an entry's notes cannot inject markup."""
    text = tiny_zoo.read_text().replace("    threat_model: {norm: linf, eps: 0.1}\n",
                                        "    threat_model: {norm: linf, eps: 0.1}\n    provenance: {notes: "
                                        "'<script>alert(1)</script> & co', recipe: '<b>bold</b>'}\n")
    tiny_zoo.write_text(text)
    assert cli("bench", "tiny-vit.test", "--zoo", tiny_zoo, "--data", "digits", "--suite", "clean",
               "--n-examples", "20").code == 0
    res = cli("site", "--zoo", tiny_zoo, "--out", tmp_path / "site", "--title", "Lab <board>")
    assert res.code == 0, res
    assert res.out.strip() == str(tmp_path / "site" / "index.html")
    index = (tmp_path / "site" / "index.html").read_text()
    page = (tmp_path / "site" / "models" / "tiny-vit.test.html").read_text()
    assert "<title>Lab &lt;board&gt;</title>" in index and "&lt;b&gt;bold&lt;/b&gt;" in index
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "<script>alert" not in page and "<b>bold" not in page + index


# -- in a browser ----------------------------------------------------------------------------------------------

CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync")
DESKTOP, PHONE = (1280, 900), (390, 844)


def _browser_paths() -> tuple[str | None, str | None, list[str]]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (the test extra)")
    return chromium, driver, missing


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path, missing = _browser_paths()
    if missing:
        reason = (f"no browser to drive: {', '.join(missing)} missing (Debian: apt-get install chromium "
                  "chromium-driver; pip install -e '.[test]')")
        if os.environ.get("VITBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)  # never Selenium Manager
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _viewport(driver, size: tuple[int, int], *, mobile: bool = False) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": size[0], "height": size[1],
                                                                  "deviceScaleFactor": 1, "mobile": mobile})


def _open(driver, path: Path) -> None:
    _viewport(driver, DESKTOP)
    driver.get(path.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


#: every board table row as the page shows it: its identity, rank and metric cells (merged over topic tables)
_ROWS_JS = """
const out = {};
for (const tr of document.querySelectorAll("table.board tbody tr")) {
  const key = [tr.dataset.model, tr.dataset.dataset, tr.dataset.n, tr.dataset.threat].join("|");
  const row = out[key] || (out[key] = {rank: tr.cells[0].textContent.trim(), cells: {}, flags: []});
  for (const td of tr.querySelectorAll("td[data-metric]")) {
    row.cells[td.dataset.metric] = [td.getAttribute("data-value"), td.textContent.trim(),
                                    td.getAttribute("data-ci-lo"), td.getAttribute("data-ci-hi")];
  }
  for (const a of tr.querySelectorAll("a.badge.flag")) row.flags.push(a.textContent.trim());
}
return out;
"""


def _key(record: dict) -> str:
    threat = record["threat_model"]
    label = "-" if threat is None else threat_label(threat["norm"], threat["eps"])
    return "|".join([record["model"], record["dataset"], str(record["n_examples"]), label])


def test_the_tables_show_the_leaderboard_json(browser, built, board):
    _open(browser, built / "index.html")
    shown = browser.execute_script(_ROWS_JS)
    assert set(shown) == {_key(r) for r in board}
    for record in board:
        row = shown[_key(record)]
        assert row["rank"] == (record["rank_label"] or "-")
        assert row["flags"] == record["flags"]
        with_values = {cid for cid, (value, *_) in row["cells"].items() if value is not None}
        assert with_values == {cid for cid, m in record["metrics"].items() if m["value"] is not None}
        for cid, metric in record["metrics"].items():
            value, text, lo, hi = row["cells"][cid]
            assert float(value) == metric["value"], cid
            assert [float(lo), float(hi)] == metric["ci95"], cid
            assert text == cell_text(Column.from_dict({"id": cid, **metric})), cid
    heads = browser.execute_script("return [...document.querySelectorAll('table.board caption')]"
                                   ".map(c => c.querySelector('.cap').firstChild.textContent.trim())")
    assert heads == ["Adversarial robustness: digits · Linf 0.1", "Distribution shift: digits · Linf 0.1",
                     "Analyses: digits · Linf 0.1"]
    reference = browser.execute_script(
        "return [...document.querySelectorAll('table.reference tbody tr')].map(r => [r.dataset.source, "
        "r.dataset.model, r.querySelector('a[href^=\"http\"]') !== null])")
    from vitbench.board.references import load_reference
    ref = load_reference(REFERENCE)
    assert sorted(m for s, m, _ in reference if s == "reference") == sorted(r.model for r in ref.rows)
    assert sorted(m for s, m, _ in reference if s == "local") == sorted(MODELS)
    assert any(link for s, _, link in reference if s == "reference")  # the sources are linked
    assert _errors(browser) == []


def _column(driver, table_id: str, metric: str) -> list[float | None]:
    return driver.execute_script(
        "const t = document.getElementById(arguments[0]);"
        "return [...t.tBodies[0].rows].map(r => { const c = r.querySelector(`td[data-metric='${arguments[1]}']`);"
        " const v = c.getAttribute('data-value'); return v === null ? null : parseFloat(v); });", table_id, metric)


def test_a_click_on_a_header_sorts_numerically(browser, built, board):
    from selenium.webdriver.common.by import By
    _open(browser, built / "index.html")
    table = browser.find_element(By.CSS_SELECTOR, "table.board")
    tid = table.get_attribute("id")
    for metric, label in (("clean/ece", "ECE"), ("pgd_sweep/pgd5/robust_accuracy@linf:51/255", "PGD-5 Linf 51/255")):
        header = table.find_element(By.CSS_SELECTOR, f"th[data-metric='{metric}']")
        assert header.get_attribute("aria-sort") is None and label in header.text
        header.find_element(By.TAG_NAME, "button").click()
        values = _column(browser, tid, metric)
        expected = sorted((r["metrics"][metric]["value"] for r in board), reverse=metric != "clean/ece")
        assert values == expected  # best first: lower ECE, higher accuracy
        assert header.get_attribute("aria-sort") == ("ascending" if metric == "clean/ece" else "descending")
        header.click()
        assert _column(browser, tid, metric) == expected[::-1]
        assert header.get_attribute("aria-sort") == ("descending" if metric == "clean/ece" else "ascending")
    assert table.find_element(By.CSS_SELECTOR, "th[data-metric='clean/ece']").get_attribute("aria-sort") is None
    model = table.find_element(By.XPATH, ".//thead//th[normalize-space()='Model']")
    model.click()
    names = [r.get_attribute("data-model") for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert names == sorted(MODELS) and model.get_attribute("aria-sort") == "ascending"
    # an accuracy column where some rows have no value: those stay last in both directions
    aa = "autoattack/standard/robust_accuracy@linf:0.1"
    header = table.find_element(By.CSS_SELECTOR, f"th[data-metric='{aa}']")
    header.click()
    assert _column(browser, tid, aa)[1:] == [None, None]
    header.click()
    assert _column(browser, tid, aa)[1:] == [None, None]
    assert _errors(browser) == []


def _visible_models(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('table.board tbody tr')]"
                                 ".filter(r => !r.hidden && r.offsetParent !== null).map(r => r.dataset.model)")


def test_the_filter_box_filters_by_name_architecture_and_recipe(browser, built):
    from selenium.webdriver.common.by import By
    _open(browser, built / "index.html")
    box = browser.find_element(By.ID, "filter")
    assert box.is_displayed()
    tables = len(browser.find_elements(By.CSS_SELECTOR, "table.board"))
    for words, models in (("resnet", {"digits-resnet.light"}), ("vit_tiny", {"digits-vit.light",
                                                                           "digits-vit.standard"}),
                          ("light-recipe", {"digits-vit.light", "digits-resnet.light"}),
                          ("VIT   standard", {"digits-vit.standard"}), ("nothing-like-this", set())):
        box.clear()
        box.send_keys(words)
        shown = _visible_models(browser)
        assert set(shown) == models and len(shown) == len(models) * tables, words
        visible, total = browser.execute_script(
            "const rows = [...document.querySelectorAll('table.sortable tbody tr')];"
            "return [rows.filter(r => !r.hidden).length, rows.length]")
        assert browser.find_element(By.ID, "filter-count").text == f"{visible} of {total} table rows shown"
    box.clear()
    box.send_keys(" ")
    assert len(_visible_models(browser)) == len(MODELS) * tables


def test_a_model_link_leads_to_its_page(browser, built, board):
    from selenium.webdriver.common.by import By

    from vitbench.zoo.schema import load_zoo
    _open(browser, built / "index.html")
    first = board[0]["model"]
    browser.find_element(By.CSS_SELECTOR, f"table.board tr[data-model='{first}'] th a").click()
    assert browser.current_url == (built / "models" / f"{first}.html").as_uri()
    assert browser.find_element(By.TAG_NAME, "h1").text == first
    entry = load_zoo().get(first)
    assert browser.find_element(By.CSS_SELECTOR, "code.sha256").text == entry.weights.sha256
    images = browser.execute_script("return [...document.images].map(i => [i.complete && i.naturalWidth > 0, "
                                    "i.getAttribute('src')])")
    assert len(images) == 3 and all(ok for ok, _ in images), images
    runs = browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
    assert len(runs) == 5 and all(r.find_element(By.CSS_SELECTOR, "a[download]") for r in runs)
    assert browser.find_elements(By.CSS_SELECTOR, "a[href$='card.json']") == []  # no standard AutoAttack run
    browser.find_element(By.CSS_SELECTOR, "#comparisons a").click()
    assert "/compare/" in browser.current_url
    a, b = browser.find_element(By.TAG_NAME, "h1").text.split(" vs ")
    page = Path(urllib.parse.unquote(urllib.parse.urlparse(browser.current_url).path))
    expected = json.loads(page.with_suffix(".json").read_text())
    rows = browser.execute_script("return [...document.querySelectorAll('#paired-table tbody tr')].map(r => "
                                  "[r.dataset.metric, parseFloat(r.cells[4].getAttribute('data-value')), "
                                  "parseFloat(r.cells[6].getAttribute('data-value'))])")
    assert (a, b) == (expected["a"], expected["b"])
    assert {m: (d, p) for m, d, p in rows} == {m: (v["diff"], v["p_value"]) for m, v in expected["metrics"].items()}
    assert _errors(browser) == []


def test_the_comparison_pages_hold_the_paired_test(built, home):
    for path in (built / "compare").glob("*.json"):
        saved = json.loads(path.read_text())
        with _home(home):
            cmp = vitbench.compare(saved["a"], saved["b"], data="digits")
        assert saved == json.loads(json.dumps(cmp.to_json()))


def test_without_javascript_the_tables_are_there_in_leaderboard_order(browser, built, board):
    from selenium.webdriver.common.by import By
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        _open(browser, built / "index.html")
        assert not browser.find_element(By.ID, "filter-box").is_displayed()
        first = browser.find_element(By.CSS_SELECTOR, "table.board")
        names = [r.get_attribute("data-model") for r in first.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert names == [r["model"] for r in board]
        assert first.find_elements(By.CSS_SELECTOR, "th button") == []  # headers stay plain text
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_screenshots_at_desktop_and_phone_widths(browser, built, tmp_path):
    pages = {"site": built / "index.html", "model": built / "models" / "digits-vit.light.html"}
    keep = os.environ.get("VITBENCH_SITE_SCREENSHOTS")
    for name, page in pages.items():
        for label, size, mobile in (("desktop", DESKTOP, False), ("phone", PHONE, True)):
            _viewport(browser, size, mobile=mobile)
            browser.get(page.as_uri())
            width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1] == size[0], (name, label, width)  # the page never scrolls sideways
            if label == "phone":  # wide tables scroll inside their own container
                wraps = browser.execute_script("return [...document.querySelectorAll('.table-wrap')].map(w => "
                                               "[w.scrollWidth > w.clientWidth, w.clientWidth])")
                assert any(wide for wide, _ in wraps) and all(w <= size[0] for _, w in wraps)
            shot = tmp_path / f"{name}-{label}.png"
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, Path(keep) / shot.name)
    _viewport(browser, DESKTOP)


def test_the_colour_scheme_follows_the_system(browser, built):
    colours = {}
    for scheme in ("light", "dark"):
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        _open(browser, built / "index.html")
        colours[scheme] = browser.execute_script("const s = getComputedStyle(document.body); "
                                                 "return [s.backgroundColor, s.color]")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert colours["light"][0] == "rgb(255, 255, 255)" and colours["dark"][0] == "rgb(15, 18, 22)"
    assert colours["light"][1] != colours["dark"][1]


def test_the_demo_writes_its_site_and_prints_the_path_last(cli, tmp_path, isolated_home):
    res = cli("demo", "--suite", "clean", "--n-examples", "20", "--site", tmp_path / "demo-site")
    assert res.code == 0, res
    assert res.out.splitlines()[-1] == f"site: {tmp_path / 'demo-site' / 'index.html'}"
    index = (tmp_path / "demo-site" / "index.html").read_text()
    assert all(f'data-model="{m}"' in index for m in ("digits-vit.standard", "digits-vit.light",
                                                      "digits-resnet.standard", "digits-resnet.light"))
    again = cli("demo", "--suite", "clean", "--n-examples", "20", "--json")  # default: VITBENCH_HOME/site
    assert again.code == 0 and json.loads(again.out)  # stdout stays JSON: the path goes to stderr
    assert again.err.splitlines()[-1] == f"site: {isolated_home / 'site' / 'index.html'}"
    assert (isolated_home / "site" / "index.html").is_file()
    bad = cli("demo", "--suite", "clean", "--n-examples", "20", "--site", tmp_path / "demo-site" / "index.html")
    assert bad.code == 2 and "is a file" in bad.err and "vitbench demo:" not in bad.err  # refused before the battery
