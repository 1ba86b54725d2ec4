"""Worker processes sharing one job through chunk leases, on both store backends: ``--workers 3`` and three
independent ``vitbench bench`` processes compute each chunk exactly once and end with the one-process numbers; a
worker killed with SIGKILL mid-chunk loses only that chunk; on PostgreSQL, connections dropped mid-chunk lose no
committed chunk and the run goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import SLOW_CHUNK_PRESET, subprocess_env, vitbench_exe
from vitbench.store import Store

N, CHUNK = 60, 10


@pytest.fixture
def preset(tmp_path):
    path = tmp_path / "workers.yaml"
    path.write_text(SLOW_CHUNK_PRESET)
    return path


def _args(zoo, preset, *extra):
    return ["bench", "tiny-vit.test", "--zoo", str(zoo), "--data", "digits", "--preset", str(preset),
            "--n-examples", str(N), "--chunk-size", str(CHUNK), "--json", "--device", "cpu", *extra]


def _metrics(stdout: str) -> dict:
    return json.loads(stdout)[0]["metrics"]


_ALONE: dict[str, dict] = {}


@pytest.fixture
def one_process(cli, tiny_zoo, preset, tmp_path, monkeypatch):
    """The numbers one process computes alone (its own SQLite store; computed once, the tiny model's weights are
    the same in every test)."""
    if "metrics" not in _ALONE:
        monkeypatch.setenv("VITBENCH_STORE", str(tmp_path / "alone.sqlite"))
        res = cli(*_args(tiny_zoo, preset))
        assert res.code == 0, res
        _ALONE["metrics"] = _metrics(res.out)
    return _ALONE["metrics"]


def _env(store_url: str, **extra) -> dict:
    return subprocess_env(VITBENCH_STORE=store_url, OMP_NUM_THREADS="1", VITBENCH_PROGRESS="0", **extra)


def _select(store_url: str, sql: str) -> list[tuple]:
    store = Store(store_url)
    try:
        return store.select(sql.replace("{clock}", store._sql.clock))
    finally:
        store.close()


def _leases(store_url: str) -> list[tuple]:
    """(start, claims, done, committing worker) of every chunk lease."""
    return _select(store_url, "SELECT leases.start, claims, done, chunks.worker FROM leases LEFT JOIN chunks ON "
                              "chunks.eval_key = leases.eval_key AND chunks.start = leases.start AND "
                              "chunks.stop = leases.stop ORDER BY leases.start")


def _runs(store_url: str) -> list[tuple]:
    return _select(store_url, "SELECT suite, cached FROM runs")


def test_three_local_workers_compute_each_chunk_once(store_url, tiny_zoo, preset, one_process, tmp_path):
    res = subprocess.run(vitbench_exe() + _args(tiny_zoo, preset, "--workers", "3"), capture_output=True,
                         text=True, env=_env(store_url), cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _metrics(res.stdout) == one_process
    leases = _leases(store_url)
    assert [(start, claims, done) for start, claims, done, _ in leases] == [(s, 1, 1) for s in range(0, N, CHUNK)]
    assert len({worker for *_, worker in leases}) >= 2  # the work was shared
    assert _runs(store_url) == [("attack_effectiveness", 0)]  # aggregated once, by the last worker


def test_three_independent_benches_share_one_job(store_url, tiny_zoo, preset, one_process, tmp_path):
    procs = [subprocess.Popen(vitbench_exe() + _args(tiny_zoo, preset), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(store_url), cwd=tmp_path)
             for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    leases = _leases(store_url)
    assert [(start, claims, done) for start, claims, done, _ in leases] == [(s, 1, 1) for s in range(0, N, CHUNK)]
    printed = [_metrics(out) for out, _ in outs if out.strip()]
    assert printed and all(m == one_process for m in printed)
    assert sum(1 for _, cached in _runs(store_url) if not cached) == 1  # one computed run row, by the finisher
    quiet = [err for out, err in outs if not out.strip()]
    assert all("were finished by other workers sharing this store" in err for err in quiet)


def _wait_for(condition, what: str, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)
    return found


def _busy_worker_with_a_commit(store_url: str) -> str | None:
    """A worker that has committed a chunk and now holds a live lease on another (so it is mid-chunk)."""
    holders = _select(store_url, "SELECT owner FROM leases WHERE done=0 AND owner<>'' AND expires > {clock}")
    committed = {w for (w,) in _select(store_url, "SELECT worker FROM chunks")}
    return next((owner for (owner,) in holders if owner in committed), None)


def test_a_worker_killed_mid_chunk_loses_only_that_chunk(store_url, tiny_zoo, preset, one_process, tmp_path):
    launcher = subprocess.Popen(vitbench_exe() + _args(tiny_zoo, preset, "--workers", "2"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env(store_url, VITBENCH_LEASE_S="3"),
                                cwd=tmp_path)
    try:
        victim = _wait_for(lambda: _busy_worker_with_a_commit(store_url), "a worker mid-chunk after a commit")
        os.kill(int(victim.split(":")[1]), signal.SIGKILL)
        out, err = launcher.communicate(timeout=600)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, err[-3000:]
    assert "died (exit -9); the other workers take over its chunk" in err
    assert _metrics(out) == one_process
    leases = _leases(store_url)
    assert all(done == 1 for _, _, done, _ in leases) and len(leases) == N // CHUNK
    assert any(worker == victim for *_, worker in leases)  # what the killed worker committed is kept
    retried = [(start, worker) for start, claims, _, worker in leases if claims > 1]
    assert len(retried) <= 1 and sum(claims for _, claims, _, _ in leases) == N // CHUNK + len(retried)
    assert all(worker != victim for _, worker in retried)  # the chunk it was computing was taken over


def test_connections_dropped_mid_chunk_lose_nothing_and_the_run_goes_on(fresh_postgres_url, tiny_zoo, preset,
                                                                          one_process, tmp_path):
    import psycopg
    proc = subprocess.Popen(vitbench_exe() + _args(tiny_zoo, preset), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(fresh_postgres_url), cwd=tmp_path)
    try:
        _wait_for(lambda: len(_select(fresh_postgres_url, "SELECT start FROM chunks")) >= 2, "two committed chunks")
        with psycopg.connect(fresh_postgres_url, autocommit=True) as admin:
            before = set(_select(fresh_postgres_url, "SELECT start FROM chunks"))
            killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                                   "current_database() AND application_name = 'vitbench' AND pid <> "
                                   "pg_backend_pid()").fetchall()
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed and proc.returncode == 0, err[-3000:]
    assert "the connection was lost" in err and "reconnecting" in err
    assert _metrics(out) == one_process
    after = set(_select(fresh_postgres_url, "SELECT start FROM chunks"))
    assert before <= after and len(after) == N // CHUNK
    assert [claims for _, claims, _, _ in _leases(fresh_postgres_url)] == [1] * (N // CHUNK)
