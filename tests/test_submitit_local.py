"""submitit's local executor, the code path Slurm workers take, with local processes: a job array, and a job
interrupted on timeout or preemption that checkpoints, requeues and continues from its store; then vitbench's own
lease workers on it (``vitbench bench --slurm --slurm-cluster local``), on both store backends.

How submitit's local executor stands in for Slurm (read from submitit's local/local.py and its own tests):
- A controller process runs each job; ``timeout_min`` bounds the job and ``signal_delay_s`` before the end the
  controller sends the task SIGUSR2, as Slurm does with ``--signal``. The task's handler calls the function's
  ``checkpoint()``, pickles the returned DelayedSubmission and exits with a "requeue" code; the controller then
  restarts the task, under the same job id, as ``scontrol requeue`` would.
- A job whose walltime is past min(80% of timeout, timeout - 10 min) counts as timed out (so every job shorter
  than 50 minutes does) and uses up one of ``max_num_timeout`` requeues; otherwise it counts as preempted and
  requeues for free.
- ``LocalJob._interrupt()`` sends SIGUSR2 to the controller, which has no handler for it: the controller dies and
  the task is orphaned. Preemption is simulated here by signalling the task process itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SLOW_CHUNK_PRESET

submitit = pytest.importorskip("submitit")
from submitit.helpers import Checkpointable  # noqa: E402

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def importable_test_module(monkeypatch):
    """Jobs unpickle their function by module name, in a fresh interpreter: let it import this file."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_map_array_runs_two_local_jobs(tmp_path):
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=1)
    jobs = executor.map_array(square_with_pid, [3, 4])
    assert len(jobs) == 2
    results = [job.result() for job in jobs]
    assert [value for value, _ in results] == [9, 16]
    assert results[0][1] != results[1][1]  # one process per array element
    assert all(job.state == "FINISHED" for job in jobs)


class ChunkWorker(Checkpointable):
    """Computes chunks 0..n-1 into a file standing in for the store, resuming after the chunks already there.

    The first attempt hangs on chunk ``stuck_at`` (a chunk too long for the job's time limit); the requeued
    attempt finds the earlier chunks in the store and computes only the rest.
    """

    def __call__(self, store: str, n: int, stuck_at: int) -> list[int]:
        path = Path(store)
        attempt = len(list(path.parent.glob("attempt-*"))) + 1
        (path.parent / f"attempt-{attempt}").write_text(str(os.getpid()))
        done = [int(line.split()[0]) for line in path.read_text().splitlines()] if path.exists() else []
        for chunk in range(len(done), n):
            if attempt == 1 and chunk == stuck_at:
                time.sleep(120)  # interrupted by the job's signal long before this ends
            with path.open("a") as f:
                f.write(f"{chunk} {attempt}\n")
        return [int(line.split()[1]) for line in path.read_text().splitlines()]

    def checkpoint(self, store: str, n: int, stuck_at: int):
        (Path(store).parent / "checkpointed").touch()
        return super().checkpoint(store, n, stuck_at)  # resubmit the same call; progress lives in the store


def _wait_for(path: Path, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_timeout_checkpoints_requeues_and_resumes_from_the_store(tmp_path):
    store = tmp_path / "store.txt"
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs", max_num_timeout=1)
    executor.update_parameters(timeout_min=3 / 60, signal_delay_s=1)  # SIGUSR2 about 2 s in
    job = executor.submit(ChunkWorker(), str(store), 5, 2)
    assert job.result() == [1, 1, 2, 2, 2]  # chunks 0-1 from the first attempt, 2-4 from the requeued one
    assert (tmp_path / "checkpointed").exists()
    pids = {(tmp_path / f"attempt-{k}").read_text() for k in (1, 2)}
    assert len(pids) == 2 and not (tmp_path / "attempt-3").exists()
    log = job.stdout()
    assert "this job is timed-out" in log and "Requeued job" in log and "(0 remaining timeouts)" in log


def test_second_timeout_past_max_num_timeout_is_not_requeued(tmp_path):
    store = tmp_path / "store.txt"
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs", max_num_timeout=0)
    executor.update_parameters(timeout_min=3 / 60, signal_delay_s=1)
    job = executor.submit(ChunkWorker(), str(store), 5, 2)
    with pytest.raises(submitit.core.utils.UncompletedJobError, match="timed-out too many times"):
        job.result()
    assert store.read_text().split("\n")[:2] == ["0 1", "1 1"]  # committed chunks survive the failed job


def _task_pid(controller_pid: int, timeout_s: float = 20) -> int:
    """The pid of the local job's (single) task: the controller's child."""
    children = Path(f"/proc/{controller_pid}/task/{controller_pid}/children")
    deadline = time.monotonic() + timeout_s
    while not children.read_text().split():
        assert time.monotonic() < deadline, "the job's task never started"
        time.sleep(0.05)
    return int(children.read_text().split()[0])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the task process through /proc")
def test_preemption_requeues_without_using_up_a_timeout(tmp_path):
    store = tmp_path / "store.txt"
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs", max_num_timeout=1)
    executor.update_parameters(timeout_min=60)  # a long limit: an early signal reads as preemption
    job = executor.submit(ChunkWorker(), str(store), 4, 1)
    _wait_for(store)  # chunk 0 committed, the worker is now stuck on chunk 1
    os.kill(_task_pid(int(job.job_id)), signal.SIGUSR2)  # what Slurm sends (after SIGTERM) on preemption
    assert job.result() == [1, 2, 2, 2]
    log = job.stdout()
    assert "this job is preempted" in log and "(1 remaining timeouts)" in log


# -- vitbench's own lease workers through the local executor (the code path of `vitbench bench --slurm`) ----------



def _bench(zoo, preset, *extra) -> list[str]:
    return ["bench", "tiny-vit.test", "--zoo", str(zoo), "--data", "digits", "--preset", str(preset), "--n-examples",
            "60", "--chunk-size", "10", "--json", "--device", "cpu", *extra]


@pytest.fixture
def bench_preset(tmp_path):
    path = tmp_path / "array.yaml"
    path.write_text(SLOW_CHUNK_PRESET)
    return path


@pytest.fixture
def alone(cli, tiny_zoo, bench_preset, tmp_path, monkeypatch):
    """What one process computes on its own store."""
    monkeypatch.setenv("VITBENCH_STORE", str(tmp_path / "alone.sqlite"))
    res = cli(*_bench(tiny_zoo, bench_preset))
    assert res.code == 0, res
    return json.loads(res.out)[0]["metrics"]


def test_bench_slurm_runs_a_two_job_local_array_with_the_one_process_numbers(store_url, tiny_zoo, bench_preset,
                                                                             alone, tmp_path):
    from conftest import subprocess_env, vitbench_exe
    res = subprocess.run(vitbench_exe() + _bench(tiny_zoo, bench_preset, "--slurm", "--slurm-cluster", "local",
                                                 "--workers", "2", "--wait", "--slurm-folder", str(tmp_path / "jobs")),
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env=subprocess_env(VITBENCH_STORE=store_url, OMP_NUM_THREADS="1", VITBENCH_PROGRESS="0"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "submitted job array" in res.stderr and "(2 workers) for 1 suite runs" in res.stderr
    assert json.loads(res.stdout)[0]["metrics"] == alone
    from vitbench.store import Store
    store = Store(store_url)
    assert store.select("SELECT COUNT(*), SUM(claims) FROM leases WHERE done = 1") == [(6, 6)]
    assert store.select("SELECT cached FROM runs") == [(0,)]
    logs = list((tmp_path / "jobs").glob("*/*_log.out"))
    assert len(logs) == 2  # one log per array job


def _lease_holder(store_url: str) -> int | None:
    """The pid of a worker holding a live lease after at least one commit."""
    from vitbench.store import Store
    store = Store(store_url)
    try:
        if not store.select("SELECT 1 FROM chunks"):
            return None
        rows = store.select(f"SELECT owner FROM leases WHERE done=0 AND owner<>'' AND expires > {store._sql.clock}")
    finally:
        store.close()
    return int(rows[0][0].split(":")[1]) if rows else None


def test_a_preempted_array_job_gives_its_lease_back_requeues_and_continues_from_the_store(
        tiny_zoo, bench_preset, alone, tmp_path, monkeypatch):
    from vitbench.api import submit
    from vitbench.slurm import SlurmOptions
    from vitbench.store import Store
    store_url = str(tmp_path / "array.sqlite")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    submission = submit(["tiny-vit.test"], "digits", preset=str(bench_preset), n_examples=60, chunk_size=10,
                        device="cpu", store=store_url, zoo=tiny_zoo,
                        slurm=SlurmOptions(workers=1, cluster="local", folder=tmp_path / "jobs"))
    (job,) = submission.jobs
    deadline = time.monotonic() + 120
    while (pid := _lease_holder(store_url)) is None:
        assert time.monotonic() < deadline, "the job never held a lease after a commit"
        time.sleep(0.05)
    os.kill(pid, signal.SIGUSR2)  # what Slurm sends (after SIGTERM) on preemption
    (report,) = submission.reports()
    assert report.to_json()[0]["metrics"] == alone
    log = job.stdout()
    assert "this job is preempted" in log and "Requeued job" in log
    workers = Store(store_url).select("SELECT DISTINCT worker FROM chunks")
    assert len(workers) == 2  # the first attempt's chunks are kept; the requeued attempt did the rest
    assert Store(store_url).select("SELECT MAX(claims) FROM leases") == [(2,)]  # the chunk given back, claimed again
