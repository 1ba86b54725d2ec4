"""Shared fixtures: an isolated VITBENCH_HOME per test, tiny deterministic models, and a CLI runner."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_VIT_ARGS = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}

# pg_server, postgres_url, fresh_postgres_url: a throwaway PostgreSQL server (tests/pg_server.py)
pytest_plugins = ["pg_server"]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own home, store and working directory (no ./model_zoo.yaml is picked up)."""
    home = tmp_path / "vbhome"
    monkeypatch.setenv("VITBENCH_HOME", str(home))
    monkeypatch.delenv("VITBENCH_ZOO", raising=False)
    monkeypatch.delenv("VITBENCH_STORE", raising=False)
    monkeypatch.setenv("VITBENCH_PROGRESS", "0")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    torch.set_num_threads(1)  # tiny models: one thread is faster and does not oversubscribe 2 cores
    return home


#: about half a second per chunk of 10 tiny-vit digits images: long enough that lease workers overlap, short
#: enough for CI (tests of workers, submitit arrays and the Slurm cluster)
SLOW_CHUNK_PRESET = """description: a slow-enough chunk for worker and array tests
suites:
  - suite: attack_effectiveness
    eps: 0.05
    steps: [1, 5]
    oracle_steps: 40
    seeds: 2
"""


def save_tiny_vit(path: Path, *, seed: int = 0, num_classes: int = 10) -> Path:
    """A tiny random-init ViT's weights as safetensors (deterministic given the seed)."""
    import timm
    from safetensors.torch import save_file
    torch.manual_seed(seed)
    net = timm.create_model("vit_tiny_patch16_224", num_classes=num_classes, **TINY_VIT_ARGS)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def tiny_zoo_text(weights: str, name: str = "tiny-vit.test", extra: str = "") -> str:
    return f"""version: 1
models:
  {name}:
    arch: vit_tiny_patch16_224
    arch_args: {{img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2}}
    weights: {{source: {weights}}}
    num_classes: 10
    dataset: digits
    preprocessing: {{input_size: 32, interpolation: bilinear, crop_pct: 1.0,
                     mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}}
    threat_model: {{norm: linf, eps: 0.1}}
{extra}"""


@pytest.fixture
def tiny_zoo(tmp_path) -> Path:
    """A zoo file with one tiny ViT entry ``tiny-vit.test`` whose weights sit next to it."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    save_tiny_vit(folder / "tiny.safetensors")
    path = folder / "model_zoo.yaml"
    path.write_text(tiny_zoo_text("tiny.safetensors"))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A fresh store location on each backend: a SQLite file, then a new empty PostgreSQL database (the test
    server of tests/pg_server.py; skipped where there is none, an error under VITBENCH_REQUIRE_PG=1)."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def on_store(store_url, monkeypatch) -> str:
    """Make ``store_url`` the default store (VITBENCH_STORE) for the test and the processes it starts."""
    monkeypatch.setenv("VITBENCH_STORE", store_url)
    return store_url


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


@pytest.fixture
def cli():
    """Run ``vitbench ARGS`` in-process; returns exit code, stdout and stderr."""
    from vitbench.cli.main import main

    def run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:
                code = int(exc.code or 0)
        return CliResult(code, out.getvalue(), err.getvalue())
    return run


def vitbench_exe() -> list[str]:
    """The installed console script (end-to-end tests run it as a user would)."""
    exe = Path(sys.executable).with_name("vitbench")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "vitbench.cli.main"]


def subprocess_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env


def train_interrupted_then_resumed(config, out, monkeypatch):
    """Train, stop (as Ctrl-C would) right after the first epoch's checkpoint, then resume; returns the result."""
    from vitbench.training import checkpoint as ck
    from vitbench.training.loop import train
    real_save = ck.save

    def save_then_stop(path, **kw):
        real_save(path, **kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(ck, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(config, out=out, device="cpu")
    monkeypatch.setattr(ck, "save", real_save)
    return train(config, out=out, device="cpu", resume=True)


def metric_values(result: dict) -> dict[str, float]:
    """A ``bench --json`` run's metrics by the suite's own names (``robust_accuracy``), as plain values."""
    return {m["metric"]: m["value"] for m in result["metrics"].values()}
