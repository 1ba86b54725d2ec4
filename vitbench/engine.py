"""The engine: fixed chunks, per-chunk seeds, commit per chunk, resume, leases, ranks, batch-size back-off.

An evaluation is identified by (model fingerprint, data fingerprint, suite, suite version, config, seed, chunk
size); ``n_examples`` only selects how many of its chunks a run needs, so a larger run reuses a smaller one's
chunks. Chunk ``i`` covers examples [i * chunk_size, min((i + 1) * chunk_size, n)) and is seeded from
(seed, i). Each finished chunk is committed with its per-sample records at once; a rerun computes only the
missing chunks, and a run whose chunks are all stored is a cache hit (no model is even loaded).

Workers. Any number of processes running the same jobs on one store share them through chunk leases (see
:mod:`vitbench.store`): each claims a chunk, computes it while a heartbeat renews the lease, commits it and claims
the next; a job with nothing left to claim is put aside for the next one and revisited, so that a dead worker's
expired lease is taken over. The worker whose commit completes a job's plan aggregates it (one run row); a process
that finds a job complete before it starts is a cache hit and aggregates it itself, unless it is one of a launched
group of workers (``shared``: local ``--workers``, a Slurm array), whose launcher handles cache hits.

Ranks. Under ``torchrun`` only rank 0 opens the store: it broadcasts the stored chunks, rank r computes the missing
chunks with i % world_size == r, every rank sends its chunk's records to rank 0 over the process group (object
collectives: gloo on CPU, nccl on GPU) and rank 0 commits them chunk by chunk, then aggregates.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from vitbench import __version__, defaults
from vitbench._config import stable_hash, to_plain
from vitbench.data.base import EvalDataset
from vitbench.errors import ConfigError, DataError, VitbenchError
from vitbench.intervals import SEQUENTIAL, IntervalOptions, annotate
from vitbench.label_spaces import LABEL_SPACES
from vitbench.leases import BEATS_PER_LEASE, Heartbeat, known_dead, lease_seconds, short, worker_id
from vitbench.store import Commit, Lease, Plan, Store
from vitbench.suites import get_suite
from vitbench.suites.base import Chunk, Column, Context, Metric
from vitbench.zoo.load import LoadedModel, load_model, model_fingerprint, weights_identity
from vitbench.zoo.schema import ZooEntry

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = defaults.CHUNK_SIZE


@dataclass(frozen=True)
class SuiteRun:
    """A suite and its validated config (one line of a battery preset)."""

    suite: str
    config: Any


@dataclass(frozen=True)
class Options:
    """How to run: which examples, seed, chunking, device and batch size."""

    seed: int = 0
    n_examples: int | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    device: str = "auto"
    batch_size: int = defaults.BATCH_SIZE
    #: how the metrics' intervals are computed (aggregation only: not part of the evaluation key)
    intervals: IntervalOptions = field(default_factory=IntervalOptions)
    #: sequential mode: stop a job once its accuracies' intervals (valid under optional stopping) have a
    #: half-width of at most this many points (None: run every chunk); not part of the evaluation key
    until_ci: float | None = None


@dataclass
class RunResult:
    """The outcome of one suite on one model."""

    model: str
    suite: str
    config: dict
    dataset: str
    n_examples: int
    metrics: dict[str, Metric]
    flags: list[str]
    columns: list[Column]
    cached: bool
    seconds: float
    run_id: int | None = None
    eval_key: str = ""
    extras: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    #: a sequential (``--until-ci``) run: target_half_width, looks, planned_n, n, method; None otherwise
    sequential: dict | None = None

    def to_json(self) -> dict:
        """The run as ``bench --json`` prints it: metrics keyed by the ids ``leaderboard --json`` uses, each with its
        label, value, 95% interval and number of examples."""
        from vitbench.metrics import metrics_json
        return {"model": self.model, "suite": self.suite, "config": self.config, "dataset": self.dataset,
                "n_examples": self.n_examples, "cached": self.cached, "seconds": round(self.seconds, 3),
                "metrics": metrics_json(self.suite, self.metrics, self.columns), "flags": self.flags,
                "run_id": self.run_id, "eval_key": self.eval_key,
                **({"sequential": self.sequential} if self.sequential else {})}


def plan_chunks(n: int, chunk_size: int) -> list[tuple[int, int, int]]:
    """(index, start, stop) of every chunk of an n-example run."""
    return Plan(n, chunk_size).chunks()


def chunk_seed(seed: int, index: int) -> int:
    """The seed of chunk ``index`` of a run seeded with ``seed`` (63-bit)."""
    digest = hashlib.sha256(f"vitbench:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def resolve_device(device: str) -> torch.device:
    """'auto' -> the local rank's GPU when there is one, else CPU; anything else is checked to exist here.

    Raises:
        ConfigError: for a string torch does not read as a device, ``meta`` (no data), a GPU this machine does
            not have, or a device type vitbench does not run on.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    _check_device(dev, device)
    return dev


def _check_device(dev: torch.device, text: str) -> None:
    if dev.type == "cpu":
        return
    if dev.type == "meta":
        raise ConfigError(f"--device {text}: meta tensors hold shapes but no data, nothing can be evaluated on them; "
                          "use auto, cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {text}: no CUDA GPU is usable here (torch {torch.__version__}, CUDA build "
                              f"{torch.version.cuda or 'none'}); use --device cpu or --device auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"--device {text}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                              f"(cuda:0 to cuda:{count - 1}); pick one of them or use --device auto")
        return
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {text}: Apple's MPS backend is not available here; use --device cpu")
        return
    raise ConfigError(f"--device {text}: vitbench runs on cpu, cuda or mps devices; use one of those or auto")


def dist_world() -> tuple[int, int]:
    """(rank, world size); initialises torch.distributed when launched by torchrun."""
    import torch.distributed as dist
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        nccl = torch.cuda.is_available()
        if nccl:  # object collectives over nccl go through the current device: one GPU per rank
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if nccl else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _barrier() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    import torch.distributed as dist
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(value: Any, world: int) -> list | None:
    """Every rank's ``value``, in rank order, on rank 0 (None elsewhere)."""
    import torch.distributed as dist
    out = [None] * world if dist.get_rank() == 0 else None
    dist.gather_object(value, out, dst=0)
    return out


def provenance(device: torch.device) -> dict:
    """Versions and machine facts stored with every run."""
    versions = {"vitbench": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for mod in ("timm", "pyautoattack", "datasets", "torchvision"):
        try:
            versions[mod] = sys.modules[mod].__version__ if mod in sys.modules else __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a version lookup must never fail a run
            versions[mod] = "unavailable"
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return {"versions": versions, "device": dev, "platform": platform.platform(terse=True),
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])}


def check_labels(entry: ZooEntry, dataset: EvalDataset) -> None:
    """Refuse to evaluate a model on data whose labels it does not predict."""
    space = dataset.label_space
    known = LABEL_SPACES.get(entry.dataset)
    if known is not None and space.name in LABEL_SPACES and entry.dataset != space.name:
        raise DataError(f"model {entry.name} predicts {entry.dataset} labels but {dataset.spec!r} has "
                        f"{space.name} labels: pick a model trained for {space.name}")
    if known is not None and entry.num_classes != known.num_classes:
        raise DataError(f"model {entry.name} declares {entry.num_classes} classes but its dataset {entry.dataset} "
                        f"has {known.num_classes}: fix num_classes in {entry.origin or 'its zoo entry'}")
    if space.num_classes > entry.num_classes:
        raise DataError(f"{dataset.spec!r} has {space.num_classes} classes but model {entry.name} predicts "
                        f"{entry.num_classes}")


def _known_fingerprint(entry: ZooEntry) -> str:
    """A member model's fingerprint when its weights are known without a download, else its source."""
    from vitbench.zoo.identity import known_sha256
    sha = known_sha256(entry)
    return model_fingerprint(entry, sha) if sha else entry.weights.source


class _Models:
    """Loads each model at most once, and only when a chunk needs computing; models already in memory (from the
    Python API) are handed in with :meth:`put`."""

    def __init__(self, device: torch.device, capacity: int = 1) -> None:
        self.device, self.capacity, self._cache, self._given = device, capacity, {}, {}

    def put(self, entry: ZooEntry, model: torch.nn.Module) -> None:
        """Use ``model`` (already built, identified by ``entry.weights.sha256``) for ``entry``."""
        sha = entry.weights.sha256 or ""
        self._given[entry.name] = LoadedModel(model, sha, "in memory", model_fingerprint(entry, sha))

    def get(self, entry: ZooEntry) -> LoadedModel:
        if entry.name in self._given:
            loaded = self._given[entry.name]
            loaded.model.eval().to(self.device)
            return loaded
        if entry.name not in self._cache:
            if len(self._cache) >= self.capacity:
                self._cache.clear()
            self._cache[entry.name] = load_model(entry, device=self.device)
        return self._cache[entry.name]

    def fingerprint(self, entry: ZooEntry) -> tuple[str, str]:
        if entry.name in self._given:
            given = self._given[entry.name]
            return given.fingerprint, given.weights_sha256
        ident = weights_identity(entry)
        if ident is None:
            loaded = self.get(entry)
            return loaded.fingerprint, loaded.weights_sha256
        return model_fingerprint(entry, ident[0]), ident[0]


@dataclass
class _Job:
    """One suite on one model over a dataset, as the engine works it: its key, plan and outcome."""

    entry: ZooEntry
    dataset: EvalDataset
    job: SuiteRun
    suite: Any
    key: str
    info: dict
    plan: Plan
    started: float = field(default_factory=time.perf_counter)
    computed: int = 0
    finished: bool = False
    result: RunResult | None = None


@dataclass(frozen=True)
class ChunkOutput:
    """A computed chunk, ready to commit (or to send to rank 0)."""

    index: int
    start: int
    stop: int
    seed: int
    batch_size: int
    seconds: float
    device: str
    flags: tuple[str, ...]
    ids: tuple[str, ...]
    records: tuple[dict, ...]
    worker: str


def _sequential_width(j, records: list[dict], intervals: IntervalOptions) -> float | None:
    """The widest half-width, in points, of the stopping metrics' sequential intervals over the records seen so
    far (None when the suite has no accuracy to stop on)."""
    metrics = annotate(j.suite.aggregate(records, j.job.config), len(records), None, intervals)
    widths = [100 * max(m.value - m.ci95[0], m.ci95[1] - m.value)
              for m in (metrics[name] for name in _stopping_metrics(j.suite.columns(j.job.config, metrics), metrics))
              if m.ci95 is not None]
    return max(widths) if widths else None


def _stopping_metrics(columns: list, metrics: dict[str, Metric]) -> list[str]:
    """The metrics ``--until-ci`` stops on: the headline column's, else every proportion shown as a column."""
    shown = [c.metric for c in columns if c.metric in metrics and metrics[c.metric].is_proportion]
    head = [c.metric for c in columns if c.headline and c.metric in shown]
    return head or list(dict.fromkeys(shown))


#: the first wait of a worker that finds nothing to claim (see Engine._poll_s)
POLL_FIRST_S = 0.02


class Engine:
    """Runs suites on models over a dataset, storing every chunk.

    Args:
        store: the store (None on torchrun ranks other than 0, which never open it).
        options: seeds, chunking, device, batch size.
        progress: called with (model name, job, examples) when a job starts (0) and after each stored chunk.
        zoo: where the models a suite needs besides the evaluated one are looked up.
        shared: this process is one of a launched group of workers (local ``--workers``, a Slurm array): jobs
            found complete are left to the launcher instead of being aggregated as cache hits.
        lease_s: seconds a chunk lease lasts without a heartbeat (default ``VITBENCH_LEASE_S``, 60).
    """

    def __init__(self, store: Store | None, options: Options, *,
                 progress: Callable[[str, SuiteRun, int], None] | None = None, zoo: Any = None,
                 shared: bool = False, lease_s: float | None = None):
        self.store, self.options = store, options
        self.device = resolve_device(options.device)
        self.rank, self.world = dist_world()
        if store is None and self.rank == 0:
            raise ValueError("rank 0 (or a single process) needs a store")
        self.models = _Models(self.device)
        self._members = _Models(self.device, capacity=8)  # models a suite needs besides the evaluated one
        self._zoo = zoo
        self._member_cache: dict[tuple, list[ZooEntry]] = {}
        self.batch_size = options.batch_size
        self._progress = progress or (lambda name, job, n: None)
        self.shared = shared
        self.worker = worker_id() if self.world == 1 else f"{worker_id()}/rank{self.rank}"
        self.lease_s = lease_s if lease_s is not None else lease_seconds()
        #: the lease being computed (evaluation key, lease), for a preemption handler to give back
        self.current: tuple[str, Lease] | None = None

    def _member_entries(self, suite, config, entry: ZooEntry) -> list[ZooEntry]:
        """The zoo entries of the models the suite's config names (``timm:ARCH.TAG`` or zoo names), checked by
        the suite; the zoo is the engine's, else the evaluated entry's own zoo file over the bundled one."""
        cache_key = (suite.name, stable_hash(to_plain(config)), entry.name, entry.origin)
        if cache_key not in self._member_cache:
            names = suite.models(config, entry)
            from vitbench.zoo.lookup import resolve_member
            members = [resolve_member(name, self._zoo, entry) for name in names]
            if members:
                suite.check_models(config, entry, members)
            self._member_cache[cache_key] = members
        return self._member_cache[cache_key]

    def n_examples(self, dataset: EvalDataset, job: SuiteRun | None = None) -> int:
        """Examples a job evaluates: --n-examples, capped by the suite config's own ``n_examples`` if it has one
        (presets use it to give costly suites fewer images)."""
        n = self.options.n_examples
        if n is not None and n <= 0:
            raise VitbenchError(f"--n-examples must be > 0, got {n}")
        n = len(dataset) if n is None else min(n, len(dataset))
        cap = getattr(job.config, "n_examples", None) if job is not None else None
        return n if cap is None else min(n, cap)

    def plan(self, dataset: EvalDataset, job: SuiteRun) -> Plan:
        return Plan(self.n_examples(dataset, job), self.options.chunk_size)

    def key(self, entry: ZooEntry, dataset: EvalDataset, job: SuiteRun) -> tuple[str, dict]:
        """The evaluation key and the facts it is made of."""
        suite = get_suite(job.suite)
        fp, sha = self.models.fingerprint(entry)
        config = to_plain(job.config)
        # a suite's example cap selects chunks, like --n-examples, and aggregation-only fields change no record
        keyed = {k: v for k, v in config.items() if k != "n_examples" and k not in suite.aggregation_only}
        info = {"model": entry.name, "model_fingerprint": fp, "weights_sha256": sha, "dataset": dataset.spec,
                "data_fingerprint": dataset.fingerprint, "suite": job.suite, "suite_version": suite.version,
                "config": keyed, "config_hash": stable_hash([keyed, suite.key_facts(job.config, entry),
                                                             self._member_facts(suite, job.config, entry)]),
                "seed": self.options.seed,
                "chunk_size": self.options.chunk_size}
        key = stable_hash({k: v for k, v in info.items() if k not in ("model", "dataset", "weights_sha256")}, 32)
        return key, info

    def _member_facts(self, suite, config, entry: ZooEntry) -> dict:
        """The fingerprints of the other models a suite uses: retraining one of them forces recomputation."""
        members = self._member_entries(suite, config, entry)
        return {"models": {m.name: _known_fingerprint(m) for m in members}} if members else {}

    def _done(self, key: str) -> set[tuple[int, int]]:
        """The stored chunks of an evaluation; under torchrun read by rank 0 and broadcast (a collective)."""
        done = self.store.done_chunks(key) if self.rank == 0 else None
        return _broadcast(done) if self.world > 1 else done

    def pending(self, entry: ZooEntry, dataset: EvalDataset, job: SuiteRun) -> int:
        """Number of examples still to compute for the job (this rank's share under torchrun)."""
        key, _ = self.key(entry, dataset, job)
        done = self._done(key)
        return sum(b - a for i, a, b in self.plan(dataset, job).chunks()
                   if i % self.world == self.rank and (a, b) not in done)

    def missing(self, entry: ZooEntry, dataset: EvalDataset, job: SuiteRun) -> int:
        """Number of the job's chunks not stored yet (reads the store: rank 0 or one process)."""
        key, _ = self.key(entry, dataset, job)
        return self.store.missing(key, self.plan(dataset, job))

    def run(self, entry: ZooEntry, dataset: EvalDataset, job: SuiteRun) -> RunResult | None:
        """Evaluate one suite on one model (see :meth:`run_all`)."""
        return self.run_all([(entry, dataset, job)])[0]

    def run_all(self, tasks: list[tuple[ZooEntry, EvalDataset, SuiteRun]]) -> list[RunResult | None]:
        """Evaluate each (model, dataset, suite run); returns each result where this process aggregated it: on
        rank 0 under torchrun, else where this worker found the job complete at the start (a cache hit, unless
        ``shared``) or committed its last missing chunk; None elsewhere."""
        jobs = [self._prepare(*task) for task in tasks]
        if self.options.until_ci is not None:
            if self.world > 1 or self.shared:
                raise ConfigError("--until-ci runs in one process (it decides after each chunk whether to go on): "
                                  "drop --workers, --slurm or torchrun")
            return [self._run_sequential(j) for j in jobs]
        if self.world > 1:
            return [self._run_ranked(j) for j in jobs]
        return self._run_leased(jobs)

    def aggregate(self, entry: ZooEntry, dataset: EvalDataset, job: SuiteRun, *, cached: bool,
                  seconds: float = 0.0) -> RunResult:
        """Aggregate a job whose chunks are all stored into a run row (e.g. a launcher whose worker died after
        its last commit)."""
        j = self._prepare(entry, dataset, job)
        j.started = time.perf_counter() - seconds
        return self._finish(j, cached=cached)

    def _prepare(self, entry: ZooEntry, dataset: EvalDataset, job: SuiteRun) -> _Job:
        check_labels(entry, dataset)
        suite = get_suite(job.suite)
        if dataset.is_sequence and not suite.accepts_sequences:
            raise DataError(f"{dataset.spec!r} holds perturbation sequences; suite {job.suite} evaluates images "
                            "(use the perturbations suite on it)")
        key, info = self.key(entry, dataset, job)
        return _Job(entry, dataset, job, suite, key, info, self.plan(dataset, job))

    # -- sequential mode --------------------------------------------------------------------------------------
    def _run_sequential(self, j: _Job) -> RunResult:
        """Compute the job's chunks in order (stored ones are reused) and stop after the first chunk at which the
        stopping metrics' sequential intervals have a half-width of at most ``until_ci`` points; the run is
        aggregated over the chunks seen so far and flagged ``sequential``.

        Every chunk of the full plan is a planned look; each proportion's interval is Clopper-Pearson at level
        1 - alpha / looks (a Bonferroni split over the looks), so it covers at every look at once and stays valid
        whatever the stopping rule. The stopping metrics are the suite's headline accuracy (AutoAttack), else
        every accuracy among its columns."""
        target, looks, planned = self.options.until_ci, len(j.plan), j.plan.n
        self.store.ensure_eval(j.key, j.info)
        self.store.plan_leases(j.key, j.plan)
        j.started = time.perf_counter()
        intervals = replace(self.options.intervals, looks=looks, resamples=0)
        seen, records = j.plan, []
        for _, start, stop in j.plan.chunks():
            seen = Plan(stop, j.plan.chunk_size)  # every earlier chunk is stored: only this one can be missing
            idle = 0
            while (claim := self.store.claim(j.key, seen, self.worker, self.lease_s)).missing:
                if claim.lease is not None:
                    self._compute_leased(replace(j, plan=seen), claim.lease)
                    j.computed += 1
                elif not self._reap([j]):  # leased by another process: wait for it, or for its lease to expire
                    idle += 1
                    time.sleep(self._poll_s(idle))
            records += self.store.records(j.key, [(start, stop)])
            widest = _sequential_width(j, records, intervals)
            if widest is not None and widest <= target:
                break
        j.plan = seen
        j.finished = True
        return self._finish(j, cached=j.computed == 0, sequential={"target_half_width": target, "looks": looks,
                                                                   "planned_n": planned})

    # -- independent workers: leases ---------------------------------------------------------------------------
    def _run_leased(self, jobs: list[_Job]) -> list[RunResult | None]:
        for j in jobs:
            self.store.ensure_eval(j.key, j.info)
            if self.store.plan_leases(j.key, j.plan) == 0:
                j.finished = True
                if not self.shared:
                    j.result = self._finish(j, cached=True)
        waiting = [j for j in jobs if not j.finished]
        idle = 0
        while waiting:
            progressed = False
            for j in waiting:
                progressed |= self._drain(j)
            waiting = [j for j in waiting if not j.finished]
            idle = 0 if progressed else idle + 1
            if waiting and not progressed and not self._reap(waiting):
                time.sleep(self._poll_s(idle))
        return [j.result for j in jobs]

    def _poll_s(self, idle: int = 0) -> float:
        """How long a worker with nothing to claim waits before it looks again (for expired leases and finished
        jobs; a cheap read-mostly transaction): 20 ms after its last chunk, doubling while it stays idle, at most
        once a second. The short first waits let the last worker aggregate as soon as the others commit."""
        ceiling = max(0.2, min(1.0, self.lease_s / (2 * BEATS_PER_LEASE)))
        return min(ceiling, POLL_FIRST_S * 2 ** max(0, idle - 1))

    def _drain(self, j: _Job) -> bool:
        """Claim, compute and commit the job's chunks until none is claimable; True when one was computed."""
        progressed = False
        while True:
            claim = self.store.claim(j.key, j.plan, self.worker, self.lease_s)
            if claim.lease is None:
                j.finished = claim.missing == 0
                if not j.finished and not progressed:
                    log.debug("%s %s: %d chunks left, all leased by other workers", j.entry.name, j.job.suite,
                              claim.missing)
                return progressed
            if not progressed and not j.computed:
                self._progress(j.entry.name, j.job, 0)  # progress now names this job
            progressed = True
            commit = self._compute_leased(j, claim.lease)
            if commit.missing == 0:
                j.finished = True
                if commit.inserted:  # this commit completed the plan: this worker aggregates
                    j.result = self._finish(j, cached=False)
                return True

    def _compute_leased(self, j: _Job, lease: Lease) -> Commit:
        if lease.taken_from:
            log.warning("%s %s: took over chunk [%d, %d) from worker %s (its lease expired)", j.entry.name,
                        j.job.suite, lease.start, lease.stop, short(lease.taken_from))
        self.current = (j.key, lease)
        try:
            with Heartbeat(self.store, j.key, lease, self.worker, self.lease_s):
                out = self._compute(j, lease.index, lease.start, lease.stop)
            commit = self._commit(j, out)
        except BaseException:
            self.release_current()
            raise
        finally:
            self.current = None
        j.computed += 1
        self._progress(j.entry.name, j.job, lease.stop - lease.start)
        return commit

    def release_current(self, store: Store | None = None) -> None:
        """Give back the lease being computed (interrupted, preempted), so that another worker takes it at once;
        a failure is only logged (the lease then expires)."""
        current = self.current
        if current is None:
            return
        try:
            (store or self.store).release(current[0], current[1], self.worker)
        except Exception as exc:  # noqa: BLE001 - the lease expires anyway
            log.debug("could not release the lease on chunk [%d, %d): %s", current[1].start, current[1].stop, exc)

    def _reap(self, waiting: list[_Job]) -> bool:
        """End the leases of dead workers of this machine (no need to wait for their expiry); True when any."""
        ended = 0
        for j in waiting:
            for owner in self.store.lease_owners(j.key):
                if owner != self.worker and known_dead(owner):
                    ended += self.store.expire(j.key, owner)
                    log.info("worker %s is gone; its lease on %s %s is taken over", short(owner), j.entry.name,
                             j.job.suite)
        return ended > 0

    def _commit(self, j: _Job, out: ChunkOutput) -> Commit:
        return self.store.commit_chunk(j.key, start=out.start, stop=out.stop, index=out.index, seed=out.seed,
                                       batch_size=out.batch_size, seconds=out.seconds, device=out.device,
                                       flags=out.flags, ids=out.ids, records=out.records, worker=out.worker,
                                       plan=j.plan)

    # -- torchrun: one writer ----------------------------------------------------------------------------------
    def _run_ranked(self, j: _Job) -> RunResult | None:
        if self.rank == 0:
            self.store.ensure_eval(j.key, j.info)
        done = self._done(j.key)
        todo = [c for c in j.plan.chunks() if (c[1], c[2]) not in done]
        shares = [[c for c in todo if c[0] % self.world == r] for r in range(self.world)]
        mine = shares[self.rank]
        if mine:
            self._progress(j.entry.name, j.job, 0)
        for k in range(max(len(share) for share in shares)):  # round k: every rank's k-th chunk
            out = self._compute(j, *mine[k]) if k < len(mine) else None
            received = _gather(out, self.world)
            if self.rank == 0:
                for item in received:
                    if item is not None:
                        self._commit(j, item)
            if out is not None:
                self._progress(j.entry.name, j.job, out.stop - out.start)
        if self.rank != 0:
            return None
        return self._finish(j, cached=not todo)

    # -- computing a chunk -------------------------------------------------------------------------------------
    def _compute(self, j: _Job, index: int, start: int, stop: int) -> ChunkOutput:
        entry, dataset, job = j.entry, j.dataset, j.job
        loaded = self.models.get(entry)
        x, y = dataset.load(start, stop, entry.preprocessing)
        if int(y.max()) >= entry.num_classes:
            raise DataError(f"{dataset.spec!r} has label {int(y.max())} but {entry.name} predicts "
                            f"{entry.num_classes} classes")
        seed = chunk_seed(self.options.seed, index)
        chunk = Chunk(index, start, stop, x.to(self.device), y.to(self.device), seed,
                      dataset.sample_ids(start, stop))
        t0 = time.perf_counter()
        output = self._with_backoff(j.suite, loaded, chunk, job, dataset, entry)
        if len(output.records) != stop - start:
            raise RuntimeError(f"suite {job.suite} returned {len(output.records)} records for {stop - start} samples")
        return ChunkOutput(index, start, stop, seed, self.batch_size, time.perf_counter() - t0, str(self.device),
                           tuple(output.flags), tuple(str(i) for i in chunk.ids), tuple(output.records), self.worker)

    def _with_backoff(self, suite, loaded, chunk, job, dataset, entry):
        members = {m.name: self._load_member(m) for m in self._member_entries(suite, job.config, entry)}
        while True:
            ctx = Context(self.device, self.batch_size, dataset, entry, members)
            torch.manual_seed(chunk.seed)
            try:
                return suite.run(loaded.model, chunk, job.config, ctx)
            except torch.OutOfMemoryError:
                if self.batch_size <= 1:
                    raise VitbenchError(f"{entry.name}: out of memory even at batch size 1; use a smaller model "
                                        "input or another device") from None
                self.batch_size = max(1, self.batch_size // 2)
                log.warning("out of memory; retrying chunk %d with batch size %d", chunk.index, self.batch_size)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def _load_member(self, member: ZooEntry) -> torch.nn.Module:
        try:
            return self._members.get(member).model
        except VitbenchError as exc:
            raise type(exc)(f"cannot load {member.name}, a model the suite needs: {exc}") from None

    def _finish(self, j: _Job, *, cached: bool, sequential: dict | None = None) -> RunResult:
        entry, dataset, job, suite, key = j.entry, j.dataset, j.job, j.suite, j.key
        spans, n = j.plan.spans(), j.plan.n
        records = self.store.records(key, spans)
        intervals = self.options.intervals
        details: dict[str, Any] = {}
        if sequential is not None:
            intervals = replace(intervals, looks=sequential["looks"])
            details["sequential"] = dict(sequential, method=SEQUENTIAL, n=n)
        metrics = annotate(suite.aggregate(records, job.config), len(records), suite.resampler(records, job.config),
                           intervals)
        flags: list[str] = ["sequential"] if sequential is not None else []
        for info in self.store.chunk_info(key, spans):
            flags += [f for f in info["flags"] if f not in flags]
        flags += [f for f in suite.run_flags(records, job.config, metrics) if f not in flags]
        config = to_plain(job.config)
        prov = dict(provenance(self.device), dataset_size=len(dataset), intervals=to_plain(intervals))
        columns = suite.columns(job.config, metrics)
        seconds = time.perf_counter() - j.started
        run_id = self.store.add_run(
            eval_key=key, model=entry.name, dataset=dataset.spec, data_fingerprint=dataset.fingerprint,
            label_space=dataset.label_space.name, suite=job.suite, config=config, n_examples=n,
            seed=self.options.seed, metrics={k: m.to_stored() for k, m in metrics.items()},
            flags=flags, provenance=prov, seconds=seconds, cached=cached,
            details={"columns": [c.to_dict() for c in columns], "plots": list(suite.plots), **details})
        return RunResult(entry.name, job.suite, config, dataset.spec, n, metrics, flags, columns, cached, seconds,
                         run_id, key, provenance=prov, sequential=details.get("sequential"))
