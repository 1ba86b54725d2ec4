"""One training run from start to zoo entry: config, checks, the loop, export, registration, the optional battery.

``vitbench train`` (cli/train.py) and ``vitbench.train`` (the Python API) both call :func:`run_training`.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitbench.errors import ConfigError
from vitbench.training.config import TrainConfig


@dataclass(frozen=True)
class TrainJob:
    """What to do besides the config: where, on what device, and what to do with the result."""

    out: Path | None = None
    device: str = "auto"
    workers: int = 0
    resume: bool = False
    register: str | None = None
    force: bool = False
    weights_dir: Path | None = None
    bench: str | None = None
    bench_data: str | None = None
    zoo: str | None = None


@dataclass(frozen=True)
class Trained:
    """The outcome of :func:`run_training`: the zoo entry (None on ranks other than 0), the loop's result, and the
    battery's reports when ``--bench`` was asked for."""

    entry: Any
    result: Any
    reports: tuple = ()


def run_training(config: TrainConfig, job: TrainJob) -> Trained:
    """Train, export and (with ``job.register``) register, then run the asked battery on the new entry.

    Without ``register`` the entry is not written to any zoo file but points at the exported weights, so it can be
    evaluated at once (``vitbench.evaluate(entry, ...)``).

    Raises:
        ConfigError: a --bench that could not run (checked before training), or an --out holding another run.
    """
    from vitbench.engine import dist_world
    from vitbench.paths import home
    from vitbench.training.loop import train
    from vitbench.training.recipes import get_recipe
    get_recipe(config.recipe)
    if job.bench and not job.register:
        raise ConfigError("--bench runs the battery on the registered model: add --register NAME")
    if job.bench:
        check_bench(config, job)
    name = job.register or f"{config.arch}.{config.recipe}"
    out = Path(job.out) if job.out else home() / "runs" / name
    if (out / "last.pt").exists() and not job.resume:
        raise ConfigError(f"{out} already holds a training run: pass --resume to continue it or choose another --out")
    result = train(config, out=out, device=job.device, resume=job.resume, workers=job.workers, zoo=job.zoo)
    rank, _ = dist_world()
    entry = export(name, config, result, job) if rank == 0 else None
    reports = (bench_trained(name, config, job),) if job.bench else ()
    return Trained(entry, result, reports)


def export(name: str, config: TrainConfig, result, job: TrainJob):
    """Copy the weights where asked and build (with ``job.register``: register) the zoo entry (rank 0)."""
    from vitbench.data import open_dataset
    from vitbench.training.export import register_trained, zoo_entry
    weights, epoch_weights = _place_weights(name, result, job.weights_dir)
    print(f"weights: {weights}", file=sys.stderr)
    if result.selection:
        print(f"kept epoch {result.selection['epoch']} of {result.selection['last_epoch']} "
              f"({result.selection['rule']}: {100 * result.selection['value']:.1f}%)", file=sys.stderr)
    space = open_dataset(config.data).label_space
    if not job.register:
        from vitbench.zoo.schema import user_zoo_path
        return zoo_entry(name, config, weights, num_classes=space.num_classes, dataset=space.name,
                         zoo_file=user_zoo_path(job.zoo), epoch_weights=epoch_weights, selection=result.selection)
    entry = register_trained(job.register, config, weights, num_classes=space.num_classes, dataset=space.name,
                             zoo=job.zoo, epoch_weights=epoch_weights, force=job.force, selection=result.selection)
    print(f"registered {entry.name} (sha256 {entry.weights.sha256})")
    return entry


def _place_weights(name: str, result, folder: Path | None) -> tuple[Path, list]:
    """The final and epoch weights, copied into ``folder`` as NAME.safetensors / NAME.eEEE.safetensors."""
    if folder is None:
        return result.weights, list(result.epoch_weights)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.safetensors"
    shutil.copyfile(result.weights, weights)
    epoch_weights = []
    for epoch, src in result.epoch_weights:
        if epoch == result.exported_epoch:  # the exported epoch: the final weights themselves
            epoch_weights.append((epoch, weights))
            continue
        epoch_weights.append((epoch, folder / f"{name}.e{epoch:03d}.safetensors"))
        shutil.copyfile(src, epoch_weights[-1][1])
    return weights, epoch_weights


def check_bench(config: TrainConfig, job: TrainJob) -> None:
    """Refuse a --bench that could not run, before training: the preset, the evaluation data (it must open) and
    every suite config of the preset under the threat model the trained entry will get."""
    from vitbench.data import open_dataset
    from vitbench.suites import load_preset, resolve
    preset = load_preset(job.bench)
    data = bench_data(config, job)
    dataset = open_dataset(data)
    threat = trained_threat(config, job.zoo)
    for item in preset.items:
        resolve(item, overrides={}, default_threat=threat, dataset=dataset,
                where=f"--bench {preset.name} on {job.register} ({data})")


def bench_data(config: TrainConfig, job: TrainJob) -> str:
    data = job.bench_data or config.val_data
    if not data:
        raise ConfigError("--bench needs evaluation data: pass --bench-data SPEC (the config has no val_data)")
    return data


def trained_threat(config: TrainConfig, zoo: str | None) -> tuple[str, float] | None:
    """The (norm, eps) the registered entry will carry (as training.export.zoo_entry sets it)."""
    if config.attack_eps > 0:
        return config.attack_norm, config.attack_eps
    if config.init:
        from vitbench.zoo.schema import load_zoo
        base = load_zoo(zoo, require_user=zoo is not None).get(config.init).threat_model
        return None if base is None else (base.norm, base.eps)
    return None


def bench_trained(name: str, config: TrainConfig, job: TrainJob):
    """The battery preset on the new entry at its threat model's eps (every rank takes part; under torchrun the
    engine shares the chunks); returns the reports (rank 0)."""
    import torch.distributed as dist

    from vitbench.api import evaluate
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 has registered the entry
    return evaluate(name, bench_data(config, job), preset=job.bench, device=job.device, zoo=job.zoo)


def config_values(values: dict[str, Any]) -> dict[str, Any]:
    """Python keyword names for config keys: ``eps`` means ``attack_eps`` (as ``--eps`` does)."""
    out = dict(values)
    if "eps" in out:
        out["attack_eps"] = out.pop("eps")
    return out
