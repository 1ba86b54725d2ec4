"""AutoAttack (Croce and Hein 2020) through pyautoattack: standard, plus, rand or a custom attack list.

``custom`` runs the chosen attacks with the standard version's hyperparameters (1 APGD restart, 9 target classes,
1 FAB restart, 5000 Square queries), i.e. "the standard version restricted to these attacks"; pyautoattack's own
custom version would keep its constructors' defaults (5 APGD and FAB restarts) instead.

Per sample: clean correctness, robustness, and which attack broke it. Chunk seeds are passed to pyautoattack
(which re-seeds the global RNG before every attack call). pyautoattack's reliability checks run on every chunk and
their flags are stored with it; "square-beat-white-box" is decided on the whole run by the official rule
(autoattack's ``check_square_sr``): Square's robust accuracy lies more than 0.2 points below the lowest accuracy of
clean and every other attack. Accuracies are cumulative, so the rule fires only when Square runs last (standard, or
a custom list ending with it); with attacks after it (plus, other custom orders) it never fires, as in the official
code. How many points Square broke stays in the ``after_square`` metric either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from vitbench.attacks.autoattack import (
    ATTACKS,
    VERSIONS,
    cascade_accuracies,
    make_adversary,
    run_cascade,
    square_beat_white_box,
)
from vitbench.metrics import Column, Metric, clean_column, column, proportion, threat_id
from vitbench.suites import register
from vitbench.suites.base import Suite, SuiteOutput, eps_label
from vitbench.threat import check_eps, parse_norm

#: leaderboard rank of each version's column: the lowest present is a row's headline (the strongest version)
HEADLINE_RANK = {"plus": 19, "standard": 20, "rand": 21, "custom": 22}
#: attack batch (pyautoattack's default); it is part of the result, so it is a config value, not the engine's
DEFAULT_AA_BATCH = 250
STANDARD_ATTACKS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
                    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
                    "rand": ("apgd-ce", "apgd-dlr")}


@dataclass(frozen=True)
class AutoAttackConfig:
    norm: str | None = None
    eps: float | None = None
    version: str = "standard"
    attacks: tuple[str, ...] = ()
    batch_size: int = DEFAULT_AA_BATCH

    def __post_init__(self) -> None:
        if self.norm is None or self.eps is None:
            raise ValueError("needs norm and eps: pass --norm/--eps or give the model a threat_model")
        object.__setattr__(self, "norm", parse_norm(self.norm))
        object.__setattr__(self, "eps", check_eps(self.norm, self.eps))
        if self.version not in VERSIONS:
            raise ValueError(f"version {self.version!r} is not one of {', '.join(VERSIONS)}")
        if self.version == "custom":
            bad = [a for a in self.attacks if a not in ATTACKS]
            if not self.attacks or bad:
                raise ValueError(f"version custom needs attacks from {', '.join(ATTACKS)}")
            if len(set(self.attacks)) != len(self.attacks):
                raise ValueError("version custom: each attack may appear once in the list")
        elif self.attacks:
            raise ValueError(f"attacks are only for version custom (version {self.version} fixes them)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    @property
    def attack_list(self) -> tuple[str, ...]:
        return self.attacks if self.version == "custom" else STANDARD_ATTACKS[self.version]

    @property
    def label(self) -> str:
        if self.version == "standard":
            return "AA"
        if self.version == "custom":
            return "AA[" + "+".join(a.upper() for a in self.attacks) + "]"
        return f"AA-{self.version}"


@register
class AutoAttackSuite(Suite):
    name = "autoattack"
    version = 1
    Config = AutoAttackConfig
    summary = "AutoAttack via pyautoattack (standard/plus/rand/custom), L-inf or L2, per-sample attribution"
    smoke_config = {"version": "custom", "attacks": ("apgd-ce",)}

    def run(self, model, chunk, config: AutoAttackConfig, ctx) -> SuiteOutput:
        adversary = make_adversary(model, norm=config.norm, eps=config.eps, version=config.version,
                                   attacks=config.attacks or None, seed=chunk.seed, device=ctx.device,
                                   num_classes=ctx.entry.num_classes if ctx.entry else 10)
        # pyautoattack draws each attack call's random starts for the whole batch, so the batch size is part of
        # the result: it comes from the config (and the cache key); an out-of-memory back-off below it is flagged
        batch = min(config.batch_size, ctx.batch_size)
        result = run_cascade(adversary, chunk.x, chunk.y, batch_size=batch)
        records = [{"clean_correct": bool(c), "robust": bool(r), "broken_by": b}
                   for c, r, b in zip(result.clean_correct.tolist(), result.robust.tolist(), result.broken_by,
                                      strict=True)]
        flags = [f for f in result.flags if f != "square-beat-white-box"]
        if batch < config.batch_size and batch < len(chunk.y):
            flags.append("attack-batch-reduced")
        return SuiteOutput(records, flags)

    def aggregate(self, records, config: AutoAttackConfig) -> dict[str, Metric]:
        out = {"clean_accuracy": proportion([r["clean_correct"] for r in records]),
               "robust_accuracy": proportion([r["robust"] for r in records])}
        standing = [bool(r["clean_correct"]) for r in records]
        for attack in config.attack_list:  # robust accuracy after each stage of the cascade
            standing = [s and r["broken_by"] != attack for s, r in zip(standing, records, strict=True)]
            out[f"after_{attack}"] = proportion(standing)
        return out

    def run_flags(self, records, config, metrics) -> list[str]:
        if not records:
            return []
        accuracies = cascade_accuracies([r["clean_correct"] for r in records], [r["broken_by"] for r in records],
                                        config.attack_list)
        return ["square-beat-white-box"] if square_beat_white_box(accuracies) else []

    def columns(self, config: AutoAttackConfig, metrics) -> list[Column]:
        # the strongest version present in a row is its headline: plus > standard > rand > custom (lowest rank)
        variant = config.version if config.version != "custom" else "custom[" + "+".join(config.attacks) + "]"
        return [clean_column(metrics),
                column(metrics, "robust_accuracy", id=f"autoattack/{variant}/robust_accuracy@"
                       f"{threat_id(config.norm, config.eps)}",
                       label=f"{config.label} {eps_label(config.norm, config.eps)}",
                       rank=HEADLINE_RANK[config.version], headline=True, kind="robust", attack="AA",
                       version=config.version, threat=(config.norm, config.eps))]

    def cost(self, config) -> float:
        return 100.0 * len(config.attack_list)
