"""Slurm job arrays through submitit on a real one-node Slurm cluster (scripts/slurm_local_cluster.sh).

Slow, so deselected by default: ``pytest -m slow tests/test_slurm_cluster.py``. Uses the cluster that
``SLURM_CONF`` names when its controller answers; otherwise, as root with Debian's slurm-wlm and munge installed,
starts one in a temporary folder for this module and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import SLOW_CHUNK_PRESET

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
submitit = pytest.importorskip("submitit")
from submitit.helpers import Checkpointable  # noqa: E402

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS.parent / "scripts" / "slurm_local_cluster.sh"


def _controller_up(conf: str) -> bool:
    out = subprocess.run(["scontrol", "ping"], env={**os.environ, "SLURM_CONF": conf}, capture_output=True,
                         text=True, timeout=30, check=False)
    return out.returncode == 0 and "UP" in out.stdout


@pytest.fixture(scope="module")
def slurm_conf():
    """The slurm.conf of a running cluster: the one SLURM_CONF names, or one started for this module."""
    if shutil.which("sbatch") is None:
        pytest.skip("no sbatch: apt-get install -y slurm-wlm munge")
    existing = os.environ.get("SLURM_CONF")
    if existing and _controller_up(existing):
        yield existing
        return
    missing = [exe for exe in ("slurmctld", "slurmd", "munged") if shutil.which(exe) is None]
    if missing:
        pytest.skip(f"no cluster at SLURM_CONF and none to start ({', '.join(missing)} missing)")
    if os.geteuid() != 0:
        pytest.skip("no cluster at SLURM_CONF, and starting one needs root (slurmd runs jobs as their users)")
    folder = tempfile.mkdtemp(prefix="vitbench-slurm-")
    try:
        subprocess.run([str(SCRIPT), "start", folder], check=True, timeout=120)
        yield str(Path(folder) / "slurm.conf")
    finally:
        subprocess.run([str(SCRIPT), "stop", folder], check=False, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def slurm_executor(slurm_conf, tmp_path, monkeypatch):
    """An AutoExecutor on the cluster; jobs import this test module by name, so PYTHONPATH names its folder."""
    monkeypatch.setenv("SLURM_CONF", slurm_conf)  # for submitit's sbatch/squeue/scontrol calls
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs" / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, slurm_partition="debug")
    return executor


def square_in_slurm(x: int) -> dict:
    return {"value": x * x, "array_job": os.environ["SLURM_ARRAY_JOB_ID"],
            "task": int(os.environ["SLURM_ARRAY_TASK_ID"]), "host": socket.gethostname()}


def test_two_job_array_runs_and_returns_both_results(slurm_executor):
    t0 = time.monotonic()
    jobs = slurm_executor.map_array(square_in_slurm, [3, 4])
    try:
        results = [job.result() for job in jobs]
    finally:
        for job in jobs:
            job.cancel(check=False)  # no-op for finished jobs; frees the cluster if result() failed
    print(f"array {jobs[0].job_id.split('_')[0]}: {results} in {time.monotonic() - t0:.1f} s")
    assert [r["value"] for r in results] == [9, 16]
    assert [r["task"] for r in results] == [0, 1]
    assert len({r["array_job"] for r in results}) == 1
    assert [job.job_id for job in jobs] == [f"{results[0]['array_job']}_{k}" for k in (0, 1)]


class StuckOnce(Checkpointable):
    """Hangs on its first attempt (until Slurm signals it); the requeued attempt returns at once."""

    def __call__(self, marker: str) -> dict:
        if not Path(marker).exists():
            Path(marker).write_text(os.environ["SLURM_JOB_ID"])
            time.sleep(240)
        return {"restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0")), "job": os.environ["SLURM_JOB_ID"]}


def test_preempted_job_checkpoints_and_is_requeued_by_slurm(slurm_executor, tmp_path):
    marker = tmp_path / "first-attempt"
    job = slurm_executor.submit(StuckOnce(), str(marker))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.2)
        job._interrupt(timeout=False)  # what preemption sends: SIGTERM, then the USR2 submitit handles
        result = job.result()  # the requeue waits cred_expire (10 s in the script's cluster) before restarting
    finally:
        job.cancel(check=False)
    log = job.stdout()
    print(log)
    assert result == {"restarts": 1, "job": job.job_id}
    assert "Calling checkpoint method" in log and f"Requeued job {job.job_id}" in log




def test_vitbench_bench_runs_a_two_job_array_of_lease_workers_end_to_end(slurm_conf, tiny_zoo, tmp_path, cli,
                                                                          monkeypatch):
    """``vitbench bench --slurm --workers 2 --wait``: two array jobs share the chunks through leases in one store
    and the table equals what one process computes alone."""
    import json

    from conftest import subprocess_env, vitbench_exe
    from vitbench.store import Store
    preset = tmp_path / "array.yaml"
    preset.write_text(SLOW_CHUNK_PRESET)
    args = ["bench", "tiny-vit.test", "--zoo", str(tiny_zoo), "--data", "digits", "--preset", str(preset),
            "--n-examples", "80", "--chunk-size", "10", "--device", "cpu", "--json"]
    monkeypatch.setenv("VITBENCH_STORE", str(tmp_path / "alone.sqlite"))
    alone = cli(*args)
    assert alone.code == 0, alone
    store = tmp_path / "array.sqlite"
    env = subprocess_env(SLURM_CONF=slurm_conf, VITBENCH_STORE=str(store), OMP_NUM_THREADS="1",
                         VITBENCH_PROGRESS="0",
                         PYTHONPATH=os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    t0 = time.monotonic()
    res = subprocess.run(vitbench_exe() + args + ["--slurm", "--workers", "2", "--partition", "debug",
                                                  "--time-min", "5", "--wait", "--slurm-folder",
                                                  str(tmp_path / "jobs")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=280)
    print(f"$ vitbench {' '.join(args[:1])} ... --slurm --workers 2 --partition debug --time-min 5 --wait "
          f"({time.monotonic() - t0:.1f} s, exit {res.returncode})\n{res.stderr}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)[0]["metrics"] == json.loads(alone.out)[0]["metrics"]
    rows = Store(store).select("SELECT chunk_index, worker FROM chunks ORDER BY chunk_index")
    for index, worker in rows:
        print(f"chunk {index}: {worker}")
    array = res.stderr.split("submitted job array ")[1].split()[0]
    tasks = {worker.rsplit("_", 1)[1] for _, worker in rows}
    assert len(rows) == 8 and all(f"/slurm-{array}_" in worker for _, worker in rows)
    assert tasks == {"0", "1"}  # both array jobs computed chunks
