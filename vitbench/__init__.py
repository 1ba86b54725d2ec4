"""vitbench: a benchmarking and evaluation harness for robust image classifiers.

The Python API (each documented in :mod:`vitbench.api`):

- :func:`load_model` a zoo model; :func:`wrap` any network in memory;
- :func:`evaluate` a model on a dataset with suites or a preset, returning a :class:`Report`;
- :func:`compare` two models on the examples both were evaluated on (paired tests);
- :func:`leaderboard` of what is stored, every number with its interval;
- :func:`train` a model with a bundled recipe, returning its zoo entry;
- :func:`site`: a static leaderboard site (HTML) generated from the store.
"""

__version__ = "0.1.0"

from vitbench.api import (  # noqa: E402
    Leaderboard,
    Report,
    SuiteReport,
    compare,
    evaluate,
    evaluate_many,
    export_samples,
    leaderboard,
    load_model,
    site,
    train,
    wrap,
)

__all__ = ["Leaderboard", "Report", "SuiteReport", "__version__", "compare", "evaluate", "evaluate_many",
           "export_samples", "leaderboard", "load_model", "site", "train", "wrap"]
