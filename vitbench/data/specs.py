"""Dataset specs: one grammar for every image source on the command line.

    KIND[:LOCATION][?KEY=VALUE[&KEY=VALUE...]]

    digits[?split=test|train|all]                       the embedded UCI digits (served 32x32 RGB)
    folder:PATH                                         PATH/<class>/<image>, classes sorted by name
    imagenet-val:PATH[?subset=robustbench-5000|FILE]    PATH/<wnid>/<image>; labels = index of the sorted wnid
    cifar10:PATH[?split=test|train]                     the python or binary release under PATH
    cifar100:PATH[?split=test|train]
    parquet:FILE[?image=COL&label=COL&split=S]          a local parquet file (datasets image column)
    arrow:PATH[?image=COL&label=COL&split=S]            an arrow file or a datasets save_to_disk folder
    hf:ORG/NAME[?split=test&config=C&image=COL&label=COL]  a Hugging Face hub dataset (needs network)

Each kind registers an opener; ``vitbench list datasets`` prints them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from vitbench.data.base import EvalDataset
from vitbench.errors import ConfigError, DataError
from vitbench.registry import Registry

Opener = Callable[["DatasetSpec"], EvalDataset]


@dataclass(frozen=True)
class Kind:
    name: str
    opener: Opener
    summary: str
    needs_location: bool
    options: tuple[str, ...] = ()


#: every dataset kind, registered by the modules of vitbench.data that define one
KINDS: Registry[Kind] = Registry("dataset kind", "vitbench.data")


def register_kind(name: str, summary: str, *, needs_location: bool = True,
                  options: tuple[str, ...] = ()) -> Callable[[Opener], Opener]:
    def deco(fn: Opener) -> Opener:
        KINDS.add(name, Kind(name, fn, summary, needs_location, options), where=fn.__module__)
        return fn
    return deco


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec."""

    kind: str
    location: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)


def parse_spec(text: str) -> DatasetSpec:
    """Parse ``KIND[:LOCATION][?K=V&...]``.

    Raises:
        ConfigError: unknown kind (with suggestions), a missing location or an unknown option.
    """
    raw = text.strip()
    body, _, query = raw.partition("?")
    kind, sep, location = body.partition(":")
    kind = kind.strip().lower()
    spec_kind = KINDS.get(kind)
    if spec_kind.needs_location and not location:
        raise ConfigError(f"dataset {text!r}: {kind} needs a location, e.g. {kind}:/path/to/data")
    if not spec_kind.needs_location and location:
        raise ConfigError(f"dataset {text!r}: {kind} takes no location (options go after '?')")
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    for key in options:
        if key not in spec_kind.options:
            allowed = ", ".join(spec_kind.options) or "none"
            raise ConfigError(f"dataset {text!r}: unknown option {key!r} for {kind} (options: {allowed})")
    return DatasetSpec(kind, location or None, options, raw)


def open_dataset(text: str | DatasetSpec) -> EvalDataset:
    """Parse a spec and open the dataset it names (checking that it exists and is laid out as promised)."""
    spec = parse_spec(text) if isinstance(text, str) else text
    try:
        return KINDS.get(spec.kind).opener(spec)
    except (DataError, ConfigError):
        raise
    except FileNotFoundError as exc:
        raise DataError(f"dataset {spec.text!r}: {exc.filename or exc} does not exist") from None
