"""Perturbation stability (ImageNet-P protocol): released sequences, or generated ones for any dataset.

released  the data is an ``imagenet-p:`` or ``cifar-p:`` spec; each example is one sequence. ImageNet-P frames are
          fed as the authors do (``preprocessing: authors``, the default: the released 224 px frames as they are,
          resized only for another input size); ``preprocessing: model`` applies the model's resize and crop
          instead (it decodes the chunk's videos a second time). The choice is part of the evaluation key.
generated the perturbations of ``vitbench.data.perturbations`` applied to each image of any dataset, with the
          reference sequence lengths (ImageNet-P: 31 frames, translate 41; CIFAR-P at 32 px: 31, motion blur 21,
          translate 16; ``n_frames`` caps them), deterministic given the chunk seed; labelled "(generated)".

Per sequence of n frames with predictions f(x_1..x_n) (Hendrycks and Dietterich 2019, and the authors' code):
  flip probability FP = mean over compared pairs of 1[f(x_j) != f(x_prev)], where for the noise perturbations every
  frame is compared with the first frame, and otherwise with the previous frame of the same stride-d subsequence
  (x_i, x_{i+d}, x_{i+2d}, ...; difficulty d, default 1);
  top-5 distance T5D = the mean over the same pairs of d(sigma) = sum_{i=1..5} |(i - 1) - min(sigma(i) - 1, 5)|,
  sigma(i) = the rank in the new frame of the class ranked i in the previous frame (ranks 1-based, ordinal: ties
  broken by class index).
FP_p and T5D_p are means over sequences; mFP / mT5D are means over perturbations. mFR = mean_p FP_p / FP_p(AlexNet)
and mT5D normalised likewise are reported only when ``normalizers`` (AlexNet values, a YAML file or mapping
{perturbation: {fp: .., t5d: ..}}) are supplied; the raw values always are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitbench import _config
from vitbench.errors import ConfigError
from vitbench.metrics import Column, Metric, column
from vitbench.suites import register
from vitbench.suites.base import Suite, SuiteOutput

SOURCES = ("generated", "released")


def _module():
    from vitbench.data import perturbations
    return perturbations


def flip_probability(pred: Sequence[int], *, noise: bool, difficulty: int = 1) -> float:
    """FP of one sequence of predicted labels."""
    return _pair_mean(list(pred), noise, difficulty, lambda a, b: float(a != b))


def top5_distance(logits: torch.Tensor, *, noise: bool, difficulty: int = 1) -> float:
    """T5D of one sequence of logits (T, K)."""
    order = torch.argsort(-logits.float(), dim=1, stable=True)            # (T, K): class at each rank
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, logits.shape[1] + 1).expand_as(order))  # (T, K): rank of each class
    frames = list(range(logits.shape[0]))

    def dist(prev: int, cur: int) -> float:
        sigma = ranks[cur][order[prev][:5]]                                  # new ranks of the previous top 5
        ideal = torch.arange(5)
        return float((ideal - torch.clamp(sigma - 1, max=5)).abs().sum())
    return _pair_mean(frames, noise, difficulty, dist)


def _pair_mean(items: list, noise: bool, difficulty: int, fn) -> float:
    step = 1 if noise else difficulty
    values = []
    for start in range(step):
        seq = items[start::step]
        for j in range(1, len(seq)):
            values.append(fn(seq[0] if noise else seq[j - 1], seq[j]))
    return sum(values) / len(values) if values else float("nan")


@dataclass(frozen=True)
class PerturbationsConfig:
    source: str = "generated"
    perturbations: tuple[str, ...] = ()
    difficulty: int = 1
    n_frames: int | None = None
    normalizers: Any = None
    preprocessing: str = "authors"  # released frames: authors (as they are) or model (its resize and crop)
    n_examples: int | None = None   # cap on examples for this suite (e.g. a cheaper demo)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.preprocessing not in ("authors", "model"):
            raise ValueError(f"preprocessing {self.preprocessing!r} must be authors (the released frames as they "
                             "are) or model (the model's resize and center crop)")
        if self.difficulty < 1:
            raise ValueError("difficulty must be >= 1")
        mod = _module()
        known = tuple(mod.TEST_PERTURBATIONS) + tuple(mod.VALIDATION_PERTURBATIONS)
        if self.source == "generated":
            names = tuple(self.perturbations) or tuple(mod.TEST_PERTURBATIONS)
            bad = [p for p in names if p not in known]
            if bad:
                raise ValueError(f"unknown perturbation {bad[0]!r} (known: {', '.join(known)})")
            object.__setattr__(self, "perturbations", names)
        if isinstance(self.normalizers, str):
            path = Path(self.normalizers).expanduser()
            if not path.is_file():
                raise ValueError(f"normalizers file {path} does not exist")
            object.__setattr__(self, "normalizers", _config.load_yaml(path.read_text(), str(path)))
        if self.normalizers is not None:
            for name, value in dict(self.normalizers).items():
                if not isinstance(value, dict) or not {"fp", "t5d"} <= set(value):
                    raise ValueError(f"normalizers[{name!r}] needs fp and t5d (AlexNet values)")

    @property
    def label(self) -> str:
        return "" if self.source == "released" else " (generated)"


@register
class PerturbationsSuite(Suite):
    name = "perturbations"
    version = 2     # 2: released ImageNet-P frames fed as the authors do by default (preprocessing)
    aggregation_only = ("normalizers",)
    Config = PerturbationsConfig
    summary = "perturbation stability: flip probability and top-5 distance (released ImageNet-P/CIFAR-P or generated)"
    aux = True
    accepts_sequences = True
    plots = ("flip_probabilities",)

    def configure(self, raw: dict, dataset) -> dict:
        raw = dict(raw)
        if getattr(dataset, "is_sequence", False):
            raw["source"] = "released"
            raw["difficulty"] = getattr(dataset, "difficulty", raw.get("difficulty", 1))
        elif raw.get("source") == "released":
            raise ConfigError(f"suite perturbations: source released needs an imagenet-p: or cifar-p: dataset, "
                              f"got {dataset.spec!r}")
        return raw

    def run(self, model, chunk, config: PerturbationsConfig, ctx) -> SuiteOutput:
        noise = set(_module().NOISE_PERTURBATIONS)
        if config.source == "released":
            names = [sid.split("/", 1)[0] for sid in chunk.ids]
            seqs = [(None, released_frames(chunk, config, ctx))]              # (B, T, 3, S, S)
        else:
            names = None
            seqs = ((p, _module().perturbation_sequence(chunk.x, p, chunk.generator("perturbation", p),
                                                        n_frames=_frames(p, chunk.x, config.n_frames)))
                    for p in config.perturbations)  # one at a time: B 100 x 31 frames at 224 px is 18.7 GB
        records = [{"fp": {}, "t5d": {}} for _ in range(len(chunk.y))]
        for key, x in seqs:
            logits = _frame_logits(model, x, ctx.batch_size)                    # (B, T, K)
            for i in range(len(chunk.y)):
                p = names[i] if key is None else key
                records[i]["fp"][p] = flip_probability(logits[i].argmax(1).tolist(), noise=p in noise,
                                                       difficulty=config.difficulty)
                records[i]["t5d"][p] = top5_distance(logits[i], noise=p in noise, difficulty=config.difficulty)
        return SuiteOutput(records)

    def aggregate(self, records, config: PerturbationsConfig) -> dict[str, Metric]:
        table = _Table(records)
        return {name: Metric(v, higher_is_better=False, n=len(records))
                for name, v in table.values(np.ones(len(records)), config).items()}

    def resampler(self, records, config: PerturbationsConfig):
        table = _Table(records)
        return lambda idx: table.values(np.bincount(idx, minlength=len(records)).astype(float), config)

    def columns(self, config: PerturbationsConfig, metrics) -> list[Column]:
        base, label, cols = f"perturbations/{config.source}", config.label, []
        if "mfr" in metrics:
            cols += [column(metrics, "mfr", id=f"{base}/mfr", label=f"mFR{label}", rank=62, kind="perturbation"),
                     column(metrics, "mt5d_normalised", id=f"{base}/mt5d_normalised", label=f"mT5D{label}", rank=63,
                            kind="perturbation")]
        if "mfp" in metrics:
            cols += [column(metrics, "mfp", id=f"{base}/mfp", label=f"FP{label}", rank=64, kind="perturbation"),
                     column(metrics, "mt5d", id=f"{base}/mt5d", label=f"T5D{label}", rank=65, percent=False,
                            kind="perturbation")]
        return cols

    def cost(self, config: PerturbationsConfig) -> float:
        return float(min(config.n_frames or 31, 31) * max(len(config.perturbations), 1))


class _Table:
    """The records' flip probabilities and top-5 distances in long form: one row per (sequence, perturbation), so
    a weighting of the sequences (all ones, or a bootstrap resample's counts) gives every metric at once."""

    def __init__(self, records: Sequence[dict]) -> None:
        self.names = sorted({p for r in records for p in r["fp"]})
        where = {p: i for i, p in enumerate(self.names)}
        rows = [(i, where[p], r["fp"][p], r["t5d"][p]) for i, r in enumerate(records) for p in r["fp"]]
        self.record, self.group = (np.array([row[k] for row in rows], dtype=int) for k in (0, 1))
        self.fp, self.t5d = (np.array([row[k] for row in rows], dtype=float) for k in (2, 3))

    def values(self, weights: np.ndarray, config: PerturbationsConfig) -> dict[str, float]:
        if not len(self.record):
            return {}
        w = weights[self.record]
        count = np.bincount(self.group, weights=w, minlength=len(self.names))
        present = count > 0
        out: dict[str, float] = {}
        per = {}
        for metric, values in (("fp", self.fp), ("t5d", self.t5d)):
            sums = np.bincount(self.group, weights=w * values, minlength=len(self.names))
            per[metric] = {p: float(sums[i] / count[i]) for i, p in enumerate(self.names) if present[i]}
            out.update({f"{metric}/{p}": v for p, v in per[metric].items()})
            if per[metric]:
                out[f"m{metric}"] = sum(per[metric].values()) / len(per[metric])
        norm = config.normalizers
        if norm and per["fp"] and all(p in norm for p in per["fp"]):
            out["mfr"] = sum(v / norm[p]["fp"] for p, v in per["fp"].items()) / len(per["fp"])
            out["mt5d_normalised"] = sum(v / norm[p]["t5d"] for p, v in per["t5d"].items()) / len(per["t5d"])
        return out


def released_frames(chunk, config: PerturbationsConfig, ctx) -> torch.Tensor:
    """The chunk's released sequences under the config's protocol: the engine loads them the authors' way; the
    model's resize and crop means reading them again from the dataset."""
    if config.preprocessing == "authors":
        return chunk.x
    x, _ = ctx.dataset.load(chunk.start, chunk.stop, ctx.entry.preprocessing, protocol="model")
    return x.to(chunk.x.device)


def _frames(name: str, x: torch.Tensor, cap: int | None) -> int | None:
    """The reference length of a generated sequence at this resolution, capped by ``n_frames``."""
    if cap is None:
        return None
    mod = _module()
    return min(cap, mod.sequence_length(name, mod.sequence_table_for(*x.shape[-2:])))


def _frame_logits(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of every frame: (B, T, 3, S, S) -> (B, T, K)."""
    from vitbench.suites.clean import predict
    b, t = x.shape[:2]
    return predict(model, x.flatten(0, 1), batch_size).view(b, t, -1).cpu()
