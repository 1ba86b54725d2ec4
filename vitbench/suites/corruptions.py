"""Common corruptions (ImageNet-C protocol): from the released files, or generated on the fly for any dataset.

released  ImageNet-C (``root`` = ROOT/<corruption>/<severity>/<wnid>/*.JPEG; the clean set must be the ImageNet
          validation images, looked up by id) or CIFAR-10-C / CIFAR-100-C (``root`` = ROOT/<corruption>.npy; the
          clean set must be the CIFAR test set, looked up by index). ImageNet-C images get the authors'
          preprocessing by default (center crop 224, no resize; ``preprocessing: model`` applies the model's own),
          recorded in the config.
generated the 19 corruptions of ``vitbench.data.corruptions`` applied in memory to the chunk at the model's input
          resolution, deterministic given the chunk seed, then (``release_save: auto``, the default) the save step
          the released set of that resolution went through: 224 and 64 px truncated to 8 bits and written as JPEG
          quality 85 (ImageNet-C, Tiny-ImageNet-C), 32 px truncated to 8 bits (CIFAR-10-C / -100-C), other sizes
          none; ``none``, ``uint8`` or ``jpeg85`` choose it, and the choice is part of the evaluation key. Labelled
          "(generated)" everywhere: not the released files.

Metrics (Hendrycks and Dietterich 2019), with E(c, s) the top-1 error at corruption c and severity s:
  CE_c = sum_s E(c, s) / sum_s E_AlexNet(c, s); mCE = mean of CE_c over the 15 benchmark corruptions;
  relative CE_c = sum_s (E(c, s) - E_clean) / sum_s (E_AlexNet(c, s) - E_AlexNet_clean); relative mCE = mean;
  accuracy = mean over the benchmark corruptions and severities of 1 - E(c, s); "w/o noise" = the same over the 12
  benchmark corruptions other than the three noises; the extra (validation) corruptions, when asked for, get their
  own mean ("accuracy_extra") and never enter these. mCE and relative mCE use the AlexNet errors of
  ``data/files/imagenet_c_alexnet.yaml`` and are only reported for the released ImageNet-C with all 15
  corruptions at all 5 severities.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitbench import _config
from vitbench.errors import ConfigError
from vitbench.metrics import Column, Metric, column, proportion
from vitbench.paths import package_file
from vitbench.suites import register
from vitbench.suites.base import Suite, SuiteOutput
from vitbench.suites.clean import predict

SEVERITIES = (1, 2, 3, 4, 5)
SOURCES = ("generated", "released")
KINDS = {"generated": "C (generated)", "imagenet-c": "IN-C", "cifar-c": "CIFAR-C"}


def _names():
    from vitbench.data import corruptions
    return corruptions


@functools.lru_cache(maxsize=1)
def alexnet_errors() -> tuple[float, dict[str, tuple[float, ...]]]:
    """(clean error, {corruption: errors at severities 1..5}) of AlexNet on the released ImageNet-C."""
    path = package_file("data", "files", "imagenet_c_alexnet.yaml")
    doc = _config.load_yaml(path.read_text(), str(path))
    return float(doc["clean"]), {k: tuple(float(e) for e in v) for k, v in doc["errors"].items()}


@dataclass(frozen=True)
class CorruptionsConfig:
    source: str = "generated"
    root: str | None = None
    kind: str = "generated"
    corruptions: tuple[str, ...] = ()
    extra: bool = False
    severities: tuple[int, ...] = SEVERITIES
    preprocessing: str = "authors"
    release_save: str = "auto"      # generated only: auto (by resolution), none, uint8 or jpeg85
    n_examples: int | None = None   # cap on examples for this suite (e.g. a cheaper demo)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.source == "released" and not self.root:
            raise ValueError("source released needs root: the ImageNet-C or CIFAR-C folder")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.preprocessing not in ("authors", "model"):
            raise ValueError("preprocessing must be authors (center crop 224) or model")
        mod = _names()
        saves = ("auto",) + tuple(mod.RELEASE_SAVES)
        if self.release_save not in saves:
            raise ValueError(f"release_save {self.release_save!r} is not one of {', '.join(saves)}")
        if self.source == "released":
            if self.release_save not in ("auto", "none"):
                raise ValueError("release_save applies to generated corruptions; the released files are saved already")
            object.__setattr__(self, "release_save", "none")
        names = tuple(self.corruptions) or tuple(mod.BENCHMARK_CORRUPTIONS)
        if self.extra:
            names += tuple(c for c in mod.EXTRA_CORRUPTIONS if c not in names)
        bad = [c for c in names if c not in mod.ALL_CORRUPTIONS]
        if bad:
            raise ValueError(f"unknown corruption {bad[0]!r} (known: {', '.join(mod.ALL_CORRUPTIONS)})")
        object.__setattr__(self, "corruptions", names)
        object.__setattr__(self, "extra", False)
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise ValueError("severities must be a non-empty subset of 1..5")
        object.__setattr__(self, "severities", tuple(sorted(set(self.severities))))

    @property
    def label(self) -> str:
        return KINDS[self.kind]


def _kind_of_root(root: str) -> str:
    from vitbench.data.released import CifarC, open_released_c
    return "cifar-c" if isinstance(open_released_c(root), CifarC) else "imagenet-c"


@register
class CorruptionsSuite(Suite):
    name = "corruptions"
    version = 2     # 2: glass blur copies as the reference does, frost uses its photographs, release_save
    Config = CorruptionsConfig
    summary = "common corruptions: released ImageNet-C / CIFAR-C or 19 generated corruptions x 5 severities; mCE"
    smoke_config = {"corruptions": ("gaussian_noise", "glass_blur", "frost"), "severities": (1, 5)}
    plots = ("accuracy_vs_severity",)
    aux = True

    def configure(self, raw: dict, dataset) -> dict:
        raw = dict(raw)
        if raw.get("source", "generated") == "released" and raw.get("root"):
            raw["kind"] = _kind_of_root(str(raw["root"]))
            expected = {"imagenet-c": ("imagenet",), "cifar-c": ("cifar10", "cifar100")}[raw["kind"]]
            if dataset.label_space.name not in expected:
                raise ConfigError(f"suite corruptions: {raw['kind']} at {raw['root']} needs the clean "
                                  f"{' or '.join(expected)} set as --data, got {dataset.spec!r}")
        return raw

    def key_facts(self, config: CorruptionsConfig, entry) -> dict:
        """The released files by content: CIFAR-C's arrays, and every ImageNet-C image of the corruptions and
        severities evaluated (sha256 through the stat cache: hashed once, then only stat'ed)."""
        if config.source != "released":
            return {}
        from pathlib import Path

        from vitbench.hashing import file_sha256
        root = Path(config.root).expanduser()
        if config.kind == "cifar-c":
            return {"files": {c: file_sha256(root / f"{c}.npy") for c in config.corruptions
                              if (root / f"{c}.npy").is_file()}}
        return {"files": _released_fingerprint(str(root), tuple(config.corruptions), tuple(config.severities))}

    def run(self, model, chunk, config: CorruptionsConfig, ctx) -> SuiteOutput:
        bs = ctx.batch_size
        clean = (predict(model, chunk.x, bs).argmax(1) == chunk.y).tolist()
        results = {c: [] for c in config.corruptions}
        released = _open(config) if config.source == "released" else None
        buffer = torch.empty_like(chunk.x) if released is None else None    # one output for every (c, s)
        for c in config.corruptions:
            if released is not None:
                released.check(c)
            for s in config.severities:
                x = self._images(released, chunk, config, ctx, c, s, buffer)
                results[c].append((predict(model, x, bs).argmax(1) == chunk.y).tolist())
        records = [{"clean": clean[i], "c": {c: [results[c][k][i] for k in range(len(config.severities))]
                                             for c in config.corruptions}} for i in range(len(clean))]
        return SuiteOutput(records)

    def _images(self, released, chunk, config, ctx, corruption: str, severity: int,
                buffer: torch.Tensor | None = None) -> torch.Tensor:
        if released is None:
            gen = chunk.generator("corruption", corruption, severity)
            x = _names().corrupt(chunk.x, corruption, severity, generator=gen, out=buffer)
            return _names().save_like_release(x, release_save(config, x), out=x)
        prep = ctx.entry.preprocessing
        if config.kind == "cifar-c":
            x = released.load(corruption, severity, chunk.start, chunk.stop, prep)
        else:
            x = released.load(corruption, severity, chunk.ids, prep, authors_crop=config.preprocessing == "authors")
        return x.to(chunk.x.device)

    def aggregate(self, records, config: CorruptionsConfig) -> dict[str, Metric]:
        return corruption_metrics(records, config)

    def resampler(self, records, config: CorruptionsConfig):
        return corruption_resampler(records, config)

    def columns(self, config: CorruptionsConfig, metrics) -> list[Column]:
        label, base = config.label, f"corruptions/{config.kind}"
        shown = [("accuracy", "acc", 60), ("accuracy_no_noise", "acc w/o noise", 61),
                 ("accuracy_extra", "acc extra", 62)]
        cols = [column(metrics, name, id=f"{base}/{name}", label=f"{label} {text}", rank=rank, kind="corruption")
                for name, text, rank in shown if name in metrics]
        if "mce" in metrics:
            cols += [column(metrics, "mce", id=f"{base}/mce", label="mCE", rank=58, kind="corruption"),
                     column(metrics, "relative_mce", id=f"{base}/relative_mce", label="rel. mCE", rank=59,
                            kind="corruption")]
        return cols

    def cost(self, config: CorruptionsConfig) -> float:
        return float(len(config.corruptions) * len(config.severities) + 1)


@functools.lru_cache(maxsize=8)
def _released_fingerprint(root: str, corruptions: tuple[str, ...], severities: tuple[int, ...]) -> str:
    """A fingerprint of the names and contents of ROOT/<corruption>/<severity>/**/<image> (memoised per process:
    the engine asks for the key more than once per run)."""
    from vitbench.data.base import fingerprint_of
    from vitbench.hashing import files_sha256
    base = Path(root)
    files = sorted(p for c in corruptions for s in severities for p in (base / c / str(s)).rglob("*") if p.is_file())
    return fingerprint_of([str(p.relative_to(base)) for p in files], files_sha256(files))


def release_save(config: CorruptionsConfig, x: torch.Tensor) -> str:
    """The save step generated images get: the config's, or for ``auto`` that of the set released at x's size."""
    if config.release_save != "auto":
        return config.release_save
    return _names().release_save_for(*x.shape[-2:])


def _open(config: CorruptionsConfig):
    return _open_root(config.root)


@functools.lru_cache(maxsize=4)
def _open_root(root: str):
    """One opened release per folder and process: chunks reuse its file listing and memory-mapped arrays."""
    from vitbench.data.released import open_released_c
    return open_released_c(root)


def _outcomes(records: Sequence[dict], config: CorruptionsConfig) -> tuple[np.ndarray, np.ndarray]:
    """(clean correctness (n,), correctness under each corruption and severity (n, C, S)) as bool arrays."""
    clean = np.array([bool(r["clean"]) for r in records], dtype=bool)
    correct = np.array([[r["c"][c] for c in config.corruptions] for r in records], dtype=bool)
    return clean, correct.reshape(len(records), len(config.corruptions), len(config.severities))


def _values(clean: np.ndarray, correct: np.ndarray, config: CorruptionsConfig) -> dict[str, float]:
    """Every corruption metric's value from the outcome arrays (shared by aggregation and the bootstrap)."""
    names = list(config.corruptions)
    err = 1.0 - correct.mean(axis=0)                                     # (C, S)
    out = {"clean_accuracy": float(clean.mean())}
    for ci, c in enumerate(names):
        for si, s in enumerate(config.severities):
            out[f"error/{c}/{s}"] = float(err[ci, si])
    benchmark = set(_names().BENCHMARK_CORRUPTIONS)
    main = [c for c in names if c in benchmark] or names
    extra = [c for c in names if c not in main]
    quiet = [c for c in main if c not in set(_names().NOISE_CORRUPTIONS)]

    def mean_accuracy(group: list[str]) -> float:
        return float(1.0 - err[[names.index(c) for c in group]].mean())
    out["accuracy"] = mean_accuracy(main)                                # the benchmark corruptions only
    if quiet and len(quiet) < len(main):
        out["accuracy_no_noise"] = mean_accuracy(quiet)
    if extra:
        out["accuracy_extra"] = mean_accuracy(extra)
    if config.kind == "imagenet-c" and benchmark <= set(names) and config.severities == SEVERITIES:
        ordered = sorted(benchmark, key=list(_names().BENCHMARK_CORRUPTIONS).index)
        out.update(_mce({c: err[names.index(c)].tolist() for c in ordered}, 1.0 - out["clean_accuracy"], ordered))
    return out


def corruption_metrics(records: Sequence[dict], config: CorruptionsConfig) -> dict[str, Metric]:
    """Errors per corruption and severity, mean accuracy, accuracy w/o noise, and (ImageNet-C) mCE / rel. mCE."""
    if not records:
        return {}
    clean, correct = _outcomes(records, config)
    out: dict[str, Metric] = {}
    for name, value in _values(clean, correct, config).items():
        if name == "clean_accuracy":
            out[name] = proportion(clean.tolist())
        elif name.startswith("error/"):
            _, c, s = name.split("/")
            flags = ~correct[:, config.corruptions.index(c), config.severities.index(int(s))]
            out[name] = proportion(flags.tolist(), higher_is_better=False)
        else:  # means over corruptions and ratios to AlexNet: intervals from the bootstrap
            out[name] = Metric(value, higher_is_better=name == "accuracy" or name.startswith("accuracy_"),
                               n=len(records))
    return out


def corruption_resampler(records: Sequence[dict], config: CorruptionsConfig):
    """The bootstrap statistic on the outcome arrays (one fancy index per resample, no per-record Python)."""
    clean, correct = _outcomes(records, config)
    return lambda idx: _values(clean[idx], correct[idx], config)


def _mce(err: dict[str, list[float]], clean_err: float, names: list[str]) -> dict[str, float]:
    alex_clean, alex = alexnet_errors()
    ce = {c: sum(err[c]) / sum(alex[c]) for c in names}
    rel = {c: sum(e - clean_err for e in err[c]) / sum(a - alex_clean for a in alex[c]) for c in names}
    out = {f"ce/{c}": v for c, v in ce.items()}
    out["mce"] = sum(ce.values()) / len(ce)
    out["relative_mce"] = sum(rel.values()) / len(rel)
    return out


