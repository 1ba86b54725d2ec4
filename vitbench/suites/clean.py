"""Clean accuracy: top-1, top-5 (when there are more than 5 classes), mean confidence and calibration error.

ECE: predictions are binned by confidence (max softmax) into ``ece_bins`` equal-width bins over (0, 1];
ECE = sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)| (Guo et al. 2017, 15 bins).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vitbench.metrics import Column, Metric, clean_column, column, mean_metric, proportion
from vitbench.suites import register
from vitbench.suites.base import Chunk, Context, Suite, SuiteOutput


@dataclass(frozen=True)
class CleanConfig:
    ece_bins: int = 15

    def __post_init__(self) -> None:
        if self.ece_bins < 1:
            raise ValueError("ece_bins must be >= 1")


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 15) -> float:
    """ECE with equal-width confidence bins over (0, 1]."""
    n = len(confidence)
    if n == 0:
        return float("nan")
    sums = [[0, 0.0, 0.0] for _ in range(bins)]  # count, confidence sum, correct sum
    for conf, ok in zip(confidence, correct, strict=True):
        b = min(bins - 1, max(0, math.ceil(conf * bins) - 1))
        sums[b][0] += 1
        sums[b][1] += conf
        sums[b][2] += float(ok)
    return sum(abs(c_sum - k_sum) / n for count, c_sum, k_sum in sums if count)


def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of x in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def classify_records(logits: torch.Tensor, y: torch.Tensor, class_subset: Sequence[int] | None = None) -> list[dict]:
    """Per-sample prediction records (optionally restricted to a subset of the logits, e.g. ImageNet-A's 200)."""
    if class_subset is not None:
        index = torch.as_tensor(class_subset, device=logits.device)
        logits = logits[:, index]
        remap = {int(c): i for i, c in enumerate(class_subset)}
        y = torch.as_tensor([remap.get(int(t), -1) for t in y], device=logits.device)
    probs = logits.float().softmax(1)
    conf, pred = probs.max(1)
    k = min(5, logits.shape[1])
    top5 = (logits.topk(k, dim=1).indices == y[:, None]).any(1)
    safe_y = y.clamp_min(0)
    p_true = probs.gather(1, safe_y[:, None]).squeeze(1)
    has_top5 = logits.shape[1] > 5
    return [{"pred": int(p), "correct": bool(p == t), "top5": bool(t5) if has_top5 else None,
             "confidence": float(c), "p_true": float(pt)}
            for p, t, t5, c, pt in zip(pred.tolist(), y.tolist(), top5.tolist(), conf.tolist(), p_true.tolist(),
                                       strict=True)]


def clean_metrics(records: Sequence[dict], bins: int) -> dict[str, Metric]:
    correct = [r["correct"] for r in records]
    conf = [r["confidence"] for r in records]
    out = {"accuracy": proportion(correct),
           "mean_confidence": mean_metric(conf),
           "ece": Metric(expected_calibration_error(conf, correct, bins), higher_is_better=False, n=len(records))}
    if records and records[0].get("top5") is not None:
        out["top5_accuracy"] = proportion([r["top5"] for r in records])
    return out


def calibration_resampler(records: Sequence[dict], bins: int):
    """Vectorised bootstrap statistic of mean confidence and ECE (the proportions need none)."""
    conf = np.array([r["confidence"] for r in records], dtype=float)
    correct = np.array([bool(r["correct"]) for r in records], dtype=float)
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)

    def statistic(idx: np.ndarray) -> dict[str, float]:
        c, k, b = conf[idx], correct[idx], which[idx]
        count = np.bincount(b, minlength=bins)
        gap = np.abs(np.bincount(b, weights=c, minlength=bins) - np.bincount(b, weights=k, minlength=bins))
        return {"mean_confidence": float(c.mean()), "ece": float(gap.sum() / len(idx)) if count.sum() else np.nan}
    return statistic


@register
class CleanSuite(Suite):
    name = "clean"
    version = 1
    aggregation_only = ("ece_bins",)
    Config = CleanConfig
    summary = "clean top-1/top-5 accuracy, mean confidence, expected calibration error"

    def run(self, model, chunk: Chunk, config: CleanConfig, ctx: Context) -> SuiteOutput:
        return SuiteOutput(classify_records(predict(model, chunk.x, ctx.batch_size), chunk.y))

    def aggregate(self, records, config: CleanConfig) -> dict[str, Metric]:
        return clean_metrics(records, config.ece_bins)

    def resampler(self, records, config: CleanConfig):
        return calibration_resampler(records, config.ece_bins)

    def columns(self, config, metrics) -> list[Column]:
        cols = [clean_column(metrics, "accuracy")]
        if "top5_accuracy" in metrics:
            cols.append(column(metrics, "top5_accuracy", id="clean/top5_accuracy", label="Clean top-5", rank=11,
                               kind="clean"))
        cols.append(column(metrics, "ece", id="clean/ece", label="ECE", rank=12, percent=False, kind="clean"))
        return cols
