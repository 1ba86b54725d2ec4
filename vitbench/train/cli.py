"""The ``vitbench train`` command: config assembly, the loop, export and registration."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from vitbench.errors import ConfigError


def train_command(args: argparse.Namespace) -> int:
    from vitbench.cli.zoo import _parse_arch_args
    from vitbench.engine import dist_world
    from vitbench.paths import home
    from vitbench.train.config import load_config
    from vitbench.train.loop import train
    from vitbench.train.recipes import get_recipe

    get_recipe(args.recipe)
    if args.bench and not args.register:
        raise ConfigError("--bench runs the battery on the registered model: add --register NAME")
    cli = {"arch": args.arch, "init": args.init, "data": args.data, "epochs": args.epochs, "attack_eps": args.eps,
           "seed": args.seed}
    if args.arch_arg:
        cli["arch_args"] = _parse_arch_args(args.arch_arg)
    config = load_config(args.recipe, config_file=args.config, sets=args.set, cli=cli)
    if args.bench:
        _check_bench(args, config)
    name = args.register or f"{config.arch}.{config.recipe}"
    out = Path(args.out) if args.out else home() / "runs" / name
    if (out / "last.pt").exists() and not args.resume:
        raise ConfigError(f"{out} already holds a training run: pass --resume to continue it or choose another --out")
    result = train(config, out=out, device=args.device, resume=args.resume, workers=args.workers,
                   zoo=getattr(args, "zoo", None))
    rank, _ = dist_world()
    if rank == 0:
        _export(args, name, config, result)
    if args.bench:
        bench_trained(args, name, config)
    return 0


def _export(args: argparse.Namespace, name: str, config, result) -> None:
    """Copy the weights where asked and register the zoo entry (rank 0)."""
    from vitbench.data import open_dataset
    from vitbench.train.export import register_trained
    weights, epoch_weights = result.weights, result.epoch_weights
    if args.weights_dir:
        folder = Path(args.weights_dir)
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
    print(f"weights: {weights}", file=sys.stderr)
    if result.selection:
        print(f"kept epoch {result.selection['epoch']} of {result.selection['last_epoch']} "
              f"({result.selection['rule']}: {100 * result.selection['value']:.1f}%)", file=sys.stderr)
    if args.register:
        space = open_dataset(config.data).label_space
        entry = register_trained(args.register, config, weights, num_classes=space.num_classes, dataset=space.name,
                                 zoo=getattr(args, "zoo", None), epoch_weights=epoch_weights,
                                 force=args.force, selection=result.selection)
        print(f"registered {entry.name} (sha256 {entry.weights.sha256})")


def _check_bench(args: argparse.Namespace, config) -> None:
    """Refuse a --bench that could not run, before training: the preset, the evaluation data (it must open) and
    every suite config of the preset under the threat model the trained entry will get."""
    from vitbench.data import open_dataset
    from vitbench.suites import load_preset, resolve
    preset = load_preset(args.bench)
    data = _bench_data(args, config)
    dataset = open_dataset(data)
    threat = _trained_threat(args, config)
    for item in preset.items:
        resolve(item, overrides={}, default_threat=threat, dataset=dataset,
                where=f"--bench {preset.name} on {args.register} ({data})")


def _bench_data(args: argparse.Namespace, config) -> str:
    data = args.bench_data or config.val_data
    if not data:
        raise ConfigError("--bench needs evaluation data: pass --bench-data SPEC (the config has no val_data)")
    return data


def _trained_threat(args: argparse.Namespace, config) -> tuple[str, float] | None:
    """The (norm, eps) the registered entry will carry (as train.export.zoo_entry sets it)."""
    if config.attack_eps > 0:
        return config.attack_norm, config.attack_eps
    if config.init:
        from vitbench.cli._common import load_zoo
        base = load_zoo(args).get(config.init).threat_model
        return None if base is None else (base.norm, base.eps)
    return None


def bench_trained(args: argparse.Namespace, name: str, config) -> None:
    """``vitbench bench NAME --preset PRESET --data SPEC`` on the new entry, at its threat model's eps.

    Every rank takes part (under torchrun the engine shares the chunks); rank 0 prints the table.
    """
    import torch.distributed as dist

    from vitbench.cli._common import load_zoo
    from vitbench.cli.bench import execute, print_results
    from vitbench.engine import DEFAULT_CHUNK_SIZE, Options
    from vitbench.suites import load_preset
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 has registered the entry
    bench_args = argparse.Namespace(data=_bench_data(args, config), seed=0, n_examples=None, chunk_size=DEFAULT_CHUNK_SIZE,
                                    batch_size=Options().batch_size, device=args.device, norm=None, eps=None)
    results = execute(bench_args, [load_zoo(args).get(name)], load_preset(args.bench))
    if results:
        print_results(results, as_json=False)
