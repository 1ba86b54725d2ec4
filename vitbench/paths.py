"""Where vitbench keeps its files: one home folder (VITBENCH_HOME, default ~/.cache/vitbench)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def home() -> Path:
    """The vitbench home folder (created on first use).

    Raises:
        ConfigError: when it is a file, or cannot be created or written (one line naming VITBENCH_HOME).
    """
    root = Path(os.environ.get("VITBENCH_HOME") or Path.home() / ".cache" / "vitbench").expanduser()
    return ensure_folder(root, "VITBENCH_HOME" if os.environ.get("VITBENCH_HOME") else "the vitbench home folder",
                         fix="set VITBENCH_HOME to a folder you can write")


def ensure_folder(path: Path, what: str, *, fix: str) -> Path:
    """Create ``path`` (and its parents) unless it exists as a folder; any failure is one ConfigError line."""
    from vitbench.errors import ConfigError
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder: {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be created ({exc.strerror or exc}): {fix}") from None
    return path


def weights_cache() -> Path:
    """Folder for downloaded checkpoints."""
    return ensure_folder(home() / "weights", "the weights cache", fix="make VITBENCH_HOME writable or move it")


def package_file(*parts: str) -> Path:
    """A file shipped inside the package (zoo, presets, references, data)."""
    return PACKAGE_DIR.joinpath(*parts)
