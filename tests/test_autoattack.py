"""The AutoAttack suite gives exactly what calling pyautoattack directly gives, plus attribution and flags."""

import pytest
import torch

from vitbench.attacks.autoattack import make_adversary, run_cascade
from vitbench.data import open_dataset
from vitbench.zoo.load import load_model
from vitbench.zoo.schema import load_zoo


def _robust_model():
    entry = load_zoo().get("digits-resnet.light")
    return entry, load_model(entry).model


def _data(entry, n):
    return open_dataset("digits").load(0, n, entry.preprocessing)


def test_cascade_matches_pyautoattack_direct():
    from pyautoattack import AutoAttack
    entry, model = _robust_model()
    x, y = _data(entry, 32)
    eps, seed = 0.1, 1234
    direct = AutoAttack(model, norm="Linf", eps=eps, version="custom", attacks=["apgd-ce", "apgd-t"], seed=seed)
    direct.apgd.n_restarts = 1
    direct.apgd_targeted.n_target_classes = 9
    x_direct, _ = direct.run_standard_evaluation(x, y, batch_size=16)
    with torch.no_grad():
        robust_direct = model(x_direct).argmax(1) == y
    ours = run_cascade(make_adversary(model, norm="linf", eps=eps, version="custom", attacks=("apgd-ce", "apgd-t"),
                                      seed=seed, device="cpu", num_classes=10), x, y, batch_size=16)
    assert torch.equal(ours.robust, robust_direct)
    assert torch.allclose(ours.x_adv, x_direct)
    assert 0 < int(ours.robust.sum()) < int(ours.clean_correct.sum())  # some broken, some robust


def test_attribution_and_flags():
    entry, model = _robust_model()
    x, y = _data(entry, 24)
    result = run_cascade(make_adversary(model, norm="linf", eps=0.1, version="custom", attacks=("apgd-ce", "apgd-t"),
                                        seed=0, device="cpu", num_classes=10), x, y, batch_size=24)
    for clean, robust, by in zip(result.clean_correct.tolist(), result.robust.tolist(), result.broken_by, strict=True):
        if not clean:
            assert by == "clean"
        elif robust:
            assert by is None
        else:
            assert by in ("apgd-ce", "apgd-t")
    assert result.flags == []


def test_checks_are_recorded_when_the_cli_quiets_pyautoattack(monkeypatch):
    """The CLI sets pyautoattack's logger to ERROR (no noise on the terminal); its check warnings must still
    become flags, or every CLI AutoAttack run loses them."""
    import logging
    logger = logging.getLogger("auto-attack")
    monkeypatch.setattr(logger, "level", logging.ERROR)
    result = _softmax_cascade()
    assert "softmax-output" in result.flags
    assert logger.level == logging.ERROR and logger.propagate


def _softmax_cascade():
    """APGD-CE on the robust model with a softmax appended (pyautoattack's check must flag it)."""
    entry, model = _robust_model()
    x, y = _data(entry, 8)
    softmax_model = torch.nn.Sequential(model, torch.nn.Softmax(dim=1))
    return run_cascade(make_adversary(softmax_model, norm="linf", eps=0.1, version="custom", attacks=("apgd-ce",),
                                      seed=0, device="cpu", num_classes=10), x, y, batch_size=8)


def test_softmax_output_is_flagged():
    result = _softmax_cascade()
    assert "softmax-output" in result.flags


def test_randomised_output_is_flagged():
    entry, model = _robust_model()
    x, y = _data(entry, 8)

    class Noisy(torch.nn.Module):
        def forward(self, inp):
            return model(inp) + 0.5 * torch.randn(len(inp), 10)
    result = run_cascade(make_adversary(Noisy(), norm="linf", eps=0.1, version="custom", attacks=("apgd-ce",),
                                        seed=0, device="cpu", num_classes=10), x, y, batch_size=8)
    assert "randomized-output" in result.flags


@pytest.mark.slow
def test_standard_version_matches_direct():
    from pyautoattack import AutoAttack
    entry, model = _robust_model()
    x, y = _data(entry, 16)
    direct = AutoAttack(model, norm="Linf", eps=0.1, version="standard", seed=7)
    x_direct, _ = direct.run_standard_evaluation(x, y, batch_size=16)
    ours = run_cascade(make_adversary(model, norm="linf", eps=0.1, version="standard", attacks=None, seed=7,
                                      device="cpu", num_classes=10), x, y, batch_size=16)
    assert torch.allclose(ours.x_adv, x_direct)


def test_attack_batch_is_part_of_the_config_not_the_engine(tiny_zoo):
    """pyautoattack's results depend on its batch: --batch-size must not change them, the config's batch does."""
    from vitbench.data import open_dataset
    from vitbench.engine import Engine, Options, SuiteRun
    from vitbench.store import open_store
    from vitbench.suites.autoattack import AutoAttackConfig
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    job = SuiteRun("autoattack", AutoAttackConfig(norm="linf", eps=0.01, version="custom", attacks=("apgd-ce",)))
    small = Engine(open_store(), Options(n_examples=10, device="cpu", batch_size=4))
    large = Engine(open_store(), Options(n_examples=10, device="cpu", batch_size=64))
    assert small.key(entry, data, job)[0] == large.key(entry, data, job)[0]
    other = SuiteRun("autoattack", AutoAttackConfig(norm="linf", eps=0.01, version="custom", attacks=("apgd-ce",),
                                                    batch_size=5))
    assert small.key(entry, data, other)[0] != small.key(entry, data, job)[0]
    assert "attack-batch-reduced" in small.run(entry, data, job).flags
    assert "attack-batch-reduced" not in large.run(entry, data, other).flags


def test_duplicate_attacks_are_refused():
    from vitbench.suites.autoattack import AutoAttackConfig
    with pytest.raises(ValueError, match="once"):
        AutoAttackConfig(norm="linf", eps=0.1, version="custom", attacks=("apgd-ce", "apgd-ce"))


def _records(order, broken):
    """100 clean-correct points; ``broken[attack]`` of them broken by each attack (the rest stay robust)."""
    out = []
    for attack in order:
        out += [{"clean_correct": True, "robust": False, "broken_by": attack}] * broken.get(attack, 0)
    return out + [{"clean_correct": True, "robust": True, "broken_by": None}] * (100 - len(out))


def _official(order, records):
    """pyautoattack's own check_square_sr on the accuracy dictionary its cascade builds."""
    import warnings

    from pyautoattack import checks
    acc, remaining = {"clean": 1.0}, 100
    for attack in order:
        remaining -= sum(r["broken_by"] == attack for r in records)
        acc[attack] = remaining / 100
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checks.check_square_sr(acc)
    return any("Square Attack has decreased" in str(w.message) for w in caught)


PLUS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")


@pytest.mark.parametrize("version, attacks, broken, flagged", [
    ("standard", (), {"apgd-ce": 30, "square": 2}, True),           # Square last, 2 points: flagged
    ("standard", (), {"apgd-ce": 30}, False),
    ("plus", (), {"apgd-ce": 30, "square": 2, "apgd-t": 3}, False),  # Square not last: the official rule is silent
    ("custom", ("square", "apgd-ce"), {"square": 5, "apgd-ce": 1}, False),
    ("custom", ("apgd-ce", "square"), {"apgd-ce": 10, "square": 1}, True),
    ("custom", ("square",), {"square": 5}, False),                   # nothing to compare with
])
def test_square_flag_follows_the_official_rule(version, attacks, broken, flagged):
    from vitbench.suites import get_suite
    suite = get_suite("autoattack")
    config = suite.Config(norm="linf", eps=0.1, version=version, attacks=attacks)
    records = _records(config.attack_list, broken)
    got = "square-beat-white-box" in suite.run_flags(records, config, suite.aggregate(records, config))
    assert got == flagged == _official(config.attack_list, records)
