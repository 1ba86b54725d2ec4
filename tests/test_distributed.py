"""Processes: torchrun with 2 CPU ranks (gloo) stores exactly the one-process result through rank 0 alone; kill -9
then resume."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import subprocess_env, vitbench_exe

PRESET = """description: a slow-enough sweep for process tests
suites:
  - suite: pgd_sweep
    eps: [0.02, 0.05]
    steps: [20]
"""

# Every sample is attacked (no skip for clean-misclassified ones), about 1 s per chunk of 10 here: the poll below
# sees the second chunk long before the eighth.
KILL_PRESET = """description: a slow chunk for the kill test
suites:
  - suite: attack_effectiveness
    eps: 0.05
    steps: [1, 5]
    oracle_steps: 100
    seeds: 2
"""


def _bench_args(zoo, preset, n=40):
    return ["bench", "tiny-vit.test", "--zoo", str(zoo), "--data", "digits", "--preset", str(preset),
            "--n-examples", str(n), "--chunk-size", "10", "--json", "--device", "cpu"]


def _metrics(stdout: str) -> dict:
    return json.loads(stdout)[0]["metrics"]


@pytest.fixture
def preset(tmp_path):
    path = tmp_path / "slow.yaml"
    path.write_text(PRESET)
    return path


def test_torchrun_two_ranks_equal_one_process_and_only_rank_0_writes(tiny_zoo, preset, tmp_path):
    """Each rank has its own VITBENCH_HOME (as on nodes without a shared disk): rank 1 sends its chunks to rank 0
    over gloo, and its home gets no store (only the per-machine cache of file hashes)."""
    one = subprocess.run(vitbench_exe() + _bench_args(tiny_zoo, preset), capture_output=True, text=True,
                         env=subprocess_env(VITBENCH_STORE=str(tmp_path / "one.sqlite"), OMP_NUM_THREADS="1"),
                         cwd=tmp_path, timeout=300)
    assert one.returncode == 0, one.stderr
    per_rank_home = f'export VITBENCH_HOME={tmp_path}/home$RANK; exec "$@"'
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "--no-python", "sh", "-c", per_rank_home, "sh"] + vitbench_exe() +
                         _bench_args(tiny_zoo, preset), capture_output=True, text=True,
                         env=subprocess_env(OMP_NUM_THREADS="1"), cwd=tmp_path, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert _metrics(two.stdout) == _metrics(one.stdout)
    assert sorted(p.name for p in (tmp_path / "home1").iterdir()) == ["hashes.sqlite"]
    with sqlite3.connect(tmp_path / "home0" / "results.sqlite") as db:
        rows = db.execute("SELECT chunk_index, seed, worker FROM chunks ORDER BY chunk_index").fetchall()
    with sqlite3.connect(tmp_path / "one.sqlite") as db:
        alone = db.execute("SELECT chunk_index, seed FROM chunks ORDER BY chunk_index").fetchall()
    assert [r[:2] for r in rows] == alone
    assert [r[2].rsplit("/", 1)[1] for r in rows] == ["rank0", "rank1", "rank0", "rank1"]


def _chunks(path) -> int:
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_then_resume_gives_uninterrupted_numbers(tiny_zoo, tmp_path):
    preset = tmp_path / "kill.yaml"
    preset.write_text(KILL_PRESET)
    store = tmp_path / "killed.sqlite"
    env = subprocess_env(VITBENCH_STORE=str(store), OMP_NUM_THREADS="1")
    args = vitbench_exe() + _bench_args(tiny_zoo, preset, n=80)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    deadline = time.time() + 240
    while _chunks(store) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _chunks(store)
    assert 2 <= done < 8, f"{done} chunks stored when killed"
    resumed = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _chunks(store) == 8
    fresh = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                           env=subprocess_env(VITBENCH_STORE=str(tmp_path / "fresh.sqlite"), OMP_NUM_THREADS="1"))
    assert _metrics(resumed.stdout) == _metrics(fresh.stdout)
