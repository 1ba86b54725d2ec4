"""The ``vitbench train`` command: config assembly, the loop, export and registration."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from vitbench.errors import ConfigError


def train_command(args: argparse.Namespace) -> int:
    from vitbench.cli.zoo import _parse_arch_args
    from vitbench.data import open_dataset
    from vitbench.engine import dist_world
    from vitbench.paths import home
    from vitbench.train.config import load_config
    from vitbench.train.export import register_trained
    from vitbench.train.loop import train
    from vitbench.train.recipes import get_recipe

    get_recipe(args.recipe)
    cli = {"arch": args.arch, "data": args.data, "epochs": args.epochs, "attack_eps": args.eps, "seed": args.seed}
    if args.arch_arg:
        cli["arch_args"] = _parse_arch_args(args.arch_arg)
    config = load_config(args.recipe, config_file=args.config, sets=args.set, cli=cli)
    name = args.register or f"{config.arch}.{config.recipe}"
    out = Path(args.out) if args.out else home() / "runs" / name
    if (out / "last.pt").exists() and not args.resume:
        raise ConfigError(f"{out} already holds a training run: pass --resume to continue it or choose another --out")
    result = train(config, out=out, device=args.device, resume=args.resume)
    rank, _ = dist_world()
    if rank != 0:
        return 0
    weights = result.weights
    if args.weights_dir:
        weights = Path(args.weights_dir) / f"{name}.safetensors"
        weights.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.weights, weights)
    print(f"weights: {weights}", file=sys.stderr)
    if args.register:
        space = open_dataset(config.data).label_space
        entry = register_trained(args.register, config, weights, num_classes=space.num_classes, dataset=space.name,
                                 zoo=getattr(args, "zoo", None), epoch_weights=result.epoch_weights,
                                 force=args.force)
        print(f"registered {entry.name} (sha256 {entry.weights.sha256})")
    return 0
