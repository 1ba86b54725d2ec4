"""The Python door to vitbench: load or wrap a model, evaluate it, read the report.

    import vitbench
    model = vitbench.wrap(net, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=32, num_classes=10)
    report = vitbench.evaluate(model, "digits", suites=["clean", "pgd_sweep"], eps=0.1, n_examples=100)
    report["clean"].metrics["accuracy"], report.samples("clean")

The command line is a caller of these functions: ``vitbench bench`` is :func:`evaluate` per model, and prints
:meth:`Report.to_json` for ``--json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitbench import defaults
from vitbench.errors import ConfigError, VitbenchError

if TYPE_CHECKING:
    import datasets
    import torch

    from vitbench.data.base import EvalDataset
    from vitbench.engine import RunResult
    from vitbench.slurm import SlurmOptions, Submission
    from vitbench.store import Store
    from vitbench.zoo.schema import Zoo, ZooEntry
    from vitbench.zoo.wrapper import RobustModel

class Progress:
    """What :func:`evaluate` reports while it works (subclass it; the default does nothing).

    ``start`` receives the total work still to do (examples times the suites' relative cost) before the first
    chunk; ``advance`` follows each stored chunk with its share of that work.
    """

    def start(self, total: float) -> None:
        """Called once, before any chunk is computed."""

    def advance(self, model: str, suite: str, work: float, examples: int = 0) -> None:
        """Called after each stored chunk with its work and its number of examples."""


def _zoo(zoo: str | os.PathLike | Zoo | None) -> Zoo:
    from vitbench.zoo.schema import Zoo, load_zoo
    if isinstance(zoo, Zoo):
        return zoo
    return load_zoo(zoo, require_user=zoo is not None)


def _entry(name_or_entry: str | ZooEntry, zoo: str | os.PathLike | Zoo | None) -> ZooEntry:
    from vitbench.zoo.schema import ZooEntry
    if isinstance(name_or_entry, ZooEntry):
        return name_or_entry
    if not isinstance(name_or_entry, str):
        raise ConfigError(f"expected a zoo name or a ZooEntry, got {type(name_or_entry).__name__}")
    return _zoo(zoo).get(name_or_entry)


def load_model(name_or_entry: str | ZooEntry, *, zoo: str | os.PathLike | Zoo | None = None,
               device: str | None = None) -> RobustModel:
    """A zoo model with verified weights, in eval mode: [0, 1] NCHW images in, logits out.

    Args:
        name_or_entry: a zoo entry name (``digits-vit.light``) or a :class:`~vitbench.zoo.schema.ZooEntry`.
        zoo: a user zoo file laid over the bundled zoo (default: ``$VITBENCH_ZOO`` or ``./model_zoo.yaml``).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (default: the GPU when there is one).

    Returns:
        The :class:`~vitbench.zoo.wrapper.RobustModel`; its ``identity`` says which weights it holds.

    Raises:
        NotFoundError: unknown name. CheckpointError: missing, unsafe or mismatched weights. ConfigError: a bad
        device.
    """
    from vitbench.engine import resolve_device
    from vitbench.zoo.load import load_model as _load
    entry = _entry(name_or_entry, zoo)
    return _load(entry, device=resolve_device(device or "auto")).model


def wrap(module: torch.nn.Module, *, mean: Sequence[float], std: Sequence[float], input_size: int,
         interpolation: str = "bicubic", crop_pct: float = 1.0, num_classes: int | None = None,
         name: str | None = None, dataset: str = "custom") -> RobustModel:
    """Make any network in memory a model the battery accepts.

    The network takes normalised input; ``mean``/``std`` are applied inside, so attacks see [0, 1] pixels like for
    every zoo model. Its identity in the store is the sha256 of its state dict together with this preprocessing,
    taken again each time it is evaluated: results are cached and resumed for the same weights, and a network
    trained further is a new model version.

    Args:
        module: the classifier (any ``torch.nn.Module`` mapping (B, 3, S, S) to logits).
        mean, std: per-channel normalisation the network expects.
        input_size: the side S of its square input; images are resized (and cropped by ``crop_pct``) to it.
        interpolation: ``nearest``, ``bilinear`` or ``bicubic``.
        crop_pct: the centre crop taken before resizing (1.0: the whole image).
        num_classes: number of logits (default: read from one forward pass).
        name: how the model appears in the store and tables (default: ``wrapped-<sha256[:8]>``).
        dataset: the label space it predicts (``digits``, ``cifar10``, ``imagenet``, ...), checked against the data.

    Returns:
        A :class:`~vitbench.zoo.wrapper.RobustModel` around ``module`` (the module itself, not a copy).

    Raises:
        ConfigError: bad preprocessing values or name.
    """
    import torch

    from vitbench.zoo.load import state_dict_sha256
    from vitbench.zoo.wrapper import RobustModel
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"wrap() takes a torch.nn.Module, got {type(module).__name__}")
    if num_classes is None:
        num_classes = _count_logits(module, mean, std, input_size)
    sha = state_dict_sha256(module)
    entry = _memory_entry(module, sha, mean=mean, std=std, input_size=input_size, interpolation=interpolation,
                          crop_pct=crop_pct, num_classes=num_classes, name=name, dataset=dataset)
    model = RobustModel(module, mean=entry.preprocessing.mean, std=entry.preprocessing.std, name=entry.name,
                        num_classes=num_classes, input_size=input_size)
    model.entry = entry
    return model


def _count_logits(module, mean, std, input_size) -> int:
    import torch
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = module.training
    module.eval()
    with torch.no_grad():
        x = (torch.full((1, 3, input_size, input_size), 0.5, device=device)
             - torch.tensor(mean, device=device).view(1, 3, 1, 1)) / torch.tensor(std, device=device).view(1, 3, 1, 1)
        out = module(x)
    module.train(was_training)
    if out.ndim != 2:
        raise ConfigError(f"the module's output has shape {tuple(out.shape)}, expected (batch, classes) logits")
    return int(out.shape[1])


def _memory_entry(module, sha: str, *, name: str | None, dataset: str, **prep: Any) -> ZooEntry:
    from vitbench.zoo.schema import Preprocessing, Weights, ZooEntry
    kind = f"{type(module).__module__}.{type(module).__qualname__}"
    try:
        return ZooEntry(name=name or f"wrapped-{sha[:8]}", arch=f"memory:{kind}",
                        weights=Weights(source=f"memory:{sha}", sha256=sha), num_classes=prep.pop("num_classes"),
                        dataset=dataset,
                        preprocessing=Preprocessing(input_size=int(prep["input_size"]),
                                                    interpolation=prep["interpolation"], crop_pct=prep["crop_pct"],
                                                    mean=tuple(prep["mean"]), std=tuple(prep["std"])))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"wrap(): {exc}") from None


def rewrapped(model: RobustModel) -> ZooEntry:
    """The entry of a wrapped model with its state dict hashed again (it may have been trained since wrap())."""
    from dataclasses import replace

    from vitbench.zoo.load import state_dict_sha256
    entry = model.entry
    sha = state_dict_sha256(model.net)
    if sha == entry.weights.sha256:
        return entry
    new = replace(entry, weights=replace(entry.weights, source=f"memory:{sha}", sha256=sha))
    model.entry = new
    return new


# -- evaluation ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SuiteReport:
    """One suite's result on one model: metrics as floats, flags, how it was made."""

    suite: str
    model: str
    dataset: str
    n_examples: int
    config: dict
    metrics: dict[str, float]
    flags: list[str]
    eval_key: str
    cached: bool
    provenance: dict = field(default_factory=dict)
    #: each metric's 95% interval (Wilson for accuracies, bootstrap otherwise) and number of examples
    ci95: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    n: dict[str, int | None] = field(default_factory=dict)
    #: a quick ``until_ci`` run: target_half_width, looks, planned_n, n, method (None for an ordinary run)
    sequential: dict | None = None


class Report:
    """The results of :func:`evaluate`: ``report["autoattack"].metrics``, ``report.samples("clean")``."""

    def __init__(self, results: Sequence[RunResult], store: str | None, chunk_size: int) -> None:
        self.results = list(results)
        self._store, self._chunk_size = store, chunk_size

    def suites(self) -> list[str]:
        return [r.suite for r in self.results]

    def __getitem__(self, suite: str) -> SuiteReport:
        matches = [r for r in self.results if r.suite == suite]
        if len(matches) != 1:
            have = ", ".join(self.suites()) or "none"
            raise KeyError(f"{suite!r}: {len(matches)} runs of that suite in this report (suites: {have}); "
                           "iterate over report.results for repeated suites")
        return _suite_report(matches[0])

    def __iter__(self):
        """Every suite run, in order (a preset may run one suite under two configs)."""
        return iter(_suite_report(r) for r in self.results)

    def to_json(self) -> list[dict]:
        """Exactly what ``vitbench bench --json`` prints for this model."""
        return [r.to_json() for r in self.results]

    def samples(self, suite: str | None = None) -> datasets.Dataset:
        """Per-sample records of one suite's run (all suites when the report has one) as a ``datasets.Dataset``,
        with the example ``index`` and ``sample_id`` first."""
        import datasets

        from vitbench.engine import plan_chunks
        from vitbench.store import open_store
        runs = [r for r in self.results if suite is None or r.suite == suite]
        if len(runs) != 1:
            raise KeyError(f"name one suite of {', '.join(self.suites())} (samples of one run at a time)")
        run = runs[0]
        store = open_store(self._store)
        try:
            spans = [(a, b) for _, a, b in plan_chunks(run.n_examples, self._chunk_size)]
            rows = store.sample_rows(run.eval_key, spans)
        finally:
            store.close()
        return datasets.Dataset.from_list([{"index": i, "sample_id": sid, **rec} for i, sid, rec in rows])


def _suite_report(r: RunResult) -> SuiteReport:
    return SuiteReport(r.suite, r.model, r.dataset, r.n_examples, r.config,
                       {k: float(m.value) for k, m in r.metrics.items()}, list(r.flags), r.eval_key, r.cached,
                       dict(r.provenance), {k: m.ci95 for k, m in r.metrics.items()},
                       {k: m.n for k, m in r.metrics.items()}, r.sequential)


def _data(data: str | EvalDataset) -> EvalDataset:
    from vitbench.data import open_dataset
    from vitbench.data.base import EvalDataset
    if isinstance(data, EvalDataset):
        return data
    if not isinstance(data, str):
        raise ConfigError(f"data must be a dataset spec string or an EvalDataset, got {type(data).__name__}")
    return open_dataset(data)


def _preset(suites: str | Sequence[str] | None, preset: Any):
    from vitbench.suites import Preset, load_preset, preset_from_suites
    if isinstance(preset, Preset):
        return preset
    if suites is not None and preset is not None:
        raise ConfigError("give suites or a preset, not both")
    if suites is not None:
        return preset_from_suites(suites if isinstance(suites, str) else ",".join(suites))
    return load_preset(preset or "standard")


def _store(store: str | os.PathLike | Store | None) -> tuple[Store, bool]:
    from vitbench.store import Store, open_store
    if isinstance(store, Store):
        return store, False
    return open_store(store), True


@dataclass(frozen=True)
class Setup:
    """An evaluation checked and resolved before anything is computed: the options, each model's entry (and the
    model itself when it is in memory), the dataset and each model's suite runs."""

    options: Any  # engine.Options
    targets: list  # (ZooEntry, RobustModel | None) per model
    dataset: Any  # EvalDataset
    data: Any  # what the caller passed as data (a spec string travels to worker processes as it is)
    jobs: list  # per model: its SuiteRuns
    zoo: Any = None  # the user zoo the models a suite needs besides the evaluated one are looked up in

    def positions(self) -> list[tuple[int, int]]:
        """(model index, job index) of every suite run, in report order."""
        return [(i, k) for i, model_jobs in enumerate(self.jobs) for k in range(len(model_jobs))]

    def task(self, position: tuple[int, int]) -> tuple:
        """The (entry, dataset, suite run) at a position."""
        i, k = position
        return self.targets[i][0], self.dataset, self.jobs[i][k]

    def engine(self, store: Store | None, progress: Progress | None = None, **kw):
        """An engine for this evaluation, with the models already in memory handed in."""
        from vitbench.engine import Engine
        from vitbench.suites import get_suite
        progress = progress or Progress()
        engine = Engine(store, self.options, progress=lambda name, job, n: progress.advance(
            name, job.suite, n * get_suite(job.suite).cost(job.config), n),
            zoo=None if self.zoo is None else _zoo(self.zoo), **kw)
        for entry, in_memory in self.targets:
            if in_memory is not None:
                engine.models.put(entry, in_memory)
        return engine

    def reports(self, results: dict[tuple[int, int], RunResult], store: str | None) -> list[Report]:
        """One report per model from the results by position."""
        return [Report([results[(i, k)] for k in range(len(model_jobs)) if (i, k) in results], store,
                       self.options.chunk_size) for i, model_jobs in enumerate(self.jobs)]


def setup(models: Sequence[str | ZooEntry | RobustModel], data: str | EvalDataset, *,
          suites: str | Sequence[str] | None = None, preset: str | None = None, norm: str | None = None,
          eps: float | str | None = None, n_examples: int | None = None, seed: int = 0,
          device: str | None = None, batch_size: int | None = None, chunk_size: int | None = None,
          zoo: str | os.PathLike | Zoo | None = None, interval: str = defaults.INTERVAL,
          resamples: int = defaults.RESAMPLES, until_ci: float | None = None) -> Setup:
    """Check and resolve an evaluation (arguments as for :func:`evaluate_many`) without computing anything.

    Raises:
        VitbenchError: any bad input, as one message.
    """
    from vitbench.engine import Options, resolve_device
    from vitbench.intervals import IntervalOptions
    from vitbench.threat import parse_eps, parse_norm
    try:
        intervals = IntervalOptions(method=interval, resamples=resamples, seed=seed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options = Options(seed=seed, n_examples=n_examples, chunk_size=chunk_size or defaults.CHUNK_SIZE,
                      device=device or "auto", batch_size=batch_size or defaults.BATCH_SIZE, intervals=intervals,
                      until_ci=until_ci)
    if until_ci is not None and not (0 < until_ci < 100):
        raise ConfigError(f"until_ci (--until-ci) is a half-width in points between 0 and 100, e.g. 2; got {until_ci}")
    if options.batch_size < 1 or options.chunk_size < 1:
        raise VitbenchError("batch_size and chunk_size must be >= 1")
    resolve_device(options.device)  # a wrong device fails before any data is opened or stored
    targets = [_target(m, zoo) for m in models]
    dataset = _data(data)
    battery = _preset(suites, preset)
    overrides = {"norm": None if norm is None else parse_norm(norm), "eps": None if eps is None else parse_eps(eps)}
    jobs = [resolve_jobs(battery, entry, overrides, dataset) for entry, _ in targets]
    return Setup(options, targets, dataset, data, jobs, zoo)


def evaluate(model: str | ZooEntry | RobustModel, data: str | EvalDataset, *,
             suites: str | Sequence[str] | None = None, preset: str | None = None, norm: str | None = None,
             eps: float | str | None = None, n_examples: int | None = None, seed: int = 0,
             device: str | None = None, batch_size: int | None = None, chunk_size: int | None = None,
             store: str | os.PathLike | Store | None = None, zoo: str | os.PathLike | Zoo | None = None,
             progress: Progress | None = None, workers: int = 1, interval: str = defaults.INTERVAL,
             resamples: int = defaults.RESAMPLES, until_ci: float | None = None) -> Report:
    """Run suites on one model over a dataset, storing every chunk; cached chunks are reused.

    Args:
        model: a zoo name, a ZooEntry, or a RobustModel from :func:`load_model` or :func:`wrap`.
        data: a dataset spec (``digits``, ``imagenet-val:/data/val?subset=robustbench-5000``) or an EvalDataset.
        suites, preset, norm, eps, n_examples, seed, device, batch_size, chunk_size, store, zoo, progress,
            workers, interval, resamples, until_ci: as for :func:`evaluate_many`.

    Returns:
        A :class:`Report` of every suite run.

    Raises:
        VitbenchError: any bad input (unknown names, data that does not fit the model, a bad device...), as one
        message, before anything is computed.
    """
    return evaluate_many([model], data, suites=suites, preset=preset, norm=norm, eps=eps, n_examples=n_examples,
                         seed=seed, device=device, batch_size=batch_size, chunk_size=chunk_size, store=store,
                         zoo=zoo, progress=progress, workers=workers, interval=interval, resamples=resamples,
                         until_ci=until_ci)[0]


def evaluate_many(models: Sequence[str | ZooEntry | RobustModel], data: str | EvalDataset, *,
                  suites: str | Sequence[str] | None = None, preset: str | None = None, norm: str | None = None,
                  eps: float | str | None = None, n_examples: int | None = None, seed: int = 0,
                  device: str | None = None, batch_size: int | None = None, chunk_size: int | None = None,
                  store: str | os.PathLike | Store | None = None, zoo: str | os.PathLike | Zoo | None = None,
                  progress: Progress | None = None, workers: int = 1, interval: str = defaults.INTERVAL,
                  resamples: int = defaults.RESAMPLES, until_ci: float | None = None) -> list[Report]:
    """:func:`evaluate` for several models on one dataset (one report each, in order; each model loaded once).

    Any number of processes evaluating the same models, data and suites on one store share the work through
    chunk leases; under torchrun only rank 0 opens the store.

    Args:
        models: zoo names, ZooEntries or RobustModels from :func:`load_model` or :func:`wrap`.
        data: a dataset spec (``digits``, ``imagenet-val:/data/val?subset=robustbench-5000``) or an EvalDataset.
        suites: suite names with their default configs (``["clean", "autoattack"]`` or ``"clean,autoattack"``);
            or ``preset``: a battery preset name or YAML file (default: ``standard``).
        norm, eps: the threat model (default: the preset's, else the model's, else L-inf at the given eps).
        n_examples: evaluate the first N examples (default: all).
        seed: the run seed; chunk i is seeded from (seed, i).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        batch_size: the largest batch (halved on out-of-memory; default 256).
        chunk_size: examples per stored chunk (part of the evaluation key; default 100).
        store: a SQLite path, a ``postgresql://`` URL, an open Store, or None for ``$VITBENCH_STORE`` /
            ``$VITBENCH_HOME/results.sqlite``.
        zoo: a user zoo file for zoo names.
        progress: a :class:`Progress` told the work to do and each stored chunk.
        workers: worker processes sharing the work through chunk leases (each with its share of the CPU threads,
            or its own GPU when there are several); models in memory must be picklable for them.
        interval: the 95% interval of accuracies, ``wilson`` or ``clopper-pearson``; other metrics get a seeded
            percentile bootstrap over examples with ``resamples`` resamples (0: none). Neither changes the evaluation
            key: a rerun with other values is a cache hit that aggregates again.
        until_ci: sequential mode: compute chunk after chunk and stop once the accuracies' 95% intervals
            (Clopper-Pearson, Bonferroni-split over every chunk of the plan as a planned look, so valid under this
            optional stopping) have a half-width of at most this many points; the run is flagged ``sequential``
            (not leaderboard-grade: unranked) and its chunks are ordinary chunks a later full run reuses.

    Returns:
        One :class:`Report` per model (on torchrun ranks other than 0, and in a process that shared the work
        with others and did not finish a suite run: without that run).

    Raises:
        VitbenchError: any bad input, as one message, before anything is computed.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if workers > 1 and until_ci is not None:
        raise ConfigError("--until-ci runs in one process (it decides after each chunk whether to go on): drop "
                          "--workers")
    prepared = setup(models, data, suites=suites, preset=preset, norm=norm, eps=eps, n_examples=n_examples,
                     seed=seed, device=device, batch_size=batch_size, chunk_size=chunk_size, zoo=zoo,
                     interval=interval, resamples=resamples, until_ci=until_ci)
    progress = progress or Progress()
    if workers > 1:
        from vitbench.workers import run_local
        opened, owned = _store(store)
        try:
            return prepared.reports(run_local(prepared, opened, workers, progress), opened.address)
        finally:
            if owned:
                opened.close()
    from vitbench.engine import dist_world
    rank, _ = dist_world()
    opened, owned = _store(store) if rank == 0 else (None, False)  # under torchrun only rank 0 opens the store
    try:
        engine = prepared.engine(opened, progress)
        tasks = [prepared.task(p) for p in prepared.positions()]
        progress.start(sum(engine.pending(*task) * _cost(task[2]) for task in tasks))
        results = engine.run_all(tasks)
        done = {p: r for p, r in zip(prepared.positions(), results, strict=True) if r is not None}
        return prepared.reports(done, None if opened is None else opened.address)
    finally:
        if owned:
            opened.close()


def submit(models: Sequence[str | ZooEntry | RobustModel], data: str | EvalDataset, *, slurm: SlurmOptions,
           suites: str | Sequence[str] | None = None, preset: str | None = None, norm: str | None = None,
           eps: float | str | None = None, n_examples: int | None = None, seed: int = 0,
           device: str | None = None, batch_size: int | None = None, chunk_size: int | None = None,
           store: str | os.PathLike | Store | None = None, zoo: str | os.PathLike | Zoo | None = None,
           interval: str = defaults.INTERVAL, resamples: int = defaults.RESAMPLES) -> Submission:
    """:func:`evaluate_many` as a Slurm job array of lease workers (through submitit, ``vitbench[slurm]``).

    Suite runs already stored are aggregated at once; the array's jobs share the others through chunk leases in
    ``store``, which the nodes must reach (a ``postgresql://`` URL, or a SQLite file on a shared disk).

    Args:
        slurm: the array's size and resources (:class:`vitbench.slurm.SlurmOptions`).
        others: as for :func:`evaluate_many` (the models must be zoo models or picklable).

    Returns:
        A :class:`vitbench.slurm.Submission`: ``array_id``, ``jobs``, ``folder`` (logs), ``reports()`` (waits).

    Raises:
        VitbenchError: bad input, submitit missing, no ``sbatch`` on this machine, before anything is submitted.
    """
    from vitbench.slurm import submit as submit_array
    prepared = setup(models, data, suites=suites, preset=preset, norm=norm, eps=eps, n_examples=n_examples,
                     seed=seed, device=device, batch_size=batch_size, chunk_size=chunk_size, zoo=zoo,
                     interval=interval, resamples=resamples)
    opened, _ = _store(store)  # kept open for Submission.reports()
    return submit_array(prepared, opened, slurm)


def _cost(job) -> float:
    from vitbench.suites import get_suite
    return get_suite(job.suite).cost(job.config)


def _target(model, zoo) -> tuple[ZooEntry, RobustModel | None]:
    """The entry to evaluate and, for a model already in memory, the model itself."""
    from vitbench.zoo.wrapper import RobustModel
    if isinstance(model, RobustModel):
        entry = getattr(model, "entry", None)
        if entry is None:
            raise ConfigError("this RobustModel has no identity: get models from vitbench.load_model or "
                              "vitbench.wrap")
        if entry.weights.source.startswith("memory:"):
            entry = rewrapped(model)
        return entry, model
    return _entry(model, zoo), None


def resolve_jobs(battery, entry: ZooEntry, overrides: dict, dataset: EvalDataset | None = None) -> list:
    """The battery's suites with their configs resolved for one model (CLI overrides, then the model's threat)."""
    from vitbench.engine import SuiteRun
    from vitbench.suites import resolve
    threat = None if entry.threat_model is None else (entry.threat_model.norm, entry.threat_model.eps)
    return [SuiteRun(item.suite, resolve(item, overrides=overrides, default_threat=threat,
                                         where=f"preset {battery.name}, model {entry.name}", dataset=dataset))
            for item in battery.items]


def report_json(reports: Sequence[Report]) -> str:
    """The JSON ``vitbench bench --json`` prints for several models."""
    return json.dumps([item for report in reports for item in report.to_json()], indent=2)


def export_samples(model: str, suite: str, out: str | os.PathLike, *, data: str | None = None,
                   store: str | os.PathLike | Store | None = None, zoo: str | os.PathLike | Zoo | None = None) -> Path:
    """Write the per-sample records of a model's latest run of a suite (its current version) to ``out``: parquet
    for ``.parquet``, JSON lines for ``.jsonl`` (as lm-evaluation-harness's ``--log_samples``).

    Raises:
        VitbenchError: no such run, or another file type.
    """
    import datasets

    from vitbench.board.tables import current_runs
    target = Path(out)
    if target.suffix not in (".parquet", ".jsonl"):
        raise ConfigError(f"--out {target}: write .parquet or .jsonl")
    runs = _runs(store)
    mine = [r for r in current_runs(runs, _current(runs, zoo)) if r.model == model and r.suite == suite
            and (data is None or data in (r.dataset, r.label_space))]
    if not mine:
        raise VitbenchError(f"no stored {suite} run of {model}" + (f" on {data}" if data else "")
                            + f": run `vitbench bench {model} --suite {suite} --data ...` first")
    run = mine[-1]
    opened, owned = _store(store)
    try:
        from vitbench.engine import plan_chunks
        chunk = opened.chunk_size(run.eval_key)
        rows = opened.sample_rows(run.eval_key, [(a, b) for _, a, b in plan_chunks(run.n_examples, chunk)])
    finally:
        if owned:
            opened.close()
    table = datasets.Dataset.from_list([{"index": i, "sample_id": sid, **rec} for i, sid, rec in rows])
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".parquet":
        table.to_parquet(str(target))
    else:
        table.to_json(str(target), lines=True)
    return target


# -- training ---------------------------------------------------------------------------------------------------

def train(recipe: str, *, out: str | os.PathLike | None = None, register: str | None = None,
          device: str = "auto", resume: bool = False, force: bool = False,
          weights_dir: str | os.PathLike | None = None, config: str | None = None, workers: int = 0,
          bench: str | None = None, bench_data: str | None = None, zoo: str | os.PathLike | None = None,
          **values: Any) -> ZooEntry:
    """Train a model with a bundled recipe (``vitbench list recipes``) and return its zoo entry.

    Args:
        recipe: ``standard``, ``light-recipe``, ``canonical-recipe``, ``trades``, ``nullspace``, ``rspc``.
        out: the run's folder (checkpoints, log; default ``$VITBENCH_HOME/runs/NAME``).
        register: a name to register the trained model under in the user zoo (``zoo``); without it the entry is
            returned unregistered (pointing at ``out/model.safetensors``) and can be evaluated directly.
        device, workers, resume, force, weights_dir: as the CLI's ``--device``, ``--workers``, ``--resume``,
            ``--force``, ``--weights-dir``.
        config: a YAML config file, or the name of a bundled one (``trades-paper``).
        bench, bench_data: a battery preset run on the registered model (with ``register``), and its data.
        **values: config values (``vitbench/training/config.py``): ``arch``, ``arch_args``, ``init``, ``data``,
            ``epochs``, ``eps`` (the final training eps), ``seed``, ``lr``, ``recipe_args``, ...

    Returns:
        The trained model's :class:`~vitbench.zoo.schema.ZooEntry` (None on torchrun ranks other than 0).

    Raises:
        VitbenchError: an unknown recipe or config key, a bad value, an --out holding another run, a --bench that
        could not run (checked before training).
    """
    from pathlib import Path as _Path

    from vitbench.training.config import load_config
    from vitbench.training.run import TrainJob, config_values, run_training
    cfg = load_config(recipe, config_file=config, cli=config_values(values))
    job = TrainJob(out=None if out is None else _Path(out), device=device, workers=workers, resume=resume,
                   register=register, force=force, weights_dir=None if weights_dir is None else _Path(weights_dir),
                   bench=bench, bench_data=bench_data, zoo=None if zoo is None else str(zoo))
    return run_training(cfg, job).entry


# -- the leaderboard --------------------------------------------------------------------------------------------

def _current(runs, zoo) -> dict[str, str | None]:
    from vitbench.zoo.identity import current_fingerprint
    zoo = _zoo(zoo)
    return {name: current_fingerprint(zoo, name) for name in {r.model for r in runs}}


def _runs(store: str | os.PathLike | Store | None) -> list:
    opened, owned = _store(store)
    try:
        return opened.runs()
    finally:
        if owned:
            opened.close()


def compare(a: str, b: str, *, data: str | None = None, suite: str | None = None,
            store: str | os.PathLike | Store | None = None, zoo: str | os.PathLike | Zoo | None = None):
    """Two models on the examples both were evaluated on: for each accuracy, the paired difference with its 95%
    interval (Newcombe) and an exact McNemar test on the per-example outcomes.

    Args:
        a, b: zoo names (their current versions are compared).
        data: only results on this dataset spec or label space.
        suite: only this suite's metrics (clean accuracy always joins).
        store, zoo: as for :func:`evaluate`.

    Returns:
        A :class:`vitbench.board.compare.Comparison` (``.paired``, ``.to_json()``, ``.to_markdown()``).

    Raises:
        VitbenchError: when a model has no results, or the two never saw the same examples.
    """
    from vitbench.board.compare import compare_models
    runs = _runs(store)
    known = {r.model for r in runs}
    for name in (a, b):
        if name not in known:
            _zoo(zoo).get(name)  # an unknown name gets "did you mean"; a known one falls through to "no results"
    return compare_models(runs, a, b, data=data, suite=suite, current=_current(runs, zoo))


@dataclass
class Leaderboard:
    """Leaderboard rows computed from the store: ``rows`` (sorted, with rank groups), and each format.

    ``comparison`` holds the merge with a reference leaderboard when one was asked for (``compare=``).
    """

    rows: list
    strict: bool = False
    comparison: Any = None

    def ranks(self) -> list[str | None]:
        """The rank shown for each row (``1``, ``2=``, ``2=``; see :mod:`vitbench.board.tables`)."""
        from vitbench.board.tables import rank_labels
        return rank_labels(self.rows, strict=self.strict)

    def render(self, fmt: str = "md", ci: str = "pm") -> str:
        """The table in a format (md, csv, json, latex), with intervals as ``ci`` says."""
        from vitbench.board.tables import render
        return render(self.rows, fmt, ci=ci, strict=self.strict)

    def to_markdown(self, ci: str = "pm") -> str:
        return self.render("md", ci)

    def to_csv(self) -> str:
        return self.render("csv")

    def to_latex(self, ci: str = "pm") -> str:
        return self.render("latex", ci)

    def to_json(self) -> str:
        """Exactly what ``vitbench leaderboard --json`` prints."""
        return self.render("json")


def leaderboard(*, data: str | None = None, norm: str | None = None, eps: float | str | None = None,
                models: Sequence[str] | None = None, compare: str | None = None, allow_mismatch: bool = False,
                strict_ranks: bool = False, all_versions: bool = False,
                store: str | os.PathLike | Store | None = None, zoo: str | os.PathLike | Zoo | None = None
                ) -> Leaderboard:
    """The leaderboard of what is stored: one row per model version and setup, every number with its interval.

    Args:
        data: only this dataset spec or label space (``digits``, ``imagenet``).
        norm, eps: only rows of this threat model.
        models: only these models.
        compare: a reference leaderboard (``vitbench list references``) to merge comparable rows into.
        allow_mismatch: with ``compare``, show rows of other setups, flagged and unranked.
        strict_ranks: number rows 1, 2, 3 even where a difference is within noise.
        all_versions: also rows of weights the zoo no longer holds (``NAME@SHA8``).
        store, zoo: as for :func:`evaluate`.

    Returns:
        A :class:`Leaderboard`.

    Raises:
        VitbenchError: an unknown reference, or (with ``compare``) no comparable row.
    """
    from vitbench.board.tables import build_rows
    from vitbench.threat import parse_eps, parse_norm
    runs = _runs(store)
    rows = build_rows(runs, data=data, norm=None if norm is None else parse_norm(norm),
                      eps=None if eps is None else parse_eps(eps), models=models, current=_current(runs, zoo),
                      all_versions=all_versions)
    comparison = None
    if compare is not None:
        from vitbench.board.references import compare as merge
        from vitbench.board.references import load_reference
        published = {name: e.provenance.robustbench_name for name, e in _zoo(zoo).entries.items()
                     if e.provenance.robustbench_name}
        comparison = merge(rows, load_reference(compare), allow_mismatch=allow_mismatch, published=published)
    return Leaderboard(rows, strict_ranks, comparison)


def site(out: str | os.PathLike, *, data: str | None = None, compare: str | Sequence[str] = (),
         title: str | None = None, store: str | os.PathLike | Store | None = None,
         zoo: str | os.PathLike | Zoo | None = None) -> Path:
    """Write a static leaderboard site (HTML, CSS, a small script, plots, downloads) from the store.

    The index has the leaderboard's rows, ranks and intervals, a table per (dataset, threat model) and topic,
    sortable and filterable in the browser; each model has a page (zoo entry, runs with provenance, plots, card,
    per-sample records); pairs of adjacent rows that share examples get a paired-comparison page. The site is built
    next to ``out`` and moved into place, so a failed build leaves the previous site intact (see
    :mod:`vitbench.board.site`).

    Args:
        out: the site's folder: new, empty, or a site vitbench wrote before (replaced).
        data: only results on this dataset spec or label space.
        compare: reference leaderboards (``vitbench list references``) to merge the local rows with.
        title: the site's title (default ``vitbench leaderboard``).
        store, zoo: as for :func:`evaluate`.

    Returns:
        The site's folder; open its ``index.html``.

    Raises:
        VitbenchError: an unknown reference, no stored results, or an ``out`` that cannot hold the site (a file, a
        folder with other files, no write access); nothing is changed then.
    """
    from vitbench.board import site as web
    from vitbench.board.references import load_reference
    from vitbench.board.tables import current_runs
    path = web.check_out(out)
    refs = [load_reference(name) for name in ([compare] if isinstance(compare, str) else list(compare))]
    zoo = _zoo(zoo)
    opened, owned = _store(store)
    try:
        board = leaderboard(data=data, store=opened, zoo=zoo)
        if not board.rows:
            where = f" for {data}" if data else ""
            raise VitbenchError(f"no stored results{where}; run `vitbench bench ...` first (or relax --data)")
        runs = opened.runs()
        current = _current(runs, zoo)
        models = {row.model for row in board.rows}
        shown = [r for r in current_runs(runs, current)
                 if r.model in models and (data is None or data in (r.dataset, r.label_space))]
        published = {name: e.provenance.robustbench_name for name, e in zoo.entries.items()
                     if e.provenance.robustbench_name}
        inputs = web.SiteInputs(
            title=title or web.DEFAULT_TITLE, rows=board.rows, labels=board.ranks(), board_json=board.to_json(),
            board_md=board.to_markdown(), runs=runs, shown_runs=shown, current=current, entries=zoo.entries,
            references=[web.reference_table(board.rows, ref, published) for ref in refs], store=opened, data=data)
        from vitbench.store import using_store
        with using_store(opened.address):  # plots that read per-sample records open this store, not the default
            return web.write_site(path, inputs)
    finally:
        if owned:
            opened.close()
