"""The house rules, checked on the source: suites are pure, argparse stays in cli/, the read side needs no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO, subprocess_env

PACKAGE = REPO / "vitbench"
#: argparse outside cli/ only where a checkpoint's plain-data argparse.Namespace is allowed by torch.load
ARGPARSE_ALLOWED = {"zoo/checkpoint.py"}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _files(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_suites_open_no_store_zoo_loader_cli_or_matplotlib():
    forbidden = ("vitbench.store", "vitbench.zoo.load", "vitbench.cli", "matplotlib", "vitbench.board")
    bad = {str(p.relative_to(PACKAGE)): sorted(m for m in _imports(p) if m.startswith(forbidden))
           for p in _files("suites")}
    assert not {k: v for k, v in bad.items() if v}


def test_argparse_lives_in_cli_only():
    outside = [p for p in _files() if "cli" not in p.relative_to(PACKAGE).parts
               and str(p.relative_to(PACKAGE)) not in ARGPARSE_ALLOWED and "argparse" in _imports(p)]
    assert not outside, [str(p) for p in outside]


def test_nothing_outside_cli_imports_cli():
    users = [str(p.relative_to(PACKAGE)) for p in _files() if "cli" not in p.relative_to(PACKAGE).parts
             and any(m.startswith("vitbench.cli") for m in _imports(p))]
    assert not users


def test_the_read_side_does_not_import_torch(tmp_path):
    """`vitbench leaderboard` and `vitbench zoo list` answer without importing torch (a two-row table took 5 s)."""
    code = ("import sys\nfrom vitbench.cli.main import main\n"
            "main(['zoo', 'list'])\nmain(['leaderboard'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    env = subprocess_env(VITBENCH_HOME=str(tmp_path / "h"))
    bench = subprocess.run([sys.executable, "-m", "vitbench.cli.main", "bench", "digits-vit.light", "--data",
                            "digits", "--suite", "clean", "--n-examples", "10"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert bench.returncode == 0, bench.stderr
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "digits-vit.light" in out.stdout


def test_evaluation_defaults_live_in_one_place():
    """The engine, the API, the CLI and the intervals read their defaults from vitbench.defaults."""
    import argparse
    import inspect

    from vitbench import api, defaults
    from vitbench.cli.bench import add_bench_args
    from vitbench.engine import Options
    from vitbench.intervals import IntervalOptions
    options = Options()
    assert (options.chunk_size, options.batch_size) == (defaults.CHUNK_SIZE, defaults.BATCH_SIZE)
    assert (IntervalOptions().method, IntervalOptions().resamples) == (defaults.INTERVAL, defaults.RESAMPLES)
    parser = argparse.ArgumentParser()
    add_bench_args(parser)
    cli = parser.parse_args(["m", "--data", "digits"])
    assert (cli.chunk_size, cli.batch_size, cli.interval, cli.resamples) == (
        defaults.CHUNK_SIZE, defaults.BATCH_SIZE, defaults.INTERVAL, defaults.RESAMPLES)
    for fn in (api.evaluate, api.evaluate_many, api.setup, api.submit):
        params = inspect.signature(fn).parameters
        assert (params["interval"].default, params["resamples"].default) == (defaults.INTERVAL, defaults.RESAMPLES)
