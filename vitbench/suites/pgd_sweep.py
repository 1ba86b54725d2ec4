"""PGD sweeps: robust accuracy over a list of eps and of step counts, L-inf or L2, with restarts.

For each step count, eps values are attacked in increasing order. A sample broken at a smaller eps counts as
broken at every larger eps and is not attacked again (its adversarial example lies inside the larger ball), and
clean-misclassified samples are never attacked. Random starts are drawn per (steps, eps, restart) value for the
whole chunk, so every attacked sample starts where an independent attack at that eps (same seed and chunk size)
would start: the curve is at least as strong as independent per-eps attacks, for much less work. The step size
is a fixed ``alpha`` or ``alpha_factor * eps / steps`` (2.5: Madry et al.; 1.5: the light recipe).

Flags: ``accuracy-rises-with-eps`` (only possible with carry off), ``loss-falls-with-eps`` (samples robust at
two eps reach a lower mean loss at the larger one: weak or masked gradients), ``more-steps-weaker``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vitbench.attacks.pgd import ALPHA_FACTOR_MADRY, pgd, random_start, step_size
from vitbench.metrics import Column, Metric, clean_column, column, proportion, threat_id
from vitbench.suites import register
from vitbench.suites.base import Suite, SuiteOutput, eps_label
from vitbench.suites.clean import predict
from vitbench.threat import check_eps, parse_norm

LOSS_TOLERANCE = 1e-3


@dataclass(frozen=True)
class PGDSweepConfig:
    norm: str | None = None
    eps: tuple[float, ...] = ()
    eps_factors: tuple[float, ...] = ()
    steps: tuple[int, ...] = (10,)
    restarts: int = 1
    alpha: float | None = None
    alpha_factor: float = ALPHA_FACTOR_MADRY
    random_start: bool = True
    carry: bool = True

    def __post_init__(self) -> None:
        if self.norm is None:
            raise ValueError("needs a norm: pass --norm or give the model a threat_model")
        object.__setattr__(self, "norm", parse_norm(self.norm))
        eps = tuple(self.eps)
        if self.eps_factors:
            if len(eps) != 1:
                raise ValueError("eps_factors scale a single eps (from --eps or the model's threat model)")
            eps = tuple(f * eps[0] for f in self.eps_factors)
            object.__setattr__(self, "eps_factors", ())
        if not eps:
            raise ValueError("needs eps values: set eps (a list) or pass --eps")
        if any(e < 0 for e in eps):
            raise ValueError("eps values must be >= 0")
        for e in eps:
            check_eps(self.norm, e)
        object.__setattr__(self, "eps", tuple(sorted(set(round(e, 10) for e in eps))))
        object.__setattr__(self, "steps", tuple(sorted(set(self.steps))))
        if any(s < 1 for s in self.steps) or self.restarts < 1:
            raise ValueError("steps and restarts must be >= 1")


def start_salt(steps: int, eps: float, restart: int) -> tuple:
    """The chunk-generator salt of a random start: by values, so a run at one eps alone starts where a sweep does."""
    return ("pgd", steps, round(eps, 10), restart)


def key(steps: int, eps: float) -> str:
    return f"pgd{steps}@{eps:.6g}"


def _attack(model, chunk, idx, *, config, steps, eps, batch_size):
    """Attack samples ``idx`` of the chunk at one (steps, eps); returns (success, loss) for them."""
    alpha = step_size(eps, steps, alpha=config.alpha, alpha_factor=config.alpha_factor)
    noises = [random_start(tuple(chunk.x.shape), norm=config.norm, eps=eps, device=chunk.x.device,
                           generator=chunk.generator(*start_salt(steps, eps, r))) if config.random_start else None
              for r in range(config.restarts)]
    res = pgd(model, chunk.x[idx], chunk.y[idx], norm=config.norm, eps=eps, steps=steps, alpha=alpha,
              inits=[None if n is None else n[idx] for n in noises], batch_size=batch_size)
    return res.success, res.loss


@register
class PGDSweepSuite(Suite):
    name = "pgd_sweep"
    version = 2
    Config = PGDSweepConfig
    summary = "PGD robust accuracy over eps and step counts (L-inf/L2, restarts, step-size rules)"
    plots = ("robustness_curves",)

    def run(self, model, chunk, config: PGDSweepConfig, ctx) -> SuiteOutput:
        n = len(chunk.y)
        clean = predict(model, chunk.x, ctx.batch_size).argmax(1) == chunk.y
        table_r = torch.zeros(len(config.steps), len(config.eps), n, dtype=torch.bool)
        table_l = torch.full((len(config.steps), len(config.eps), n), float("nan"))
        for si, steps in enumerate(config.steps):
            broken = ~clean
            for ei, eps in enumerate(config.eps):
                todo = (~broken if config.carry else clean).nonzero().flatten()
                if eps > 0 and len(todo):
                    ok, loss = _attack(model, chunk, todo, config=config, steps=steps, eps=eps,
                                       batch_size=ctx.batch_size)
                    table_l[si, ei, todo.cpu()] = loss.detach().cpu()
                    hit = todo[ok]
                    now_broken = broken.clone() if config.carry else ~clean
                    now_broken[hit] = True
                else:
                    now_broken = broken.clone() if config.carry else ~clean
                table_r[si, ei] = (~now_broken).cpu()
                if config.carry:
                    broken = now_broken
        records = []
        for i in range(n):
            records.append({"clean_correct": bool(clean[i]),
                            "robust": table_r[:, :, i].tolist(),
                            "loss": [[None if v != v else round(float(v), 6) for v in row]
                                     for row in table_l[:, :, i].tolist()]})
        return SuiteOutput(records)

    def aggregate(self, records, config: PGDSweepConfig) -> dict[str, Metric]:
        out = {"clean_accuracy": proportion([r["clean_correct"] for r in records])}
        for si, steps in enumerate(config.steps):
            for ei, eps in enumerate(config.eps):
                out[key(steps, eps)] = proportion([r["robust"][si][ei] for r in records])
        return out

    def run_flags(self, records, config: PGDSweepConfig, metrics) -> list[str]:
        flags = []
        n = max(len(records), 1)
        tol = max(1.0 / n, 0.005)
        for si, steps in enumerate(config.steps):
            accs = [metrics[key(steps, e)].value for e in config.eps]
            if any(b > a + 1e-12 for a, b in zip(accs, accs[1:], strict=False)):
                flags.append("accuracy-rises-with-eps")
            for ei in range(len(config.eps) - 1):
                both = [r["loss"][si] for r in records  # samples robust (so attacked) at both eps
                        if r["robust"][si][ei] and r["robust"][si][ei + 1]
                        and r["loss"][si][ei] is not None and r["loss"][si][ei + 1] is not None]
                if both and sum(b[ei + 1] - b[ei] for b in both) / len(both) < -LOSS_TOLERANCE:
                    flags.append("loss-falls-with-eps")
                    break
        for eps in config.eps:
            accs = [metrics[key(s, eps)].value for s in config.steps]
            if any(b > a + tol for a, b in zip(accs, accs[1:], strict=False)):
                flags.append("more-steps-weaker")
                break
        return sorted(set(flags))

    def columns(self, config: PGDSweepConfig, metrics) -> list[Column]:
        cols = [clean_column(metrics)]
        for steps in config.steps:
            for eps in config.eps:
                cols.append(column(metrics, key(steps, eps), id=f"pgd_sweep/pgd{steps}/robust_accuracy@"
                                   f"{threat_id(config.norm, eps)}", label=f"PGD-{steps} {eps_label(config.norm, eps)}",
                                   rank=30, kind="robust", attack=f"PGD-{steps}", threat=(config.norm, eps)))
        return cols

    def threat(self, config: PGDSweepConfig):
        return config.norm, max(config.eps)

    def cost(self, config) -> float:
        return float(sum(config.steps) * len(config.eps) * config.restarts)
