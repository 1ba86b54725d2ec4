"""Groups of lease workers on one job: ``--workers N`` as local processes, and the worker function that Slurm
array jobs run (:mod:`vitbench.slurm`).

A launcher first aggregates the suite runs whose chunks are all stored already (cache hits: no worker needed),
then starts the workers on the others. Workers are ``shared``: each claims chunks, and the one whose commit
completes a suite run aggregates it and hands the result back. What no worker handed back (its last committer died
between commit and aggregation) the launcher aggregates from the store; what is still incomplete (every worker
died) is an error that says how to resume.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from typing import Any

from vitbench.errors import VitbenchError

log = logging.getLogger(__name__)

Position = tuple[int, int]  # (model index, suite run index), as api.Setup numbers them
#: seconds between the launcher's progress reads of the store
POLL_S = 1.0
#: engines computing in this process (for a preemption handler to give their leases back)
_ACTIVE: list = []


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to join a job (pickled to it): the resolved evaluation, which of its suite runs
    to work on, the store's address, and the worker's threads and device."""

    setup: Any  # api.Setup (its dataset travels as the caller's spec string when there is one)
    positions: tuple[Position, ...]
    store: str
    threads: int | None = None
    device: str | None = None
    log_level: int = logging.WARNING
    lease_s: float | None = None


def work(spec: WorkerSpec) -> list[tuple[Position, Any]]:
    """Run one shared worker: claim, compute and commit chunks of the spec's suite runs until all are stored;
    returns the results this worker aggregated, by position."""
    import torch

    from vitbench.store import open_store
    logging.basicConfig(level=spec.log_level, format="vitbench: %(message)s")
    if spec.threads:
        torch.set_num_threads(spec.threads)
    setup = reopened(spec.setup, spec.device)
    store = open_store(spec.store)
    try:
        engine = setup.engine(store, shared=True, lease_s=spec.lease_s)
        _ACTIVE.append(engine)
        try:
            results = engine.run_all([setup.task(p) for p in spec.positions])
        finally:
            _ACTIVE.remove(engine)
        return [(p, r) for p, r in zip(spec.positions, results, strict=True) if r is not None]
    finally:
        store.close()


def release_active() -> None:
    """Give back the leases this process's workers are computing (called when a job is preempted)."""
    for engine in list(_ACTIVE):
        store = None
        try:
            store = engine.store.reopen()
            engine.release_current(store)
        except Exception as exc:  # noqa: BLE001 - the lease expires anyway
            log.debug("could not release a lease: %s", exc)
        finally:
            if store is not None:
                store.close()


def reopened(setup, device: str | None = None):
    """The setup as a worker uses it: its dataset opened here (from the spec string), on its own device."""
    from vitbench.api import _data
    dataset = _data(setup.data) if isinstance(setup.data, str) else setup.dataset
    options = setup.options if device is None else replace(setup.options, device=device)
    return replace(setup, dataset=dataset, options=options)


def portable(setup):
    """The setup as it is pickled to workers: a dataset opened from a spec string is reopened there."""
    return replace(setup, dataset=None) if isinstance(setup.data, str) else setup


# -- launching: what is cached, what is left, what the workers did not finish ----------------------------------

class Launch:
    """A launcher's view of one job: cache hits first, workers for the rest, then what they left."""

    def __init__(self, setup, store, progress=None) -> None:
        self.setup, self.store = setup, store
        # the launcher only reads keys and aggregates: on the CPU (a login node may have no GPU the workers get)
        self.engine = replace(setup, options=replace(setup.options, device="cpu")).engine(store, progress)
        self.results: dict[Position, Any] = {}
        self.todo: list[Position] = []
        for position in setup.positions():
            if self.engine.missing(*setup.task(position)) == 0:
                self.results[position] = self.engine.run(*setup.task(position))  # a cache hit: loads no model
            else:
                self.todo.append(position)
        self.started = time.perf_counter()

    def spec(self, **kw) -> WorkerSpec:
        return WorkerSpec(portable(self.setup), tuple(self.todo), self.store.address, **kw)

    def done_examples(self) -> int:
        """Examples of the remaining suite runs stored so far."""
        total = 0
        for position in self.todo:
            entry, dataset, job = self.setup.task(position)
            key, _ = self.engine.key(entry, dataset, job)
            done = self.store.done_chunks(key)
            total += sum(b - a for a, b in self.engine.plan(dataset, job).spans() if (a, b) in done)
        return total

    def finish(self, handed: dict[Position, Any]) -> dict[Position, Any]:
        """All results by position: cache hits, the workers' results, and what is stored but was not aggregated.

        Raises:
            VitbenchError: when suite runs are still incomplete (every worker on them died).
        """
        self.results.update(handed)
        left = []
        for position in self.todo:
            if position in self.results:
                continue
            task = self.setup.task(position)
            if self.engine.missing(*task):
                left.append(f"{task[0].name} {task[2].suite}")
                continue
            log.info("%s %s: stored but not aggregated by a worker; aggregating it here", task[0].name, task[2].suite)
            self.results[position] = self.engine.aggregate(*task, cached=False,
                                                           seconds=time.perf_counter() - self.started)
        if left:
            raise VitbenchError(f"the workers stopped before finishing {', '.join(left)}: their stored chunks are "
                                "kept; run the same command again to resume")
        return self.results


# -- local worker processes ------------------------------------------------------------------------------------

def run_local(setup, store, n_workers: int, progress=None) -> dict[Position, Any]:
    """Run the setup's suite runs with ``n_workers`` local worker processes sharing the store; returns every
    result by position (see :class:`Launch`).

    Raises:
        VitbenchError: a worker's error (the others are stopped), or suite runs no worker finished.
    """
    from vitbench.api import Progress
    progress = progress or Progress()
    launch = Launch(setup, store)
    if not launch.todo:
        progress.start(0)
        return launch.results
    stored = launch.done_examples()
    progress.start(sum(launch.engine.plan(*setup.task(p)[1:]).n for p in launch.todo) - stored)
    level = logging.getLogger("vitbench").getEffectiveLevel()
    specs = [launch.spec(threads=threads, device=device, log_level=level)
             for threads, device in _shares(setup.options.device, n_workers)]
    handed = _supervise(specs, launch, progress, stored)
    return launch.finish(handed)


def _shares(device: str, n_workers: int) -> Iterator[tuple[int, str | None]]:
    """Each worker's (threads, device): the CPU threads split evenly, and its own GPU when there are several."""
    import torch
    threads = max(1, torch.get_num_threads() // n_workers)
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    for k in range(n_workers):
        yield threads, (f"cuda:{k % gpus}" if gpus > 1 else None)


@contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """OpenMP and MKL thread counts for the processes started inside (read before torch starts its pools)."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    before = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(threads) for name in names})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _child(spec: WorkerSpec, conn) -> None:
    """A worker process: run, then send ("ok", results) or ("error", exception) to the launcher."""
    try:
        conn.send(("ok", work(spec)))
    except KeyboardInterrupt:
        conn.send(("error", VitbenchError("a worker was interrupted; its stored chunks are kept")))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the launcher, which raises it
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle travels as its text
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _supervise(specs: list[WorkerSpec], launch: Launch, progress, shown: int) -> dict[Position, Any]:
    """Start one process per spec, report progress from the store, collect results; a worker that dies is
    reported and its chunk taken over by the others; the first error stops them all."""
    ctx = multiprocessing.get_context("spawn")
    procs, pipes = [], {}
    for spec in specs:
        ours, theirs = ctx.Pipe(duplex=False)
        with _thread_env(spec.threads or 1):
            proc = ctx.Process(target=_child, args=(spec, theirs), name=f"vitbench-worker-{len(procs)}")
            proc.start()
        theirs.close()
        procs.append(proc)
        pipes[ours] = proc
    handed: dict[Position, Any] = {}
    error: BaseException | None = None
    try:
        while pipes:
            for conn in wait(list(pipes), timeout=POLL_S):
                proc = pipes.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    proc.join()
                    log.warning("worker %s (pid %d) died (exit %s); the other workers take over its chunk",
                                proc.name, proc.pid, proc.exitcode)
                    continue
                if status == "ok":
                    handed.update(dict(payload))
                elif error is None:
                    error = payload
                    _stop(procs)
            done = launch.done_examples()
            if done > shown:
                progress.advance("vitbench", f"{len(procs)} workers", done - shown, done - shown)
                shown = done
    except BaseException:
        _stop(procs)
        raise
    finally:
        for proc in procs:
            proc.join()
    if error is not None:
        raise error
    return handed


def _stop(procs) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
