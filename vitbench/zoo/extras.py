"""Optional integrations, imported only when used: RobustBench's model loader (extra ``robustbench``)."""

from __future__ import annotations

from torch import nn

from vitbench.errors import VitbenchError


class MissingExtraError(VitbenchError):
    """An optional dependency is not installed."""


def require_extra(module: str, extra: str):
    """Import an optional module or raise one line naming the extra to install."""
    import importlib
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything from ImportError to AttributeError
        raise MissingExtraError(f"this needs the optional extra {extra!r} ({module} failed to import: "
                                f"{type(exc).__name__}); install it with: pip install 'vitbench[{extra}]'") from None


def load_robustbench(entry) -> nn.Module:
    """Load ``robustbench:NAME`` (dataset from the entry, threat from its threat model) through robustbench."""
    utils = require_extra("robustbench.utils", "robustbench")
    name = entry.weights.source.split(":", 1)[1]
    threat = {"linf": "Linf", "l2": "L2"}[entry.threat_model.norm] if entry.threat_model else "Linf"
    return utils.load_model(model_name=name, dataset=entry.dataset, threat_model=threat)
