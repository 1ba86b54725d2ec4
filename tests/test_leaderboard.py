"""Leaderboard rows, rendering, reference comparisons (refused across setups) and RobustBench cards."""

import json

import pytest

from vitbench.board.cards import card
from vitbench.board.references import compare, load_reference, reference_names, render_comparison
from vitbench.board.tables import build_rows, render
from vitbench.errors import VitbenchError
from vitbench.store import RunRow
from vitbench.zoo.schema import load_zoo


def _run(run_id, model, suite, config, metrics, *, dataset="digits", n=100, flags=(), space="digits"):
    return RunRow(run_id, "k", model, dataset, "fp-" + dataset, space, suite, config, n, 0,
                  {k: [v, True] for k, v in metrics.items()}, list(flags), {}, "t", 1.0, False)


AA = {"norm": "linf", "eps": 0.1, "version": "standard", "attacks": []}
PGD = {"norm": "linf", "eps": [0.05, 0.1], "eps_factors": [], "steps": [10], "restarts": 1, "alpha": None,
       "alpha_factor": 2.5, "random_start": True, "carry": True}


def _runs():
    return [
        _run(1, "a", "clean", {"ece_bins": 15}, {"accuracy": 0.9, "mean_confidence": 0.8, "ece": 0.05}),
        _run(2, "a", "autoattack", AA, {"clean_accuracy": 0.9, "robust_accuracy": 0.4}),
        _run(3, "a", "pgd_sweep", PGD, {"clean_accuracy": 0.9, "pgd10@0.05": 0.6, "pgd10@0.1": 0.45}),
        _run(4, "b", "autoattack", AA, {"clean_accuracy": 0.95, "robust_accuracy": 0.1}),
        _run(5, "b", "autoattack", AA, {"clean_accuracy": 0.95, "robust_accuracy": 0.2}),  # newer run wins
        _run(6, "c", "pgd_sweep", PGD, {"clean_accuracy": 0.7, "pgd10@0.05": 0.3, "pgd10@0.1": 0.2}),
    ]


def test_rows_group_sort_and_latest_wins():
    rows = build_rows(_runs())
    assert [r.model for r in rows] == ["a", "b", "c"]
    a = rows[0]
    assert a.column("AA Linf 0.1").value == 0.4 and a.column("PGD-10 Linf 0.05").value == 0.6
    assert a.column("Clean").value == 0.9 and a.column("ECE").value == 0.05
    assert rows[1].column("AA Linf 0.1").value == 0.2
    assert rows[2].threat is None and rows[2].headline.label == "PGD-10 Linf 0.05"


def test_pgd_below_autoattack_is_flagged():
    runs = _runs()
    runs.append(_run(7, "a", "pgd_sweep", PGD, {"clean_accuracy": 0.9, "pgd10@0.05": 0.5, "pgd10@0.1": 0.3}))
    rows = build_rows(runs)
    assert "pgd-beats-autoattack" in rows[0].flags


def test_filters():
    assert [r.model for r in build_rows(_runs(), eps=0.1, norm="linf")] == ["a", "b"]
    assert build_rows(_runs(), data="imagenet") == []


@pytest.mark.parametrize("fmt", ["md", "csv", "latex", "json"])
def test_render_formats(fmt):
    text = render(build_rows(_runs()), fmt)
    if fmt == "json":
        data = json.loads(text)
        aa = data[0]["metrics"]["autoattack/standard/robust_accuracy@linf:0.1"]
        assert aa["value"] == 0.4 and aa["label"] == "AA Linf 0.1" and data[0]["rank"] == 1
    elif fmt == "csv":
        assert "0.4," in text and "0.95," in text and "autoattack/standard/robust_accuracy@linf:0.1" in text
    else:
        assert "40.0" in text and "95.0" in text


def test_references_load_with_sources():
    names = reference_names()
    assert "robustbench-imagenet-linf-4" in names
    for name in names:
        ref = load_reference(name)
        assert ref.source and ref.rows
        assert all(0 < r.autoattack < r.clean < 1 for r in ref.rows)
        assert all(r.external is None or r.external <= r.autoattack for r in ref.rows)
    xcit = {r.model: r for r in load_reference("robustbench-imagenet").rows}["Debenedetti2022Light_XCiT-S12"]
    assert (xcit.clean, xcit.autoattack, xcit.external) == (0.7234, 0.4178, None)


def test_adaptive_numbers_are_kept_apart_from_autoattack():
    """RobustBench's model_info: MeanSparse AutoAttack 62.12 / external 58.92, MixedNUTS 58.62 / 58.50."""
    rows = {r.model: r for r in load_reference("robustbench-imagenet").rows}
    assert (rows["Amini2024MeanSparse_Swin-L"].autoattack,
            rows["Amini2024MeanSparse_Swin-L"].external) == (0.6212, 0.5892)
    assert (rows["Bai2024MixedNUTS"].autoattack, rows["Bai2024MixedNUTS"].external) == (0.5862, 0.5850)


def test_a_standard_autoattack_run_is_ranked_against_autoattack_numbers():
    aa = {"norm": "linf", "eps": 4 / 255, "version": "standard", "attacks": []}
    runs = [_run(1, "mine", "autoattack", aa, {"clean_accuracy": 0.79, "robust_accuracy": 0.60},
                 dataset="imagenet-val:/d?subset=robustbench-5000", n=5000, space="imagenet")]
    cmp = compare(build_rows(runs), load_reference("robustbench-imagenet"))
    order = [e["model"] for e in cmp.table]
    assert order[:2] == ["Amini2024MeanSparse_Swin-L", "mine"]  # 62.12 (AutoAttack) above 60, not 58.92
    bai = next(e for e in cmp.table if e["model"] == "Bai2024MixedNUTS")
    assert (bai["robust"], bai["external"]) == (0.5862, 0.5850) and "external evaluation 58.50" in bai["flag"]


def test_rows_that_are_not_robustbench_ids_say_so():
    light = load_reference("light-recipe-imagenet-linf-4")
    assert all(not r.robustbench_id and "not a RobustBench id" in r.note for r in light.rows)
    cifar = {r.model: r for r in load_reference("robustbench-cifar10").rows}
    assert not cifar["Debenedetti2022Light_ResNet-50"].robustbench_id
    assert cifar["Debenedetti2022Light_XCiT-S12"].robustbench_id and cifar["Debenedetti2022Light_XCiT-S12"].note == ""


def test_comparison_refuses_other_setups():
    rows = build_rows(_runs())
    with pytest.raises(VitbenchError, match="dataset digits vs imagenet"):
        compare(rows, load_reference("robustbench-imagenet"))
    shown = compare(rows, load_reference("robustbench-imagenet"), allow_mismatch=True)
    local = [e for e in shown.table if e["source"] == "local"]
    assert local and all(e["flag"].startswith("NOT COMPARABLE") for e in local)
    # flagged rows are not ranked: the reference's own rows keep their numbering 1..10
    assert all(e["rank"] is None for e in local)
    assert [e["rank"] for e in shown.table if e["source"] == "reference"] == list(range(1, 11))
    assert "| -      | a " in render_comparison(shown)


def test_comparison_ranks_and_deltas():
    aa = {"norm": "linf", "eps": 4 / 255, "version": "standard", "attacks": []}
    runs = [_run(1, "my-xcit", "autoattack", aa, {"clean_accuracy": 0.73, "robust_accuracy": 0.42},
                 dataset="imagenet-val:/d?subset=robustbench-5000", n=5000, space="imagenet")]
    cmp = compare(build_rows(runs), load_reference("robustbench-imagenet"),
                  published={"my-xcit": "Debenedetti2022Light_XCiT-S12"})
    mine = next(e for e in cmp.table if e["model"] == "my-xcit")
    assert mine["rank"] == 10  # between XCiT-M12 (45.24) and XCiT-S12 (41.78)
    assert mine["delta_published"] == pytest.approx(0.42 - 0.4178)
    assert mine["delta_top"] == pytest.approx(0.42 - 0.6212)  # the top AutoAttack number (MeanSparse)


def test_card_fields():
    entry = load_zoo().get("digits-resnet.light")
    runs = [_run(1, entry.name, "autoattack", AA, {"clean_accuracy": 0.9, "robust_accuracy": 0.55})]
    c = card(entry, build_rows(runs))
    assert c["eps"] == "0.1" and c["autoattack_acc"] == "55.00" and c["clean_acc"] == "90.00"
    assert set(c) == {"link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                      "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable",
                      # the sidecar: intervals RobustBench's format has no place for (its loader ignores it)
                      "vitbench"}
    assert "external" not in c  # RobustBench's leaderboard reads external first and cannot convert ""
    assert c["architecture"] == "test_resnet" and c["additional_data"] is False and c["number_forward_passes"] == 1
    assert "not recorded in the zoo entry" in c["footnote"] and not c["unreliable"]


IN_AA = {"norm": "linf", "eps": 4 / 255, "version": "standard", "attacks": []}


def _imagenet_runs(model, robust=0.41):
    return [_run(1, model, "autoattack", IN_AA, {"clean_accuracy": 0.72, "robust_accuracy": robust},
                 dataset="imagenet-val:/d?subset=robustbench-5000", n=5000, space="imagenet")]


def test_card_facts_come_from_the_zoo_entry():
    zoo = load_zoo()
    c = card(zoo.get("xcit-s12.light-imagenet-linf"), build_rows(_imagenet_runs("xcit-s12.light-imagenet-linf")))
    assert c["authors"] == "Edoardo Debenedetti, Vikash Sehwag, Prateek Mittal" and c["venue"] == "SaTML 2023"
    assert c["architecture"] == "XCiT-S12" and c["additional_data"] is False and c["number_forward_passes"] == 1
    assert (c["eps"], c["reported"], c["autoattack_acc"]) == ("4/255", "41.78", "41.00")
    assert "not recorded" not in c["footnote"] and "external" not in c
    cifar = zoo.get("xcit-s12.light-cifar10-linf").provenance
    assert cifar.additional_data is True  # fine-tuned from ImageNet, as RobustBench marks it


def test_card_external_only_when_published():
    from dataclasses import replace

    from vitbench.zoo.schema import Published
    entry = load_zoo().get("xcit-s12.light-imagenet-linf")
    adaptive = Published(metric="external", value=0.40, dataset="imagenet", source="x", norm="linf", eps="4/255")
    entry = replace(entry, published=entry.published + (adaptive,))
    c = card(entry, build_rows(_imagenet_runs(entry.name)))
    assert c["external"] == "40.00" and c["autoattack_acc"] == "41.00"
    assert list(c).index("external") == list(c).index("autoattack_acc") + 1


def test_card_never_takes_a_reduced_autoattack_or_pgd_number():
    entry = load_zoo().get("digits-resnet.light")
    custom = dict(AA, version="custom", attacks=["apgd-ce", "apgd-t"])
    runs = [_run(1, entry.name, "autoattack", custom, {"clean_accuracy": 0.9, "robust_accuracy": 0.7}),
            _run(2, entry.name, "pgd_sweep", PGD, {"clean_accuracy": 0.9, "pgd10@0.05": 0.6, "pgd10@0.1": 0.5})]
    with pytest.raises(VitbenchError, match=r"no standard AutoAttack result .*only AA\[APGD-CE\+APGD-T\] Linf 0.1"):
        card(entry, build_rows(runs))


CUSTOM = dict(AA, version="custom", attacks=["apgd-ce", "apgd-t"])


def test_headline_is_the_strongest_autoattack_not_the_first_stored():
    """A reduced (custom) AutoAttack run stored first must not rank the model, compare it or fill its card."""
    runs = [_run(1, "a", "autoattack", CUSTOM, {"clean_accuracy": 0.9, "robust_accuracy": 0.7}),
            _run(2, "a", "autoattack", AA, {"clean_accuracy": 0.9, "robust_accuracy": 0.6}),
            _run(3, "b", "autoattack", AA, {"clean_accuracy": 0.9, "robust_accuracy": 0.65})]
    rows = build_rows(runs)
    assert [r.model for r in rows] == ["b", "a"]
    a = rows[1]
    assert a.headline.label == "AA Linf 0.1" and a.headline.value == 0.6
    assert a.column("AA[APGD-CE+APGD-T] Linf 0.1").value == 0.7  # still shown, not the headline


def test_rows_with_different_headlines_are_ranked_separately():
    pgd05 = dict(PGD, eps=[0.05])
    runs = [_run(1, "c", "pgd_sweep", pgd05, {"clean_accuracy": 0.9, "pgd10@0.05": 0.8}),
            _run(2, "d", "pgd_sweep", dict(PGD, eps=[0.1]), {"clean_accuracy": 0.9, "pgd10@0.1": 0.6}),
            _run(3, "e", "autoattack", AA, {"clean_accuracy": 0.9, "robust_accuracy": 0.5}),
            _run(4, "f", "autoattack", dict(AA, eps=0.05), {"clean_accuracy": 0.9, "robust_accuracy": 0.55})]
    records = json.loads(render(build_rows(runs), "json"))
    rank = {r["model"]: (r["rank"], r["headline"]) for r in records}
    assert rank["e"][0] == 1 and rank["f"][0] == 1      # AA at 0.1 and at 0.05: separate rankings
    assert rank["c"][0] == 1 and rank["d"][0] == 1      # PGD headlines at different eps: separate rankings


def test_a_training_split_is_never_compared_with_a_test_leaderboard():
    aa = {"norm": "linf", "eps": 8 / 255, "version": "standard", "attacks": []}
    runs = [_run(1, "m", "autoattack", aa, {"clean_accuracy": 0.9, "robust_accuracy": 0.5},
                 dataset="cifar10:/d?split=train", n=10000, space="cifar10")]
    with pytest.raises(VitbenchError, match="split train vs the test set"):
        compare(build_rows(runs), load_reference("robustbench-cifar10"))
    assert load_reference("robustbench-cifar10").name == "robustbench-cifar10-linf-8"


def test_rows_without_a_headline_are_not_ranked_and_no_negative_zero():
    corr = {"source": "generated", "severities": [1, 2, 3, 4, 5], "extra": False}
    runs = [_run(1, "p", "corruptions", corr, {"accuracy": 0.9, "accuracy_no_noise": 0.91}),
            _run(2, "q", "corruptions", corr, {"accuracy": 0.95, "accuracy_no_noise": -0.00001})]
    rows = build_rows(runs)
    records = json.loads(render(rows, "json"))
    assert [r["rank"] for r in records] == [None, None]
    text = render(rows, "md")
    assert "| -   | p" in text and "| -   | q" in text
    assert "-0.0" not in text and "| 0.0 " in text
