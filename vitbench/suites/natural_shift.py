"""Natural distribution shifts: ImageNet-A and ImageNet-R (Hendrycks et al. 2021).

Both are 200-class subsets of ImageNet-1k; a 1000-class model is evaluated by taking the argmax over only the
subset's logits (timm's index lists; each benchmark has its own mask, they share 86 classes). Reports top-1
accuracy and expected calibration error on the masked softmax. The data must be an ``imagenet-a:`` or
``imagenet-r:`` spec (the authors resize to 256 and center-crop 224: a model's own preprocessing is used, which is
the same for the usual crop_pct 0.875 at 224).
"""

from __future__ import annotations

from dataclasses import dataclass

from vitbench.errors import ConfigError
from vitbench.metrics import Column, Metric, column
from vitbench.suites import register
from vitbench.suites.base import Suite, SuiteOutput
from vitbench.suites.clean import calibration_resampler, classify_records, clean_metrics, predict

BENCHMARKS = {"imagenet-a": "IN-A", "imagenet-r": "IN-R"}


@dataclass(frozen=True)
class NaturalShiftConfig:
    benchmark: str | None = None
    ece_bins: int = 15

    def __post_init__(self) -> None:
        if self.benchmark not in BENCHMARKS:
            raise ValueError("needs an imagenet-a: or imagenet-r: dataset (--data imagenet-a:/path/to/imagenet-a)")


@register
class NaturalShiftSuite(Suite):
    name = "natural_shift"
    version = 1
    aggregation_only = ("ece_bins",)
    Config = NaturalShiftConfig
    summary = "ImageNet-A / ImageNet-R accuracy and calibration with 200-class logit masks"
    example_data = "imagenet-a"
    aux = True

    def configure(self, raw: dict, dataset) -> dict:
        bench = getattr(dataset, "benchmark", None)
        if bench not in BENCHMARKS:
            raise ConfigError(f"suite natural_shift needs an imagenet-a: or imagenet-r: dataset, got {dataset.spec!r}")
        return dict(raw, benchmark=bench)

    def run(self, model, chunk, config: NaturalShiftConfig, ctx) -> SuiteOutput:
        subset = getattr(ctx.dataset, "class_subset", None)
        if subset is None:
            raise ConfigError("suite natural_shift: the dataset has no 200-class subset; "
                              "use imagenet-a: or imagenet-r:")
        return SuiteOutput(classify_records(predict(model, chunk.x, ctx.batch_size), chunk.y, class_subset=subset))

    def aggregate(self, records, config: NaturalShiftConfig) -> dict[str, Metric]:
        out = clean_metrics(records, config.ece_bins)
        out.pop("top5_accuracy", None)
        return out

    def resampler(self, records, config: NaturalShiftConfig):
        return calibration_resampler(records, config.ece_bins)

    def columns(self, config: NaturalShiftConfig, metrics) -> list[Column]:
        label, base = BENCHMARKS[config.benchmark], f"natural_shift/{config.benchmark}"
        return [column(metrics, "accuracy", id=f"{base}/accuracy", label=label, rank=55 if label == "IN-A" else 56,
                       kind="shift"),
                column(metrics, "ece", id=f"{base}/ece", label=f"{label} ECE", rank=57, percent=False, kind="shift")]
