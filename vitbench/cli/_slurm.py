"""``vitbench bench ... --slurm``: submit a job array of lease workers through submitit and say how to follow it
(``--wait``: wait for it and print the table)."""

from __future__ import annotations

import argparse
import sys


def options(args: argparse.Namespace):
    """The Slurm options the bench arguments give."""
    from vitbench.slurm import SlurmOptions, parse_sbatch
    return SlurmOptions(workers=args.workers, partition=args.partition, gpus_per_worker=args.gpus_per_worker,
                        cpus_per_worker=args.cpus_per_worker, time_min=args.time_min,
                        sbatch=parse_sbatch(args.slurm_arg), folder=args.slurm_folder, cluster=args.slurm_cluster)


def submit(args: argparse.Namespace, entries, preset, evaluation: dict) -> int:
    from vitbench.api import submit as submit_array
    from vitbench.cli.bench import print_results
    submission = submit_array(entries, args.data, preset=preset, slurm=options(args), **evaluation)
    launch = submission.launch
    if submission.jobs:
        print(f"vitbench: submitted job array {submission.array_id} ({len(submission.jobs)} workers) for "
              f"{len(launch.todo)} suite runs; logs in {submission.folder}; follow it with `vitbench status`",
              file=sys.stderr)
    if not args.wait:
        if launch.results:
            print_results(list(launch.results.values()), as_json=args.json)
        return 0
    results = submission.wait()
    print_results([results[p] for p in sorted(results)], as_json=args.json)
    return 0
