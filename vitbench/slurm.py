"""Slurm job arrays of lease workers, through submitit (``vitbench[slurm]``).

``submit`` aggregates the suite runs already stored (cache hits), then submits a job array whose every job runs
:class:`LeaseWorker` on the rest: it claims chunks from the store, so the array can be any size and its jobs can
start late, fail or be preempted. A job preempted or out of time gets submitit's signal, gives its lease back and
is requeued by submitit's checkpointing (a ``Checkpointable``); the requeued job continues from the store. The
store must be reachable from the nodes: a ``postgresql://`` URL, or a SQLite file on a disk every node mounts
(SQLite's locking is unreliable on NFS and Lustre, so prefer PostgreSQL across nodes).

The worker is defined here, inside the package, so that jobs unpickle it by module name wherever vitbench is
installed.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vitbench.errors import ConfigError, VitbenchError
from vitbench.workers import Launch, Position, WorkerSpec, release_active, work

try:
    import submitit
    from submitit.helpers import Checkpointable
except ImportError:  # the worker class still needs a base; submit() names the extra
    submitit = None
    Checkpointable = object

log = logging.getLogger(__name__)

EXTRA = "vitbench[slurm]"
CLUSTERS = ("slurm", "local")


@dataclass(frozen=True)
class SlurmOptions:
    """How the job array is submitted.

    Args:
        workers: jobs in the array.
        partition: Slurm partition (None: the cluster's default).
        gpus_per_worker, cpus_per_worker: resources of each job (None CPUs: Slurm's default).
        time_min: time limit of each job in minutes; a job that runs out is requeued and continues.
        sbatch: any other sbatch options as (key, value) pairs, e.g. (("account", "lab"),).
        folder: where submitit keeps job files and logs (default ``VITBENCH_HOME/slurm``), on a shared disk.
        cluster: ``slurm``, or ``local`` to run the array as local processes through submitit's local executor.
        signal_delay_s: seconds before the time limit that the job is signalled to checkpoint (None: submitit's).
        max_num_timeout: how many times a job that ran out of time is requeued (preemptions do not count).
    """

    workers: int = 1
    partition: str | None = None
    gpus_per_worker: int = 0
    cpus_per_worker: int | None = None
    time_min: float = 60.0
    sbatch: tuple[tuple[str, str], ...] = ()
    folder: str | os.PathLike | None = None
    cluster: str = "slurm"
    signal_delay_s: int | None = None
    max_num_timeout: int = 3

    def check(self) -> None:
        """Raises ConfigError for a value Slurm would refuse later."""
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1 for a Slurm array, got {self.workers}")
        if self.gpus_per_worker < 0 or (self.cpus_per_worker is not None and self.cpus_per_worker < 1):
            raise ConfigError("--gpus-per-worker must be >= 0 and --cpus-per-worker >= 1")
        if not math.isfinite(self.time_min) or self.time_min <= 0:
            raise ConfigError(f"--time-min must be a number of minutes > 0, got {self.time_min}")
        if self.cluster not in CLUSTERS:
            raise ConfigError(f"cluster {self.cluster!r}: use one of {', '.join(CLUSTERS)}")


def parse_sbatch(items: list[str]) -> tuple[tuple[str, str], ...]:
    """``--slurm-arg KEY=VALUE`` items as (key, value) pairs.

    Raises:
        ConfigError: for an item without ``=`` or with an empty key.
    """
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm-arg {item!r}: write KEY=VALUE with an sbatch option as KEY, e.g. "
                              "account=lab or qos=high")
        pairs.append((key.strip().lstrip("-"), value))
    return tuple(pairs)


class LeaseWorker(Checkpointable):
    """One array job: a shared lease worker on the spec's suite runs (see :func:`vitbench.workers.work`)."""

    def __call__(self, spec: WorkerSpec) -> dict:
        from vitbench.leases import worker_id
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if spec.threads is None and cpus:
            spec = replace(spec, threads=int(cpus))
        results = work(spec)
        return {"worker": worker_id(), "results": results}

    def checkpoint(self, spec: WorkerSpec):
        """Preempted or out of time: give the lease back and requeue the same call (progress is in the store)."""
        release_active()
        return super().checkpoint(spec)


def _require_submitit() -> None:
    if submitit is None:
        raise ConfigError(f"--slurm needs submitit, which is not installed: pip install '{EXTRA}'")
    # submitit logs to stdout as well as stderr; stdout is for the table or JSON the user asked for
    logger = logging.getLogger("submitit")
    logger.propagate = False  # its own stderr handler says it already
    for handler in list(logger.handlers):
        if getattr(handler, "stream", None) in (sys.stdout, sys.__stdout__):
            logger.removeHandler(handler)


@dataclass
class Submission:
    """A submitted array (no jobs when every suite run was stored already)."""

    jobs: list
    launch: Launch
    folder: Path

    @property
    def array_id(self) -> str | None:
        return self.jobs[0].job_id.split("_")[0] if self.jobs else None

    def wait(self) -> dict[Position, Any]:
        """Wait for every job; all results by position (see :meth:`vitbench.workers.Launch.finish`).

        Raises:
            VitbenchError: a job's failure (its log named), or suite runs the jobs left incomplete.
        """
        handed: dict[Position, Any] = {}
        failed = []
        for job in self.jobs:
            try:
                handed.update(dict(job.result()["results"]))
            except Exception as exc:  # noqa: BLE001 - the other jobs may have finished the work
                failed.append(f"job {job.job_id} ({_first_line(exc)}; log: {job.paths.stdout})")
        if failed:
            log.warning("%d of %d jobs failed: %s", len(failed), len(self.jobs), "; ".join(failed))
        try:
            return self.launch.finish(handed)
        except VitbenchError as exc:
            raise type(exc)(f"{exc} ({'; '.join(failed)})" if failed else str(exc)) from None

    def reports(self) -> list:
        """Wait, then one :class:`vitbench.api.Report` per model."""
        return self.launch.setup.reports(self.wait(), self.launch.store.address)


def submit(setup, store, options: SlurmOptions) -> Submission:
    """Aggregate the suite runs already stored, then submit an array of lease workers on the others.

    Raises:
        ConfigError: submitit missing (naming ``vitbench[slurm]``), bad options, no ``sbatch`` for a Slurm array.
    """
    _require_submitit()
    options.check()
    if options.cluster == "slurm":
        import shutil
        if shutil.which("sbatch") is None:
            raise ConfigError("--slurm: no sbatch on PATH (not a Slurm login node?); submit from one, or use "
                              "--slurm-cluster local to run the array as local processes")
    if store.kind == "sqlite" and options.cluster == "slurm":
        log.warning("the array's jobs write to the SQLite file %s: every node must mount it, and SQLite's locks "
                    "are unreliable on NFS/Lustre; a postgresql:// store is safer across nodes", store.location)
    from vitbench.paths import home
    folder = Path(options.folder) if options.folder else home() / "slurm"
    launch = Launch(setup, store)
    if not launch.todo:
        return Submission([], launch, folder)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.cluster,
                                     **{f"{options.cluster}_max_num_timeout": options.max_num_timeout})
    executor.update_parameters(**_parameters(options))
    spec = launch.spec(log_level=logging.getLogger("vitbench").getEffectiveLevel())
    jobs = executor.map_array(LeaseWorker(), [spec] * options.workers)
    return Submission(jobs, launch, folder)


def _parameters(options: SlurmOptions) -> dict:
    """submitit's parameters for the options (the cluster's own ones prefixed with its name)."""
    params: dict[str, Any] = {"name": "vitbench", "timeout_min": max(1, math.ceil(options.time_min)),
                              "nodes": 1, "tasks_per_node": 1, "gpus_per_node": options.gpus_per_worker}
    if options.cpus_per_worker:
        params["cpus_per_task"] = options.cpus_per_worker
    if options.signal_delay_s is not None:
        params[f"{options.cluster}_signal_delay_s"] = options.signal_delay_s
    if options.cluster == "slurm":
        params["slurm_array_parallelism"] = options.workers
        if options.partition:
            params["slurm_partition"] = options.partition
        if options.sbatch:
            params["slurm_additional_parameters"] = dict(options.sbatch)
    return params


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
