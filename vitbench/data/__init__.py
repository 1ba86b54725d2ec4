"""Datasets: specs on the command line, the embedded digits set, local folders/files, ImageNet, CIFAR, the hub."""

from vitbench.data.base import EvalDataset
from vitbench.data.specs import open_dataset, parse_spec

__all__ = ["EvalDataset", "open_dataset", "parse_spec"]
