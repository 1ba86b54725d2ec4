"""The suite contract: the model, a chunk of data and a validated config in; per-sample records out.

Suites are pure: they never write files, draw, print, pick devices, or open the store or the zoo (the engine hands
them what they need through the :class:`Context`, e.g. a judge panel). Each suite aggregates its own records into
metrics (each declaring whether higher is better, and proportions their outcomes), names the leaderboard columns
it contributes (structured: id, kind, attack, threat) and the plots that draw its runs (names of functions in
``vitbench.board.plots``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from vitbench.metrics import Column, Metric, threat_label  # noqa: F401 - the suite contract's types


@dataclass
class Chunk:
    """A fixed slice [start, stop) of the evaluation set, on the engine's device."""

    index: int
    start: int
    stop: int
    x: torch.Tensor   # (B, 3, H, W) in [0, 1]
    y: torch.Tensor   # (B,) int64
    seed: int
    ids: list[str]

    def generator(self, *salt: object) -> torch.Generator:
        """A CPU generator seeded from the chunk seed and a salt (e.g. the eps index and restart)."""
        digest = hashlib.sha256(repr((self.seed, salt)).encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@dataclass
class Context:
    """What the engine gives a suite besides the data: device, batch size, the dataset, the zoo entry, and the
    models the suite's config names (``models``: e.g. the semantic suite's judges, loaded by the engine)."""

    device: torch.device
    batch_size: int
    dataset: Any = None
    entry: Any = None
    models: dict = field(default_factory=dict)


@dataclass
class SuiteOutput:
    """Per-sample records (one dict of floats/ints/bools/strings per sample) and chunk-level flags."""

    records: list[dict]
    flags: list[str] = field(default_factory=list)


class Suite(ABC):
    """Base class of evaluation suites. Subclasses set ``name``, ``version``, ``Config`` and ``summary``."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    Config: ClassVar[type]
    summary: ClassVar[str] = ""

    #: True for suites whose numbers describe the model on its label space rather than one evaluation setup
    #: (corruptions, natural shifts, perturbations): their leaderboard columns join every row of the model.
    aux: ClassVar[bool] = False
    #: True for suites that evaluate frame sequences (datasets whose load() gives (B, T, 3, S, S))
    accepts_sequences: ClassVar[bool] = False
    #: config fields used only when aggregating (e.g. ECE bins): left out of the evaluation key
    aggregation_only: ClassVar[tuple[str, ...]] = ()
    #: the plots that draw this suite's runs: names of functions in vitbench.board.plots (runs, out dir) -> paths
    plots: ClassVar[tuple[str, ...]] = ()
    #: a quick run of the suite, for the smoke test every suite gets: the dataset kind it runs on (a tiny instance
    #: is built by vitbench.data.examples) and config values that keep it short
    example_data: ClassVar[str] = "digits"
    smoke_config: ClassVar[dict] = {}

    def models(self, config: Any, entry: Any) -> list[str]:
        """Other models the suite's runs need, by zoo name or ``timm:ARCH.TAG``: the engine resolves and loads
        them into ``Context.models`` and puts their fingerprints in the evaluation key. Default: none."""
        return []

    def check_models(self, config: Any, entry: Any, members: Sequence[Any]) -> None:
        """Refuse (with a VitbenchError) models that cannot serve this run, e.g. a judge of another label set."""
        return None  # a hook with a do-nothing default, not an abstract method

    def key_facts(self, config: Any, entry: Any) -> dict:
        """Facts beyond the config that decide per-sample results (e.g. other models' weights); they join the
        evaluation key so that a change forces recomputation. Default: none."""
        return {}

    def configure(self, raw: dict, dataset: Any) -> dict:
        """Fill config values that follow from the dataset (before validation); default: unchanged."""
        return raw

    @abstractmethod
    def run(self, model: torch.nn.Module, chunk: Chunk, config: Any, ctx: Context) -> SuiteOutput:
        """Evaluate one chunk and return one record per sample, in order."""

    @abstractmethod
    def aggregate(self, records: Sequence[dict], config: Any) -> dict[str, Metric]:
        """Turn per-sample records into metrics."""

    def run_flags(self, records: Sequence[dict], config: Any, metrics: dict[str, Metric]) -> list[str]:
        """Flags about the whole run (e.g. a curve that rises with eps); chunk flags are added by the engine."""
        return []

    def columns(self, config: Any, metrics: dict[str, Metric]) -> list[Column]:
        """Leaderboard columns for a run of this suite."""
        return []

    def threat(self, config: Any) -> tuple[str, float] | None:
        """(norm, eps) of the run's headline threat model, if the suite has one."""
        norm, eps = getattr(config, "norm", None), getattr(config, "eps", None)
        if norm is None or not isinstance(eps, float):
            return None
        return norm, eps

    def resampler(self, records: Sequence[dict], config: Any):
        """A function from an index resample (numpy array) to every metric's value, for bootstrap intervals.
        Default: this suite's aggregation of the resampled records; suites with costly aggregations vectorise."""
        from vitbench.intervals import resample_records
        return resample_records(records, lambda rs: self.aggregate(rs, config))

    def cost(self, config: Any) -> float:
        """Relative cost per sample (forward-backward passes), for the progress bar."""
        return 1.0


def eps_label(norm: str, eps: float) -> str:
    """``Linf 4/255``: the threat model as labels show it."""
    return threat_label(norm, eps)


def accuracy(flags: Sequence[bool]) -> float:
    return float(sum(bool(f) for f in flags) / len(flags)) if flags else float("nan")
