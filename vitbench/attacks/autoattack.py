"""AutoAttack through pyautoattack, with per-sample attribution and its reliability checks recorded.

pyautoattack's ``run_standard_evaluation`` returns only the adversarial examples. To record which attack broke
each sample, :func:`run_cascade` drives the same attack objects, configured by pyautoattack for the chosen
version, through the published cascade: a clean pass marks robust points, each attack runs on still-robust
points in batches of ``batch_size``, and every attack call is seeded exactly as pyautoattack seeds it. Same
model, data, seed, batch size and attack hyperparameters give the same per-sample outcome as calling pyautoattack
directly (``tests/test_autoattack.py`` checks it; ``benchmarks/bench_autoattack.py`` times it). For the custom
version vitbench sets the standard version's hyperparameters (see :func:`make_adversary`).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from vitbench.attacks.flags import CHECK_FLAGS
from vitbench.errors import ConfigError

VERSIONS = ("standard", "plus", "rand", "custom")
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
_AA_NORMS = {"linf": "Linf", "l2": "L2"}

#: the official check's tolerance for Square beating the white-box attacks (autoattack/checks.py check_square_sr)
SQUARE_ALPHA = 0.002


@dataclass
class CascadeResult:
    """Per-sample outcome of the AutoAttack cascade on one chunk."""

    clean_correct: torch.Tensor          # (B,) bool
    robust: torch.Tensor                 # (B,) bool, correct under every attack
    broken_by: list[str | None]          # attack that first succeeded, "clean" if misclassified, None if robust
    x_adv: torch.Tensor
    flags: list[str] = field(default_factory=list)
    attacks: list[str] = field(default_factory=list)


class _FlagCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.flags: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.add(record.getMessage())

    def add(self, message: str) -> None:
        for needle, flag in CHECK_FLAGS.items():
            if needle in message and flag not in self.flags:
                self.flags.append(flag)


def make_adversary(model: nn.Module, *, norm: str, eps: float, version: str, attacks: tuple[str, ...] | None,
                   seed: int, device: torch.device | str, num_classes: int):
    """Configure pyautoattack's AutoAttack (the number of target classes is capped at num_classes - 1)."""
    from pyautoattack import AutoAttack
    if version not in VERSIONS:
        raise ConfigError(f"autoattack version {version!r} is not one of {', '.join(VERSIONS)}")
    if version == "custom":
        bad = [a for a in attacks or () if a not in ATTACKS]
        if not attacks or bad:
            raise ConfigError(f"autoattack custom version needs attacks from {', '.join(ATTACKS)}"
                              + (f" (unknown: {bad[0]})" if bad else ""))
    adversary = AutoAttack(model, norm=_AA_NORMS[norm], eps=eps, version=version, seed=seed, device=device,
                           attacks=list(attacks) if version == "custom" else None)
    if version == "custom":
        # the values pyautoattack's standard version uses for L-inf / L2
        adversary.apgd.n_restarts = 1
        adversary.apgd_targeted.n_target_classes = 9
        adversary.fab.n_target_classes = 9
        adversary.fab.n_restarts = 1
        adversary.apgd_targeted.n_restarts = 1
        adversary.square.n_queries = 5000
    targets = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
    adversary.apgd_targeted.n_target_classes = targets
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
    return adversary


def cascade_accuracies(clean_correct: list[bool], broken_by: list[str | None],
                       attacks: tuple[str, ...]) -> dict[str, float]:
    """Robust accuracy after each attack of the cascade, in order, with "clean" first: the dictionary the official
    AutoAttack builds (``robust_accuracy_dict``) and hands to its Square check. Attacks run after every point was
    broken are left out, as the official loop stops there."""
    n = len(clean_correct)
    remaining = sum(bool(c) for c in clean_correct)
    out = {"clean": remaining / n if n else float("nan")}
    for attack in attacks:
        if remaining == 0:
            break
        remaining -= sum(b == attack for b in broken_by)
        out[attack] = remaining / n
    return out


def square_beat_white_box(accuracies: dict[str, float], alpha: float = SQUARE_ALPHA) -> bool:
    """The official rule (``check_square_sr``): Square's accuracy lies more than ``alpha`` below the lowest
    accuracy of every other entry (clean and the other attacks, whichever order they ran in).

    Because the accuracies are cumulative, this only fires when Square runs last: with attacks after it
    (``plus``, or a custom order) the lowest other entry is the final accuracy, which is never above Square's.
    """
    if "square" not in accuracies or len(accuracies) <= 2:
        return False
    others = min(v for k, v in accuracies.items() if k != "square")
    return accuracies["square"] < others - alpha


def _attack_batch(adversary, attack: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    seed = adversary.get_seed()
    if attack in ("apgd-ce", "apgd-dlr"):
        adversary.apgd.loss = "ce" if attack == "apgd-ce" else "dlr"
        adversary.apgd.seed = seed
        return adversary.apgd.perturb(x, y)
    if attack == "apgd-t":
        adversary.apgd_targeted.seed = seed
        return adversary.apgd_targeted.perturb(x, y)
    if attack in ("fab", "fab-t"):
        adversary.fab.targeted = attack == "fab-t"
        if attack == "fab-t":
            adversary.fab.n_restarts = 1
        adversary.fab.seed = seed
        return adversary.fab.perturb(x, y)
    adversary.square.seed = seed
    return adversary.square.perturb(x, y)


def _checks(adversary, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    from pyautoattack import checks
    head_x, head_y = x[:batch_size], y[:batch_size]
    if adversary.version != "rand":
        checks.check_randomized(adversary.get_logits, head_x, head_y, bs=batch_size, logger=adversary.logger)
    n_cls = checks.check_range_output(adversary.get_logits, head_x, logger=adversary.logger)
    checks.check_dynamic(adversary.model, head_x, False, logger=adversary.logger)
    checks.check_n_classes(n_cls, adversary.attacks_to_run, adversary.apgd_targeted.n_target_classes,
                           adversary.fab.n_target_classes, logger=adversary.logger)


def run_cascade(adversary, x: torch.Tensor, y: torch.Tensor, *, batch_size: int) -> CascadeResult:
    """Run the AutoAttack cascade on (x, y) (already on the adversary's device)."""
    collector = _FlagCollector()
    logger = adversary.logger
    saved = (logger.level, logger.propagate)
    if logger.getEffectiveLevel() > logging.WARNING:
        # the CLI quiets pyautoattack's logger; its check warnings must still reach the collector (not the screen)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    logger.addHandler(collector)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _cascade(adversary, x, y, batch_size)
        for w in caught:
            collector.add(str(w.message))
    finally:
        logger.removeHandler(collector)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    result.flags = collector.flags
    return result


def _cascade(adversary, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> CascadeResult:
    _checks(adversary, x, y, batch_size)
    n = len(x)
    robust = torch.zeros(n, dtype=torch.bool, device=x.device)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            robust[sl] = adversary.get_logits(x[sl]).argmax(1) == y[sl]
        clean = robust.clone()
        broken_by: list[str | None] = [None if c else "clean" for c in clean.tolist()]
        x_adv = x.clone()
        for attack in adversary.attacks_to_run:
            todo = robust.nonzero().flatten()
            if len(todo) == 0:
                break
            for start in range(0, len(todo), batch_size):
                idx = todo[start:start + batch_size]
                adv = _attack_batch(adversary, attack, x[idx].clone(), y[idx].clone())
                fooled = adversary.get_logits(adv).argmax(1) != y[idx]
                hit = idx[fooled]
                robust[hit] = False
                x_adv[hit] = adv[fooled].detach()
                for i in hit.tolist():
                    broken_by[i] = attack
    return CascadeResult(clean, robust, broken_by, x_adv, attacks=list(adversary.attacks_to_run))
