"""Suite formulas and behaviour: ECE golden values, PGD sweep carry vs independent attacks, flags, presets."""

import math

import pytest

from vitbench.data import open_dataset
from vitbench.engine import Engine, Options, SuiteRun
from vitbench.errors import ConfigError, NotFoundError
from vitbench.store import open_store
from vitbench.suites import get_suite, load_preset, preset_names, resolve, suites
from vitbench.suites.autoattack import AutoAttackConfig
from vitbench.suites.clean import expected_calibration_error
from vitbench.suites.pgd_sweep import PGDSweepConfig
from vitbench.zoo.schema import load_zoo


def test_ece_golden():
    # bins of width 0.5: bin (0, .5]: conf .2,.4 acc 0/2 -> |0 - .3| * 2/4;
    # bin (.5, 1]: conf .6, 1.0, acc 2/2 -> |1 - .8| * 2/4
    assert expected_calibration_error([0.2, 0.4, 0.6, 1.0], [False, False, True, True], bins=2) == pytest.approx(0.25)
    assert expected_calibration_error([0.9] * 10, [True] * 9 + [False], bins=15) == pytest.approx(0.0, abs=1e-12)


def test_every_suite_has_config_defaults_and_summary():
    for name, suite in suites().items():
        assert suite.summary, name
        assert suite.name == name


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_resolves(name):
    preset = load_preset(name)
    for item in preset.items:
        config = resolve(item, overrides={}, default_threat=("linf", 0.1), where=name)
        assert get_suite(item.suite).Config is type(config)


def test_resolution_order_cli_then_preset_then_model():
    item = load_preset("demo").items[1]
    config = resolve(item, overrides={"eps": 0.2, "norm": None}, default_threat=("linf", 0.05), where="t")
    assert config.eps == 0.2 and config.norm == "linf" and config.attacks == ("apgd-ce", "apgd-t")
    config = resolve(item, overrides={}, default_threat=("l2", 0.5), where="t")
    assert (config.norm, config.eps) == ("l2", 0.5)
    with pytest.raises(ConfigError, match="needs norm and eps"):
        resolve(item, overrides={}, default_threat=None, where="t")


def test_pgd_sweep_eps_factors_resolve_and_sort():
    c = PGDSweepConfig(norm="linf", eps=(0.1,), eps_factors=(2.0, 0.5, 1.0))
    assert c.eps == (0.05, 0.1, 0.2) and c.eps_factors == ()
    with pytest.raises(ValueError):
        PGDSweepConfig(norm="linf", eps=())


def test_autoattack_config_validation():
    assert AutoAttackConfig(norm="Linf", eps=0.1, version="custom", attacks=("apgd-ce",)).label == "AA[APGD-CE]"
    with pytest.raises(ValueError, match="only for version custom"):
        AutoAttackConfig(norm="linf", eps=0.1, attacks=("apgd-ce",))
    with pytest.raises(ValueError):
        AutoAttackConfig(norm="linf", eps=0.1, version="fast")


def test_unknown_suite_suggests():
    with pytest.raises(NotFoundError, match="did you mean 'autoattack'"):
        get_suite("autoatack")


def _sweep(entry, data, carry, n=60):
    engine = Engine(open_store(), Options(n_examples=n, chunk_size=30, device="cpu"))
    job = SuiteRun("pgd_sweep", PGDSweepConfig(norm="linf", eps=(0.02, 0.05, 0.1, 0.15), steps=(5,), carry=carry))
    return engine.run(entry, data, job)


def test_sweep_with_carry_is_no_weaker_than_independent_attacks():
    entry = load_zoo().get("digits-resnet.light")
    data = open_dataset("digits")
    carried, independent = _sweep(entry, data, True), _sweep(entry, data, False)
    accs_c = [carried.metrics[f"pgd5@{e:.6g}"].value for e in (0.02, 0.05, 0.1, 0.15)]
    accs_i = [independent.metrics[f"pgd5@{e:.6g}"].value for e in (0.02, 0.05, 0.1, 0.15)]
    assert all(c <= i + 1e-12 for c, i in zip(accs_c, accs_i, strict=True))
    assert accs_c == sorted(accs_c, reverse=True)  # monotone by construction
    assert accs_c[0] == accs_i[0]                  # the first eps is the same attack
    assert accs_c[-1] < accs_c[0]                  # the curve actually falls
    assert "accuracy-rises-with-eps" not in carried.flags


def test_rising_curve_is_flagged():
    suite = get_suite("pgd_sweep")
    config = PGDSweepConfig(norm="linf", eps=(0.1, 0.2), steps=(10,), carry=False)
    records = [{"clean_correct": True, "robust": [[False, True]], "loss": [[3.0, 1.0]]}] * 4
    metrics = suite.aggregate(records, config)
    assert math.isclose(metrics["pgd10@0.2"].value, 1.0)
    assert suite.run_flags(records, config, metrics) == ["accuracy-rises-with-eps"]


def test_sweep_random_starts_do_not_depend_on_the_rest_of_the_eps_list():
    """A one-eps run starts where the same eps starts inside a longer sweep (carry off: identical outcomes)."""
    entry = load_zoo().get("digits-vit.light")
    data = open_dataset("digits")
    engine = Engine(open_store(), Options(n_examples=30, chunk_size=30, device="cpu"))
    alone = engine.run(entry, data, SuiteRun("pgd_sweep", PGDSweepConfig(norm="linf", eps=(0.15,), steps=(5,))))
    inside = engine.run(entry, data, SuiteRun("pgd_sweep", PGDSweepConfig(norm="linf", eps=(0.05, 0.15), steps=(5,),
                                                                           carry=False)))
    robust_alone = [r["robust"][0][0] for r in open_store().records(alone.eval_key, [(0, 30)])]
    robust_inside = [r["robust"][0][1] for r in open_store().records(inside.eval_key, [(0, 30)])]
    assert robust_alone == robust_inside


def test_aggregation_only_fields_stay_out_of_the_cache_key(tiny_zoo):
    from vitbench.suites.clean import CleanConfig
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    engine = Engine(open_store(), Options(n_examples=10, device="cpu"))
    assert engine.key(entry, data, SuiteRun("clean", CleanConfig(ece_bins=10)))[0] == \
        engine.key(entry, data, SuiteRun("clean", CleanConfig(ece_bins=15)))[0]


def test_sweep_equals_independent_attacks_carried_over():
    """With carry, a sample is robust at eps_j exactly when each single-eps attack at eps_k <= eps_j fails; its
    loss is recorded where it was still robust at the previous eps (attacked there) and missing elsewhere."""
    entry = load_zoo().get("digits-vit.light")
    data = open_dataset("digits")
    engine = Engine(open_store(), Options(n_examples=40, chunk_size=40, device="cpu", batch_size=32))
    eps = (0.05, 0.1, 0.15)
    job = SuiteRun("pgd_sweep", PGDSweepConfig(norm="linf", eps=eps, steps=(5,), restarts=2))
    swept = open_store().records(engine.run(entry, data, job).eval_key, [(0, 40)])
    alone = []
    for e in eps:
        run = engine.run(entry, data, SuiteRun("pgd_sweep", PGDSweepConfig(norm="linf", eps=(e,), steps=(5,),
                                                                           restarts=2)))
        alone.append([r["robust"][0][0] for r in open_store().records(run.eval_key, [(0, 40)])])
    for i, record in enumerate(swept):
        expected = [all(alone[k][i] for k in range(j + 1)) for j in range(len(eps))]
        assert record["robust"][0] == expected
        for j in range(len(eps)):
            attacked = record["clean_correct"] and (j == 0 or record["robust"][0][j - 1])
            assert (record["loss"][0][j] is not None) == attacked
    robust = [sum(r["robust"][0][j] for r in swept) for j in range(len(eps))]
    assert robust[0] > robust[-1] > 0  # the curve falls but not to zero: carry and retirement both exercised
