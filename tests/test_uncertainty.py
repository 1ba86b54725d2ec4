"""Numbers with their uncertainty, end to end: stored intervals, rank groups that respect noise, paired
comparisons, subsets labelled."""

import json
import os

import pytest

import vitbench
from vitbench import stats
from vitbench.board.tables import Row, rank_labels
from vitbench.errors import NotFoundError, VitbenchError
from vitbench.metrics import Column


def test_stored_accuracies_carry_their_wilson_interval(cli):
    res = cli("bench", "digits-vit.light", "--data", "digits", "--suite", "clean,pgd_sweep", "--eps", "0.1",
              "--n-examples", "60", "--json")
    assert res.code == 0, res
    by = {r["suite"]: r["metrics"] for r in json.loads(res.out)}
    pgd = by["pgd_sweep"]["pgd_sweep/pgd10/robust_accuracy@linf:0.1"]
    k = round(pgd["value"] * 60)
    assert pgd["n"] == 60 and pgd["method"] == "wilson"
    assert pgd["ci95"] == pytest.approx(list(stats.wilson(k, 60)))
    ece = by["clean"]["clean/ece"]
    assert ece["method"] == "bootstrap" and ece["ci95"][0] <= ece["value"] <= ece["ci95"][1]


def test_bootstrap_is_reproducible_and_resamples_are_not_in_the_key(tmp_path):
    from vitbench.data import open_dataset
    from vitbench.engine import Engine, Options, SuiteRun
    from vitbench.intervals import IntervalOptions
    from vitbench.store import open_store
    from vitbench.suites.clean import CleanConfig
    from vitbench.zoo.schema import load_zoo
    entry, data = load_zoo().get("digits-resnet.light"), open_dataset("digits")
    job = SuiteRun("clean", CleanConfig())

    def run(resamples):
        options = Options(n_examples=80, device="cpu", intervals=IntervalOptions(resamples=resamples))
        return Engine(open_store(), options).run(entry, data, job)
    first, again, fewer = run(1000), run(1000), run(200)
    assert again.cached and fewer.cached and first.eval_key == fewer.eval_key
    assert again.metrics["ece"].ci95 == first.metrics["ece"].ci95
    assert fewer.metrics["ece"].ci95 != first.metrics["ece"].ci95


def _row(model, k, n=400, outcomes=None, fp="d"):
    value = k / n
    col = Column("autoattack/standard/robust_accuracy@linf:0.1", "AA Linf 0.1", value, headline=True, rank=20,
                 kind="robust", attack="AA", version="standard", threat=("linf", 0.1), n=n,
                 ci95=stats.wilson(k, n), outcomes=outcomes)
    return Row(model, "digits", "digits", n, ("linf", 0.1), cells={col.id: col}, data_fingerprint=fp)


def test_ranks_share_a_place_when_the_difference_is_noise():
    # unpaired (no outcomes): intervals of 60.0% and 59.0% on 400 examples overlap; 40.0% is far below
    rows = [_row("a", 240), _row("b", 236), _row("c", 160)]
    assert rank_labels(rows) == ["1=", "1=", "3"]
    assert rank_labels(rows, strict=True) == ["1", "2", "3"]


def test_paired_outcomes_separate_close_models_that_intervals_cannot():
    """Model a is right wherever b is, plus on 12 more examples: 52% vs 49% overlaps as intervals, but the paired
    test on the same examples is decisive (12 vs 0 discordant pairs)."""
    n = 400
    b = "1" * 196 + "0" * 204
    a = "1" * 208 + "0" * 192
    rows = [_row("a", 208, outcomes=a), _row("b", 196, outcomes=b)]
    assert stats.overlap(rows[0].headline.ci95, rows[1].headline.ci95)
    assert rank_labels(rows) == ["1", "2"]
    other_data = [_row("a", 208, outcomes=a), _row("b", 196, outcomes=b, fp="other")]
    assert rank_labels(other_data) == ["1=", "1="]  # not the same examples: only the intervals can be used
    assert n == len(a)


def test_compare_counts_the_discordant_pairs_of_the_stored_samples(cli):
    for model in ("digits-vit.light", "digits-resnet.light"):
        assert cli("bench", model, "--data", "digits", "--suite", "pgd_sweep", "--eps", "0.1",
                   "--n-examples", "50").code == 0
    cmp = vitbench.compare("digits-vit.light", "digits-resnet.light", data="digits")
    pgd = next(p for p in cmp.paired if p.metric == "pgd_sweep/pgd10/robust_accuracy@linf:0.1")
    from vitbench.store import open_store
    store = open_store()
    robust = {}
    for run in store.runs(suite="pgd_sweep"):
        records = store.records(run.eval_key, [(0, 50)])
        eps_index = run.config["eps"].index(0.1)
        robust[run.model] = [r["robust"][0][eps_index] for r in records]
    a, b = robust["digits-vit.light"], robust["digits-resnet.light"]
    assert (pgd.only_a == sum(x and not y for x, y in zip(a, b, strict=True))
            and pgd.only_b == sum(y and not x for x, y in zip(a, b, strict=True)))
    assert pgd.p_value == pytest.approx(stats.mcnemar_exact(pgd.only_a, pgd.only_b))
    assert pgd.diff == pytest.approx(sum(a) / 50 - sum(b) / 50)
    shown = cli("compare", "digits-vit.light", "digits-resnet.light", "--data", "digits")
    assert shown.code == 0 and "McNemar p" in shown.out and "PGD-10 Linf 0.1" in shown.out


def test_compare_refuses_models_that_never_saw_the_same_examples(cli):
    assert cli("bench", "digits-vit.light", "--data", "digits", "--suite", "clean", "--n-examples", "30").code == 0
    assert cli("bench", "digits-resnet.light", "--data", "digits", "--suite", "clean", "--n-examples", "20").code == 0
    with pytest.raises(VitbenchError, match="never evaluated on the same examples"):
        vitbench.compare("digits-vit.light", "digits-resnet.light")
    res = cli("compare", "digits-vit.light", "digits-resnet.light")
    assert res.code == 2 and res.err.count("\n") == 1
    with pytest.raises(NotFoundError, match="did you mean"):
        vitbench.compare("digits-vit.light", "digits-resnet.lite")


def test_tables_show_intervals_and_subsets(cli):
    assert cli("bench", "digits-resnet.light", "--data", "digits", "--suite", "clean", "--n-examples", "100").code == 0
    md = cli("leaderboard", "--data", "digits").out
    assert "100 of 500" in md and ("±" in md or "[" in md)
    plain = cli("leaderboard", "--data", "digits", "--ci", "none").out
    assert "±" not in plain and "[" not in plain.split("\n", 2)[2]
    rows = json.loads(cli("leaderboard", "--data", "digits", "--json").out)
    assert rows[0]["subset"] and rows[0]["dataset_size"] == 500


def test_reference_numbers_carry_their_own_interval_and_deltas_say_within_noise():
    from vitbench.board.references import compare, load_reference, render_comparison
    ref = load_reference("robustbench-imagenet-linf-4")
    n, k = ref.n_examples, 2950                         # 59.00% on the RobustBench 5000: 0.56 below Liu2023 Swin-L
    col = Column("autoattack/standard/robust_accuracy@linf:4/255", "AA Linf 4/255", k / n, headline=True, rank=20,
                 kind="robust", attack="AA", version="standard", threat=("linf", 4 / 255), n=n,
                 ci95=stats.wilson(k, n))
    row = Row("mine", "imagenet-val:/d?subset=robustbench-5000", "imagenet", n, ("linf", 4 / 255),
              cells={col.id: col})
    cmp = compare([row], ref, published={"mine": "Liu2023Comprehensive_Swin-L"})
    mine = next(e for e in cmp.table if e["model"] == "mine")
    swin = next(e for e in cmp.table if e["model"] == "Liu2023Comprehensive_Swin-L")
    assert swin["robust_ci95"] == pytest.approx(stats.wilson(round(0.5956 * 5000), 5000))
    assert mine["published_within_noise"] is True and mine["delta_published"] == pytest.approx(-0.0056)
    assert mine["top_within_noise"] is False            # 62.12 (MeanSparse) is out of reach of 59.0 +- 1.4
    text = render_comparison(cmp)
    assert "(within noise)" in text and "[57.6, 60.4]" in text


def test_the_card_keeps_robustbench_format_with_intervals_in_a_sidecar(cli):
    import vitbench.board.cards as cards
    res = cli("bench", "digits-resnet.light", "--data", "digits", "--suite", "clean", "--n-examples", "20")
    assert res.code == 0
    from vitbench.metrics import Column
    board = vitbench.leaderboard(data="digits")
    row = board.rows[0]
    aa = Column("autoattack/standard/robust_accuracy@linf:0.1", "AA Linf 0.1", 0.5, headline=True, rank=20,
                kind="robust", attack="AA", version="standard", threat=("linf", 0.1), n=20, ci95=stats.wilson(10, 20),
                method="wilson")
    row.cells[aa.id] = aa
    row.threat = ("linf", 0.1)
    from vitbench.zoo.schema import load_zoo
    card = cards.card(load_zoo().get("digits-resnet.light"), [row])
    assert card["autoattack_acc"] == "50.00" and isinstance(card["autoattack_acc"], str)
    side = card[cards.SIDECAR]
    assert side["autoattack_acc_ci95"] == [round(100 * v, 2) for v in stats.wilson(10, 20)]
    assert side["n_examples"] == 20 and side["dataset_size"] == 500 and side["interval"] == "wilson"


def test_seeds_give_the_mean_and_the_spread_across_seeds(cli):
    import statistics
    res = cli("bench", "digits-resnet.light", "--data", "digits", "--suite", "pgd_sweep", "--eps", "0.1",
              "--n-examples", "40", "--seeds", "0,1,2", "--json")
    assert res.code == 0, res
    runs = json.loads(res.out)
    pid = "pgd_sweep/pgd10/robust_accuracy@linf:0.1"
    values = [r["metrics"][pid]["value"] for r in runs]
    assert len(runs) == 3
    row = json.loads(cli("leaderboard", "--data", "digits", "--json").out)[0]
    cell = row["metrics"][pid]
    assert cell["seeds"] == 3 and cell["value"] == pytest.approx(statistics.fmean(values))
    assert cell["seed_sd"] == pytest.approx(statistics.stdev(values))
    assert "over 3 seeds" in cli("leaderboard", "--data", "digits").out
    bad = cli("bench", "digits-resnet.light", "--data", "digits", "--seeds", "1")
    assert bad.code == 2 and "two or more" in bad.err


# -- --until-ci: a quick sequential mode ------------------------------------------------------------------------

def _bench_json(cli, *extra):
    res = cli("bench", "digits-vit.light", "--data", "digits", "--suite", "pgd_sweep", "--eps", "0.1",
              "--n-examples", "400", "--chunk-size", "40", "--device", "cpu", "--json", *extra)
    assert res.code == 0, res
    (run,) = json.loads(res.out)
    return run, res


PGD = "pgd_sweep/pgd10/robust_accuracy@linf:0.1"


def test_until_ci_stops_at_the_first_look_within_the_target_with_bonferroni_intervals(cli):
    quick, res = _bench_json(cli, "--until-ci", "9")
    seq = quick["sequential"]
    assert quick["flags"] == ["sequential"] and seq["looks"] == 10 and seq["planned_n"] == 400
    n = quick["n_examples"]
    assert n == seq["n"] and n % 40 == 0 and 40 <= n < 400
    # the interval is Clopper-Pearson at 1 - 0.05 / 10, and the rule stopped at the first look within +-9 points
    k = round(quick["metrics"][PGD]["value"] * n)
    lo, hi = quick["metrics"][PGD]["ci95"]
    assert (lo, hi) == pytest.approx(stats.clopper_pearson(k, n, 1 - 0.05 / 10))
    assert quick["metrics"][PGD]["method"] == "sequential"
    assert 100 * max(k / n - lo, hi - k / n) <= 9

    full, _ = _bench_json(cli)
    assert full["n_examples"] == 400 and "sequential" not in full["flags"]
    outcomes = vitbench.leaderboard(data="digits").rows[0].cells[PGD].outcomes  # the full run's, per example
    assert outcomes[:n].count("1") == k  # the quick run saw the full run's first n examples

    def half_width(m):
        j = outcomes[:m].count("1")
        lo, hi = stats.sequential_ci(j, m, 10)
        return 100 * max(j / m - lo, hi - j / m)
    assert all(half_width(m) > 9 for m in range(40, n, 40)) and half_width(n) <= 9
    assert "sequential, not leaderboard-grade" in res.err and f"after {n} of 400 examples" in res.err


def test_a_full_run_reuses_the_quick_runs_chunks_and_supersedes_its_row(cli, isolated_home):
    import sqlite3
    quick, _ = _bench_json(cli, "--until-ci", "9")
    board = cli("leaderboard", "--data", "digits")
    assert board.code == 0 and "| -   | digits-vit.light" in board.out and "sequential" in board.out, board
    with sqlite3.connect(isolated_home / "results.sqlite") as db:
        before = db.execute("SELECT start, created FROM chunks ORDER BY start").fetchall()
    assert len(before) == quick["n_examples"] // 40
    full, _ = _bench_json(cli)
    with sqlite3.connect(isolated_home / "results.sqlite") as db:
        after = db.execute("SELECT start, created FROM chunks ORDER BY start").fetchall()
    assert after[:len(before)] == before and len(after) == 10  # the quick run's chunks, untouched, plus the rest
    assert full["eval_key"] == quick["eval_key"]
    board = cli("leaderboard", "--data", "digits")
    assert "sequential" not in board.out and "| 1   | digits-vit.light" in board.out and "| 400 " in board.out


@pytest.mark.parametrize("extra, says", [(("--until-ci", "0"), "--until-ci '0' is not a half-width"),
                                         (("--until-ci", "2", "--workers", "2"), "--until-ci runs in one process")])
def test_until_ci_refuses_what_it_cannot_do(cli, isolated_home, extra, says):
    res = cli("bench", "digits-vit.light", "--data", "digits", "--suite", "clean", "--n-examples", "40", *extra)
    assert res.code == 2 and says in res.err and len(res.err.strip().splitlines()) == 1, res
    assert not (isolated_home / "results.sqlite").exists()


def test_until_ci_takes_over_the_chunk_a_killed_run_left_leased():
    """A quick run killed mid-chunk leaves that chunk leased by a dead process: the rerun ends the lease and
    computes the chunk (before, it skipped the chunk and aggregated a run without its records)."""
    import subprocess
    import sys

    from vitbench.data import open_dataset
    from vitbench.engine import Engine, Options, SuiteRun
    from vitbench.leases import worker_id
    from vitbench.store import Plan, open_store
    from vitbench.suites.clean import CleanConfig
    from vitbench.zoo.schema import load_zoo
    entry, data, job = load_zoo().get("digits-vit.light"), open_dataset("digits"), SuiteRun("clean", CleanConfig())
    engine = Engine(open_store(), Options(n_examples=200, chunk_size=50, device="cpu", until_ci=1))
    key, info = engine.key(entry, data, job)
    plan = Plan(200, 50)
    engine.store.ensure_eval(key, info)
    engine.store.plan_leases(key, plan)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = worker_id().replace(f":{os.getpid()}:", f":{int(dead.stdout)}:")
    assert engine.store.claim(key, plan, owner, 600).lease.start == 0  # chunk 0, held by a process that is gone
    result = engine.run(entry, data, job)
    assert result.n_examples == 200 and result.sequential["n"] == 200  # +-1 point is never reached on 200 images
    assert len(engine.store.records(key, plan.spans())) == 200
