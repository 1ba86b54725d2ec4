"""vitbench: a benchmarking and evaluation harness for robust image classifiers."""

__version__ = "0.1.0"
