"""Lease workers: 2 worker processes vs 1 on one store, one thread each, on a CPU-bound suite.

What is measured, per repeat (1 and 2 workers alternated, each on a fresh SQLite store):

- the compute phase: the worker processes are started, import everything, open the store and load the model,
  then wait at a barrier; the time runs from their common release until the last one has returned (the last
  commit and the aggregation included). This is the speed-up leases give; process start-up is a fixed cost that
  a longer job amortises, reported apart. Goal (issue 13): >= 1.8x.
- lease bookkeeping, inside the workers: the time spent in the lease calls (plan_leases, claim, renew,
  lease_owners, expire, and the commit's own lease work: the evaluation lock, the lease row and the count of
  missing chunks) as a share of the time spent computing chunks. Goal: < 2%. The commit of the records
  themselves, which every store write had before leases, is reported beside it.
- end to end: ``vitbench.evaluate(..., workers=N)`` wall time, process start-up included, once per N.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_workers.py [--model digits-vit.light] [--n 500]
        [--chunk-size 50] [--repeats 3]

On this project's 2-core machine other jobs may share the cores: the script prints the load average before and
after, and the median of the per-repeat ratios beside the ratio of the best times.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch_home  # noqa: E402

LEASE_CALLS = ("plan_leases", "claim", "renew", "lease_owners", "expire")


def _instrument(totals: dict[str, float]) -> None:
    """Accumulate the wall time of the store's lease calls, of its commits, of the commit's lease statements and of
    chunk computation into ``totals`` (in this process, every Store and Engine)."""
    from vitbench import engine, store
    from vitbench.store_sqlite import SQLiteBackend

    def timing(owner, name, bucket):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                totals[bucket] += time.perf_counter() - t0
        setattr(owner, name, wrapper)
    for name in LEASE_CALLS:
        timing(store.Store, name, "lease")
    timing(store.Store, "commit_chunk", "commit")
    timing(store.Store, "_missing", "commit_lease")  # the count of missing chunks, inside the commit
    timing(SQLiteBackend, "lock_eval", "commit_lease")
    timing(engine.Engine, "_compute", "compute")
    real_x = store.Store._x

    def lease_row(self, sql, params=()):  # the lease row a commit marks done
        if not sql.startswith("INSERT INTO leases"):
            return real_x(self, sql, params)
        t0 = time.perf_counter()
        try:
            return real_x(self, sql, params)
        finally:
            totals["commit_lease"] += time.perf_counter() - t0
    store.Store._x = lease_row


def _worker(setup, address: str, barrier, results) -> None:
    """One worker process: set up, wait for the others, run the job, report its timings."""
    import torch

    from vitbench.store import open_store
    from vitbench.workers import reopened
    torch.set_num_threads(1)
    setup = reopened(setup)  # its dataset, opened here
    totals: dict[str, float] = defaultdict(float)
    _instrument(totals)
    store = open_store(address)
    engine = setup.engine(store, shared=True)
    tasks = [setup.task(p) for p in setup.positions()]
    engine.models.get(tasks[0][0])  # load the model before the clock starts
    barrier.wait()
    t0 = time.perf_counter()
    engine.run_all(tasks)
    results.put({"wall": time.perf_counter() - t0, **totals})
    store.close()


def compute_phase(setup, n_workers: int) -> dict:
    """Run the job with ``n_workers`` barrier-started processes on a fresh store; their timings."""
    from vitbench.workers import portable
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="vitbench-workers-") as tmp:
        address = str(Path(tmp) / "store.sqlite")
        barrier, results = ctx.Barrier(n_workers + 1), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(portable(setup), address, barrier, results))
                 for _ in range(n_workers)]
        for proc in procs:
            proc.start()
        barrier.wait()
        t0 = time.perf_counter()
        reports = [results.get(timeout=3600) for _ in procs]
        wall = time.perf_counter() - t0
        for proc in procs:
            proc.join()
    merged = {k: sum(r.get(k, 0.0) for r in reports) for k in ("lease", "commit", "commit_lease", "compute")}
    return {"wall": wall, **merged}


def end_to_end(args, n_workers: int) -> float:
    import vitbench
    with tempfile.TemporaryDirectory(prefix="vitbench-workers-") as tmp:
        t0 = time.perf_counter()
        vitbench.evaluate(args.model, "digits", suites=[args.suite], n_examples=args.n, chunk_size=args.chunk_size,
                          device="cpu", store=str(Path(tmp) / "store.sqlite"), workers=n_workers)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="digits-vit.light")
    parser.add_argument("--suite", default="pgd_sweep")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from vitbench.api import setup
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    with scratch_home():
        job = setup([args.model], "digits", suites=[args.suite], n_examples=args.n, chunk_size=args.chunk_size,
                    device="cpu")
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for r in range(args.repeats):
            for n_workers in ((1, 2) if r % 2 == 0 else (2, 1)):
                runs[n_workers].append(compute_phase(job, n_workers))
                print(f"repeat {r + 1}, {n_workers} worker{'s' if n_workers > 1 else ''}: "
                      f"{runs[n_workers][-1]['wall']:.2f} s", flush=True)
        whole = {n: end_to_end(args, n) for n in (1, 2)}
    chunks = -(-args.n // args.chunk_size)
    best = min(r["wall"] for r in runs[1]) / min(r["wall"] for r in runs[2])
    median = statistics.median(a["wall"] / b["wall"] for a, b in zip(runs[1], runs[2], strict=True))
    every = runs[1] + runs[2]
    compute = sum(r["compute"] for r in every)
    lease = sum(r["lease"] + r["commit_lease"] for r in every)
    records = sum(r["commit"] - r["commit_lease"] for r in every)
    print(f"\n{args.model} {args.suite}, {args.n} digits images in {chunks} chunks of {args.chunk_size}, one thread "
          f"per worker, {args.repeats} repeats")
    print(f"compute phase, 1 worker: best {min(r['wall'] for r in runs[1]):.2f} s; 2 workers: best "
          f"{min(r['wall'] for r in runs[2]):.2f} s")
    print(f"speed-up (2 workers vs 1): {best:.2f}x best times, {median:.2f}x median of per-repeat ratios "
          "(goal >= 1.8x)")
    print(f"lease bookkeeping: {1000 * lease / (len(every) * chunks):.2f} ms per chunk, "
          f"{100 * lease / compute:.2f}% of the chunks' compute time (goal < 2%)")
    print(f"committing the records themselves: {1000 * records / (len(every) * chunks):.2f} ms per chunk, "
          f"{100 * records / compute:.2f}% of the compute time")
    print(f"end to end (vitbench.evaluate): 1 worker (in this process) {whole[1]:.1f} s, 2 workers (spawned: "
          f"start-up included) {whole[2]:.1f} s ({whole[1] / whole[2]:.2f}x)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
