"""``vitbench bench NAME... --data SPEC [--preset P | --suite S[,S...]] ...``: run suites, store, print."""

from __future__ import annotations

import argparse
import json
import os
import sys

from vitbench.cli._common import add_store_arg, add_threat_args, load_zoo, progress_bar
from vitbench.defaults import BATCH_SIZE, CHUNK_SIZE, INTERVAL, RESAMPLES


def add_parser(sub, parent) -> None:
    p = sub.add_parser("bench", help="run a battery of suites on zoo models and store the results", parents=[parent])
    add_bench_args(p)
    add_slurm_args(p)
    p.set_defaults(func=run)


BENCH_DEFAULTS = {"data": None, "preset": "standard", "n-examples": "all", "norm": "the preset's, else the model's, "
                  "else linf", "eps": "the preset's, else the model's threat model"}


def add_bench_args(p: argparse.ArgumentParser, *, models: bool = True, defaults: dict[str, str] | None = None) -> None:
    """The bench options; ``defaults`` overrides the default each help text states (the demo has its own)."""
    shown = {**BENCH_DEFAULTS, **(defaults or {})}
    if models:
        p.add_argument("models", nargs="+", metavar="NAME", help="zoo entry names")
        p.add_argument("--checkpoints", action="store_true",
                       help="also evaluate each epoch checkpoint the entries list (as NAME+eEPOCH)")
    data_default = f" (default: {shown['data']})" if shown["data"] else ""
    p.add_argument("--data", required=models,
                   help=f"dataset spec, e.g. digits or imagenet-val:/data/val?subset=robustbench-5000{data_default}")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", help=f"battery preset name or YAML file (default: {shown['preset']})")
    group.add_argument("--suite", help="comma-separated suites with default configs, e.g. clean,autoattack")
    p.add_argument("--n-examples", type=int, help=f"evaluate the first N examples (default: {shown['n-examples']})")
    add_threat_args(p, norm_help=f"linf or l2 (default: {shown['norm']})",
                    eps_help=f"radius as a float or fraction, e.g. 4/255 or 0.5 (default: {shown['eps']})")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="run seed; chunk i is seeded from (seed, i) (default 0)")
    seeds.add_argument("--seeds", type=_seed_list, metavar="S,S,...",
                       help="run the battery under each seed; tables show the mean and the spread across seeds")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: GPU when present)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"largest batch, halved on out-of-memory (default {BATCH_SIZE})")
    p.add_argument("--chunk-size", type=int, default=CHUNK_SIZE,
                   help=f"examples per stored chunk, part of the cache key (default {CHUNK_SIZE})")
    p.add_argument("--interval", choices=("wilson", "clopper-pearson"), default=INTERVAL,
                   help=f"95%% interval of accuracies (default {INTERVAL}); other metrics get a bootstrap")
    p.add_argument("--resamples", type=int, default=RESAMPLES,
                   help="bootstrap resamples for the intervals of non-accuracy metrics (default 1000; 0: none)")
    p.add_argument("--until-ci", type=_half_width, metavar="W",
                   help="quick sequential mode: stop once the accuracies' 95%% intervals (valid under optional "
                        "stopping) are at most W points wide on either side; flagged sequential, not "
                        "leaderboard-grade; its chunks are reused by a later full run")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    add_store_arg(p)
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="local worker processes sharing the work through chunk leases, each with its share of the "
                        "CPU threads or its own GPU (with --slurm: the job array's size) (default 1)")


#: the Slurm options and their defaults, which add_slurm_args gives them (any other value without --slurm is an
#: error)
SLURM_DEFAULTS = {"partition": None, "gpus_per_worker": 0, "cpus_per_worker": None, "time_min": 60.0,
                  "slurm_arg": [], "slurm_folder": None, "wait": False, "slurm_cluster": "slurm"}


def add_slurm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Slurm", "submit a job array of lease workers through submitit (vitbench[slurm])")
    g.add_argument("--slurm", action="store_true", help="submit --workers N array jobs instead of running here")
    g.add_argument("--partition", help="Slurm partition (default: the cluster's default)")
    g.add_argument("--gpus-per-worker", type=int, default=SLURM_DEFAULTS["gpus_per_worker"], metavar="G",
                   help="GPUs per array job (default 0)")
    g.add_argument("--cpus-per-worker", type=int, metavar="C", help="CPUs per array job (default: Slurm's)")
    g.add_argument("--time-min", type=float, default=SLURM_DEFAULTS["time_min"], metavar="T",
                   help="time limit per job in minutes; a job that runs out requeues and continues (default 60)")
    g.add_argument("--slurm-arg", action="append", default=SLURM_DEFAULTS["slurm_arg"], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=lab or qos=high (repeatable)")
    g.add_argument("--slurm-folder", metavar="DIR",
                   help="where submitit keeps job files and logs (default: $VITBENCH_HOME/slurm); on a shared disk")
    g.add_argument("--wait", action="store_true", help="wait for the array and print the table")
    g.add_argument("--slurm-cluster", choices=("slurm", "local"), default=SLURM_DEFAULTS["slurm_cluster"],
                   help="local: run the array as local processes through submitit's local executor (tests, laptops)")


class _Bar:
    """The progress of a bench as a tqdm bar on stderr (see cli/_common.py)."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def start(self, total: float) -> None:
        self.bar.total = total

    def advance(self, model: str, suite: str, work: float, examples: int = 0) -> None:
        self.bar.describe(f"{model} {suite}")
        self.bar.advance(work, examples)


def _half_width(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"--until-ci {text!r} is not a half-width in points between 0 and 100, "
                                         "e.g. 2")
    return value


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r} is not a comma-separated list of integers") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError("--seeds needs two or more different seeds, e.g. 0,1,2")
    return seeds


def _evaluation(args: argparse.Namespace, seed: int | None = None) -> dict:
    """The keyword arguments of :func:`vitbench.api.evaluate_many` the bench options give."""
    return {"norm": args.norm, "eps": args.eps, "n_examples": args.n_examples,
            "seed": args.seed if seed is None else seed, "device": args.device, "batch_size": args.batch_size,
            "chunk_size": args.chunk_size, "interval": getattr(args, "interval", INTERVAL),
            "resamples": getattr(args, "resamples", RESAMPLES), "until_ci": getattr(args, "until_ci", None)}


def execute(args: argparse.Namespace, entries, preset) -> list:
    """Run the preset on the entries through :func:`vitbench.api.evaluate_many` (once per seed of ``--seeds``);
    returns the RunResults this process aggregated and prints nothing else than a note when other workers
    finished some."""
    from vitbench.api import evaluate_many
    results = []
    seeds = getattr(args, "seeds", None) or [args.seed]
    for seed in seeds:
        with progress_bar(0, "vitbench" if seed == args.seed else f"vitbench seed {seed}") as bar:
            reports = evaluate_many(entries, args.data, preset=preset, progress=_Bar(bar),
                                    workers=getattr(args, "workers", 1), **_evaluation(args, seed))
        results += [result for report in reports for result in report.results]
    expected = len(entries) * len(preset.items) * len(seeds)
    if 0 < expected - len(results) and os.environ.get("RANK", "0") == "0":
        print(f"vitbench: {expected - len(results)} of {expected} suite runs were finished by other workers sharing "
              "this store (see `vitbench status` and `vitbench leaderboard`)", file=sys.stderr)
    return results


def sequential_note(result) -> str:
    """The line that says what a sequential (``--until-ci``) run is."""
    seq = result.sequential
    stopped = "stopped" if seq["n"] < seq["planned_n"] else "ran to the end"
    return (f"vitbench: {result.model} {result.suite}: sequential, not leaderboard-grade: {stopped} after "
            f"{seq['n']} of {seq['planned_n']} examples with the target of +-{seq['target_half_width']:g} points; "
            f"accuracy intervals are Clopper-Pearson at 95% split over {seq['looks']} planned looks (Bonferroni), "
            "valid under this optional stopping; the row is unranked, and a run without --until-ci reuses these "
            "chunks")


def print_results(results, *, as_json: bool) -> None:
    from vitbench.board.tables import build_rows, render
    from vitbench.store import open_store
    if as_json:
        print(json.dumps([r.to_json() for r in results], indent=2), flush=True)
        _sequential_notes(results)
        return
    store = open_store()
    ids = {r.run_id for r in results}
    rows = build_rows([run for run in store.runs() if run.run_id in ids])
    print(render(rows, "md"))
    cached = sum(r.cached for r in results)
    if cached:
        print(f"\n({cached} of {len(results)} suite runs were cache hits)")
    sys.stdout.flush()
    _sequential_notes(results)


def _sequential_notes(results) -> None:
    for r in results:
        if r.sequential:
            print(sequential_note(r), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from vitbench.suites import load_preset, preset_from_suites
    zoo = load_zoo(args)
    entries = [zoo.get(name) for name in args.models]
    if args.checkpoints:
        from vitbench.zoo.epochs import expand_checkpoints
        entries = [e for entry in entries for e in (*expand_checkpoints(entry), entry)]
    preset = preset_from_suites(args.suite) if args.suite else load_preset(args.preset or "standard")
    if not args.slurm:
        given = [f"--{name.replace('_', '-')}" for name, default in SLURM_DEFAULTS.items()
                 if getattr(args, name, default) != default]
        if given:
            from vitbench.errors import ConfigError
            raise ConfigError(f"{', '.join(given)} only apply to a Slurm submission: add --slurm (or drop them)")
    if args.slurm and getattr(args, "until_ci", None) is not None:
        from vitbench.errors import ConfigError
        raise ConfigError("--until-ci runs in one process (it decides after each chunk whether to go on): drop "
                          "--slurm")
    if args.slurm:
        from vitbench.cli._slurm import submit
        evaluation = _evaluation(args)
        evaluation.pop("until_ci")
        return submit(args, entries, preset, evaluation)
    results = execute(args, entries, preset)
    if results:
        print_results(results, as_json=args.json)
    return 0
