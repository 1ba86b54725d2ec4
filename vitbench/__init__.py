"""vitbench: a benchmarking and evaluation harness for robust image classifiers.

The Python API (each documented in :mod:`vitbench.api`):

- :func:`load_model` a zoo model; :func:`wrap` any network in memory;
- :func:`evaluate` a model on a dataset with suites or a preset, returning a :class:`Report`.
"""

__version__ = "0.1.0"

from vitbench.api import Report, SuiteReport, evaluate, load_model, wrap  # noqa: E402

__all__ = ["Report", "SuiteReport", "__version__", "evaluate", "load_model", "wrap"]
