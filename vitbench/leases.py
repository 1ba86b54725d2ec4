"""Chunk leases, the worker's side: who a worker is, how long its leases last, the heartbeat that renews the
lease on the chunk it computes, and how a worker on this machine is known to be dead.

A worker's id is ``HOST:PID:TAG`` (``/slurm-JOB_TASK`` appended inside a Slurm job), where TAG identifies this
machine's boot and PID namespace: a lease held by a process of this machine and namespace that no longer exists
is ended at once instead of after its expiry (``kill -9`` then rerun resumes without waiting), and no other
machine's pid is ever taken for one of ours.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import threading
from dataclasses import dataclass
from functools import lru_cache

from vitbench.errors import ConfigError

log = logging.getLogger(__name__)

LEASE_ENV = "VITBENCH_LEASE_S"
#: seconds a lease lasts without a heartbeat: how long a dead worker's chunk waits to be taken over
DEFAULT_LEASE_S = 60.0
#: heartbeats per lease period (a lease survives missing all but one of them)
BEATS_PER_LEASE = 4


def lease_seconds() -> float:
    """``VITBENCH_LEASE_S`` (default 60): seconds a lease lasts without renewal.

    Raises:
        ConfigError: for a value that is not a number of seconds >= 1.
    """
    text = os.environ.get(LEASE_ENV, str(DEFAULT_LEASE_S))
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise ConfigError(f"{LEASE_ENV}={text!r} is not a number of seconds >= 1 (e.g. 60)")
    return value


@lru_cache(maxsize=1)
def _machine_tag() -> str:
    """A short hash of this boot and PID namespace (empty where /proc does not say)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}:{namespace}".encode()).hexdigest()[:8]


def worker_id() -> str:
    """This process's worker id (see the module docstring)."""
    base = f"{socket.gethostname()}:{os.getpid()}:{_machine_tag()}"
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return f"{base}/slurm-{job}_{task}"
    if os.environ.get("SLURM_JOB_ID"):
        return f"{base}/slurm-{os.environ['SLURM_JOB_ID']}"
    return base


def known_dead(owner: str) -> bool:
    """Whether ``owner`` is a worker of this machine and PID namespace whose process is gone."""
    parts = owner.split("/", 1)[0].split(":")
    if len(parts) != 3 or not parts[2] or parts[2] != _machine_tag() or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child its parent has not reaped yet still answers kill(pid, 0)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def short(owner: str) -> str:
    """A worker id for tables: HOST:PID plus its Slurm job, without the machine tag."""
    head, _, slurm = owner.partition("/")
    host_pid = ":".join(head.split(":")[:2])
    return f"{host_pid} ({slurm})" if slurm else host_pid


@dataclass
class Heartbeat:
    """Renews one lease every ``lease_s / BEATS_PER_LEASE`` seconds from a thread with its own connection, while
    the chunk computes (``with Heartbeat(...):``). A renewal that finds the lease gone (it expired and another
    worker took the chunk) is logged once; the commit then tells whether the records agree."""

    store: object  # a vitbench.store.Store; the heartbeat opens its own connection to it
    eval_key: str
    lease: object  # vitbench.store.Lease
    owner: str
    lease_s: float

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._beat, name="vitbench-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        store, failing = None, False
        while not self._stop.wait(self.lease_s / BEATS_PER_LEASE):
            try:
                store = store or self.store.reopen()
                held = store.renew(self.eval_key, self.lease, self.owner, self.lease_s)
            except Exception as exc:  # noqa: BLE001 - a failed renewal must not stop the computation
                if not failing:
                    log.warning("could not renew the lease on chunk [%d, %d) (%s); retrying at the next heartbeat",
                                self.lease.start, self.lease.stop, exc)
                failing = True
                store = _closed(store)
                continue
            failing = False
            if not held and not self.lost:
                self.lost = True
                log.warning("lost the lease on chunk [%d, %d) (it expired and another worker took it over); "
                            "finishing it anyway", self.lease.start, self.lease.stop)
        _closed(store)


def _closed(store) -> None:
    if store is not None:
        try:
            store.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
