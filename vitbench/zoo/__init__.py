"""The model zoo: entries (schema), weight sources, safe loading and the [0, 1]-in model wrapper."""

from vitbench.zoo.schema import ZooEntry, load_zoo

__all__ = ["ZooEntry", "load_zoo"]
