"""``vitbench train RECIPE ...``: train a model with a bundled recipe and register it in the zoo."""

from __future__ import annotations

import argparse


def add_parser(sub, parent) -> None:
    p = sub.add_parser("train", help="train a model with a bundled recipe and register it", parents=[parent])
    p.add_argument("recipe", help="recipe name (see `vitbench list recipes`)")
    p.add_argument("--config", help="YAML file with recipe config values")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--arch", help="timm architecture")
    p.add_argument("--arch-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--init", metavar="NAME", help="fine-tune from this zoo entry (fine-tuning recipes)")
    p.add_argument("--data", help="training dataset spec (default digits?split=train)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--eps", help="final training eps, e.g. 4/255 or 0.1")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes per rank (default 0)")
    p.add_argument("--out", help="output folder for checkpoints (default: VITBENCH_HOME/runs/NAME)")
    p.add_argument("--register", metavar="NAME", help="register the result in the zoo under NAME")
    p.add_argument("--resume", action="store_true", help="resume from the last epoch checkpoint in --out")
    p.add_argument("--weights-dir", help="copy the final weights here as NAME.safetensors (and register that file)")
    p.add_argument("--force", action="store_true", help="replace a zoo entry of the same name")
    p.add_argument("--bench", metavar="PRESET", help="with --register: run this battery preset on the new entry")
    p.add_argument("--bench-data", metavar="SPEC", help="dataset for --bench (default: the config's val_data)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vitbench.cli.zoo import _parse_arch_args
    from vitbench.training.config import load_config
    from vitbench.training.recipes import get_recipe
    from vitbench.training.run import TrainJob, run_training
    get_recipe(args.recipe)
    cli = {"arch": args.arch, "init": args.init, "data": args.data, "epochs": args.epochs, "attack_eps": args.eps,
           "seed": args.seed}
    if args.arch_arg:
        cli["arch_args"] = _parse_arch_args(args.arch_arg)
    config = load_config(args.recipe, config_file=args.config, sets=args.set, cli=cli)
    job = TrainJob(out=Path(args.out) if args.out else None, device=args.device, workers=args.workers,
                   resume=args.resume, register=args.register, force=args.force,
                   weights_dir=Path(args.weights_dir) if args.weights_dir else None, bench=args.bench,
                   bench_data=args.bench_data, zoo=getattr(args, "zoo", None))
    trained = run_training(config, job)
    results = [r for report in trained.reports for r in report.results]
    if results:
        from vitbench.cli.bench import print_results
        print_results(results, as_json=False)
    return 0
