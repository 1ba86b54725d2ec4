"""Attack effectiveness (light recipe, Debenedetti et al. 2023; methods.md A, "Analyses").

How far a few-step PGD, the attack used in adversarial training, falls short of a strong attack. For each k in
``steps`` (default 1, 2, 5, 10): PGD-k with step size alpha = ``alpha_factor`` * eps / k (1.5: the same total
step budget for every k), uniform random start, no early stop (the loss matters, not the first misclassifying
iterate). The oracle is PGD-``oracle_steps`` (default 200, the authors' code) with alpha =
``oracle_alpha_factor`` * eps / oracle_steps (not published: 1.5, the same rule). With L = the mean cross-entropy
at the final iterates over the evaluated samples, per seed s:

    gap_k(s) = |L_oracle(s) - L_k(s)| / L_oracle(s)          (x 100: the paper's percent)

and the metric ``loss_gap_k{k}`` is the mean of gap_k(s) over ``seeds`` seeds (default 3), with
``loss_gap_k{k}_std`` the sample standard deviation over seeds (0 for one seed). Every (seed, attack) draws its
own random start from the chunk generator (salt ("start", s, k) or ("start", s, "oracle")); one clean pass and
one oracle run per seed are shared by all k. Records keep every per-sample loss (per k and seed, oracle per seed),
so the ratio of means is recomputed exactly for any number of examples. Published epoch-100 gaps (%, k = 1/2/5/10):
XCiT-S12 light 6.8 / 3.4 / 1.5 / 0.8; canonical heavy recipe 71.5 / 67.3 / 58.6 / 40.6. Caution: on a
non-robust model the cross-entropy keeps growing with more steps after every point is misclassified, so its gaps
mostly measure that growth; the analysis compares models of similar robustness (training recipes, epochs).

``n_examples: N`` (the engine's per-suite cap) evaluates only the first N examples: a cheaper estimate for quick
batteries (the demo).

Flag ``oracle-weaker-than-pgd``: some PGD-k reaches a higher mean loss than the oracle (the gap is then measured
against a weak reference). Checkpoints along training: see :mod:`vitbench.zoo.epochs` (entries ``NAME+eEPOCH``);
:func:`plot_gap_vs_epoch` draws the gap per k against the epoch.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vitbench.attacks.pgd import ALPHA_FACTOR_LIGHT, pgd, random_start, step_size
from vitbench.metrics import Column, Metric, column, mean_metric, proportion, threat_id
from vitbench.suites import DEFAULT_NORM, register
from vitbench.suites.base import Chunk, Context, Suite, SuiteOutput, eps_label
from vitbench.suites.clean import predict
from vitbench.threat import check_eps, parse_norm

DEFAULT_STEPS = (1, 2, 5, 10)
DEFAULT_ORACLE_STEPS = 200
DEFAULT_SEEDS = 3
FLAG_WEAK_ORACLE = "oracle-weaker-than-pgd"


@dataclass(frozen=True)
class AttackEffectivenessConfig:
    """norm / eps: the threat model (default: the model's; norm linf); steps: the k of PGD-k; oracle_steps: the
    oracle's steps; seeds: independent random starts per attack; alpha_factor / oracle_alpha_factor: alpha =
    factor * eps / steps; n_examples: cap on the examples this suite evaluates (the engine applies it)."""

    norm: str | None = None            # default: linf (the recipe's threat model)
    eps: float | None = None
    steps: tuple[int, ...] = DEFAULT_STEPS
    oracle_steps: int = DEFAULT_ORACLE_STEPS
    seeds: int = DEFAULT_SEEDS
    alpha_factor: float = ALPHA_FACTOR_LIGHT
    oracle_alpha_factor: float = ALPHA_FACTOR_LIGHT
    n_examples: int | None = None

    def __post_init__(self) -> None:
        if self.eps is None:
            raise ValueError("needs eps: pass --eps or give the model a threat_model")
        object.__setattr__(self, "norm", parse_norm(self.norm or DEFAULT_NORM))
        check_eps(self.norm, self.eps)
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        steps = tuple(sorted(set(self.steps)))
        if not steps or steps[0] < 1:
            raise ValueError("steps must list step counts >= 1 (e.g. [1, 2, 5, 10])")
        object.__setattr__(self, "steps", steps)
        if self.oracle_steps <= steps[-1]:
            raise ValueError(f"oracle_steps ({self.oracle_steps}) must exceed the largest k ({steps[-1]})")
        if self.seeds < 1:
            raise ValueError("seeds must be >= 1")
        if self.alpha_factor <= 0 or self.oracle_alpha_factor <= 0:
            raise ValueError("alpha_factor and oracle_alpha_factor must be > 0")


def loss_gap(oracle_loss: float, k_loss: float) -> float:
    """|L_oracle - L_k| / L_oracle as a fraction (x 100 for percent); nan when L_oracle is 0."""
    if oracle_loss == 0:
        return float("nan")
    return abs(oracle_loss - k_loss) / oracle_loss


def _final_loss(model, chunk: Chunk, *, config: AttackEffectivenessConfig, steps: int, alpha_factor: float,
                salt: tuple, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD-``steps`` without early stop from a random start drawn with ``salt``; (loss, robust), each (B,)."""
    x, y = chunk.x, chunk.y
    alpha = step_size(config.eps, steps, alpha_factor=alpha_factor)
    start = random_start(tuple(x.shape), norm=config.norm, eps=config.eps, generator=chunk.generator(*salt),
                         device=x.device)
    res = pgd(model, x, y, norm=config.norm, eps=config.eps, steps=steps, alpha=alpha, inits=[start],
              early_stop=False, batch_size=batch_size)
    return res.loss.detach().cpu(), ~res.success.cpu()


def _seed_means(records: Sequence[dict], pick) -> list[float]:
    """Per seed, the mean over records of pick(record) (a per-seed list)."""
    rows = [pick(r) for r in records]
    return [sum(col) / len(col) for col in zip(*rows, strict=True)]


@register
class AttackEffectivenessSuite(Suite):
    name = "attack_effectiveness"
    version = 1
    Config = AttackEffectivenessConfig
    summary = "relative loss gap of PGD-k (alpha 1.5 eps/k) to a many-step oracle PGD, over seeds (light recipe)"
    smoke_config = {"steps": (1, 2), "oracle_steps": 5, "seeds": 1}
    plots = ("loss_gap_vs_k", "loss_gap_vs_epoch")

    def run(self, model, chunk: Chunk, config: AttackEffectivenessConfig, ctx: Context) -> SuiteOutput:
        n, n_seeds, n_k = len(chunk.y), config.seeds, len(config.steps)
        logits = predict(model, chunk.x, ctx.batch_size)
        clean_loss = F.cross_entropy(logits.float(), chunk.y, reduction="none").cpu()
        clean_ok = (logits.argmax(1) == chunk.y).cpu()
        loss, robust = torch.zeros(n, n_k, n_seeds), torch.zeros(n, n_k, n_seeds, dtype=torch.bool)
        loss_o, robust_o = torch.zeros(n, n_seeds), torch.zeros(n, n_seeds, dtype=torch.bool)
        common = {"config": config, "batch_size": ctx.batch_size}
        for s in range(n_seeds):
            loss_o[:, s], robust_o[:, s] = _final_loss(model, chunk, steps=config.oracle_steps,
                                                       alpha_factor=config.oracle_alpha_factor,
                                                       salt=("start", s, "oracle"), **common)
            for ki, k in enumerate(config.steps):
                loss[:, ki, s], robust[:, ki, s] = _final_loss(model, chunk, steps=k, salt=("start", s, k),
                                                               alpha_factor=config.alpha_factor, **common)
        records = [{"clean_correct": bool(clean_ok[i]), "clean_loss": float(clean_loss[i]),
                    "loss": loss[i].tolist(), "robust": robust[i].tolist(),
                    "loss_oracle": loss_o[i].tolist(), "robust_oracle": robust_o[i].tolist()}
                   for i in range(n)]
        return SuiteOutput(records)

    def aggregate(self, records, config: AttackEffectivenessConfig) -> dict[str, Metric]:
        if not records:
            return {"n_evaluated": Metric(0.0, uncertain=False)}
        out = {"n_evaluated": Metric(float(len(records)), uncertain=False),
               "clean_accuracy": proportion([r["clean_correct"] for r in records]),
               "clean_loss": mean_metric([r["clean_loss"] for r in records], higher_is_better=False)}
        oracle = _seed_means(records, lambda r: r["loss_oracle"])           # L_oracle(s)
        n = len(records)
        out["oracle_loss"] = Metric(statistics.fmean(oracle), False, n=n)
        out["oracle_accuracy"] = Metric(statistics.fmean(_seed_means(records, lambda r: r["robust_oracle"])), n=n)
        for ki, k in enumerate(config.steps):
            losses = _seed_means(records, lambda r, i=ki: r["loss"][i])     # L_k(s)
            gaps = [loss_gap(o, lk) for o, lk in zip(oracle, losses, strict=True)]
            out[f"loss_k{k}"] = Metric(statistics.fmean(losses), False, n=n)
            out[f"pgd{k}_accuracy"] = Metric(statistics.fmean(_seed_means(records, lambda r, i=ki: r["robust"][i])),
                                             n=n)
            out[f"loss_gap_k{k}"] = Metric(statistics.fmean(gaps), False, n=n)
            out[f"loss_gap_k{k}_std"] = Metric(statistics.stdev(gaps) if len(gaps) > 1 else 0.0, False,
                                               uncertain=False)  # the spread over seeds, shown beside the mean
        return out

    def run_flags(self, records, config: AttackEffectivenessConfig, metrics) -> list[str]:
        if "oracle_loss" not in metrics:
            return []
        oracle = metrics["oracle_loss"].value
        return [FLAG_WEAK_ORACLE] if any(metrics[f"loss_k{k}"].value > oracle for k in config.steps) else []

    def columns(self, config: AttackEffectivenessConfig, metrics) -> list[Column]:
        threat = eps_label(config.norm, config.eps)
        if "oracle_loss" not in metrics:
            return []
        return [column(metrics, f"loss_gap_k{k}", id=f"attack_effectiveness/loss_gap_k{k}@"
                       f"{threat_id(config.norm, config.eps)}", label=f"Loss gap k={k} {threat}", rank=70 + i,
                       kind="analysis", threat=(config.norm, config.eps))
                for i, k in enumerate(config.steps)]

    def cost(self, config: AttackEffectivenessConfig) -> float:
        return 1.0 + config.seeds * (sum(config.steps) + config.oracle_steps)


