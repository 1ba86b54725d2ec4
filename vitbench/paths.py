"""Where vitbench keeps its files: one home folder (VITBENCH_HOME, default ~/.cache/vitbench)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def home() -> Path:
    """The vitbench home folder (created on first use)."""
    root = Path(os.environ.get("VITBENCH_HOME") or Path.home() / ".cache" / "vitbench").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def store_path() -> Path:
    """The SQLite results store (VITBENCH_STORE overrides the default under the home folder)."""
    override = os.environ.get("VITBENCH_STORE")
    return Path(override).expanduser() if override else home() / "results.sqlite"


def weights_cache() -> Path:
    """Folder for downloaded checkpoints."""
    path = home() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_file(*parts: str) -> Path:
    """A file shipped inside the package (zoo, presets, references, data)."""
    return PACKAGE_DIR.joinpath(*parts)
