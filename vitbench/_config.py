"""Building frozen config dataclasses from YAML/CLI mappings, with errors that name the key and the fix."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import yaml

from vitbench.errors import ConfigError, did_you_mean

T = TypeVar("T")


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML safely; a syntax error, a duplicate key, or aliases that would expand the document by more than
    ``MAX_YAML_ALIAS_NODES`` nodes (a "billion laughs" file) become one ConfigError line naming the place."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_alias_expansion(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}:{line} malformed YAML: {problem}; fix the file and retry") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply to read; fix the file and retry") from None
    finally:
        loader.dispose()


def _check_alias_expansion(root: yaml.Node, where: str) -> None:
    """Count the nodes the document has once every alias is expanded (shared nodes counted once per use),
    without expanding anything; refuse recursive aliases and expansion beyond the bound."""
    from vitbench.limits import MAX_YAML_ALIAS_NODES
    sizes: dict[int, int] = {}
    unique: set[int] = set()

    def size(node: yaml.Node, path: frozenset) -> int:
        if id(node) in path:
            raise ConfigError(f"{where}: line {node.start_mark.line + 1}: a YAML alias refers to itself; fix the file")
        if id(node) not in sizes:
            unique.add(id(node))
            children = node.value if isinstance(node, yaml.SequenceNode) else (
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
            inner = path | {id(node)}
            sizes[id(node)] = 1 + sum(size(child, inner) for child in children)
        return sizes[id(node)]

    total = size(root, frozenset())
    if total - len(unique) > MAX_YAML_ALIAS_NODES:
        raise ConfigError(f"{where}: YAML aliases would expand the document to {total:,} nodes "
                          f"({total - len(unique):,} added by aliases, at most {MAX_YAML_ALIAS_NODES:,} allowed): "
                          "write the values out instead of nesting aliases")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Coerce a YAML value to the annotated type, or raise a ConfigError naming the place."""
    if value is None:
        inner, optional = _unwrap_optional(tp)
        if optional or tp is Any:
            return None
        raise ConfigError(f"{where}: a value is required")
    tp, _ = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # a number or a fraction such as 4/255
            from vitbench.threat import parse_eps
            try:
                return parse_eps(value)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected a number (or a fraction such as 4/255), got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def build(cls: type[T], mapping: Any, where: str) -> T:
    """Build the frozen dataclass ``cls`` from a mapping, refusing unknown keys.

    Args:
        cls: a dataclass type whose field annotations drive coercion.
        mapping: the parsed YAML/CLI mapping.
        where: where the mapping came from, for error messages (e.g. ``model_zoo.yaml: models.x``).

    Raises:
        ConfigError: on an unknown key, a missing required key or a value of the wrong type.
    """
    if isinstance(mapping, cls):
        return mapping
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in mapping:
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(str(key), fields)}")
    kwargs = {}
    for name, field in fields.items():
        if name in mapping:
            kwargs[name] = _coerce(mapping[name], hints[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, ConfigError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def to_plain(obj: Any) -> Any:
    """Turn dataclasses/tuples into plain JSON-able dicts and lists (for hashing and storage)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing configs."""
    return json.dumps(to_plain(obj), sort_keys=True, separators=(",", ":"), allow_nan=True)


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
