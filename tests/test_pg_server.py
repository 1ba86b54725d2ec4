"""The test PostgreSQL server (tests/pg_server.py) and the server behaviours the store relies on: row locks that a
second worker skips, and a terminated connection that loses only its uncommitted work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

TESTS = Path(__file__).resolve().parent


def _connect(url: str, **kw):
    return psycopg.connect(url, connect_timeout=10, **kw)


def test_server_starts_quickly_as_an_unprivileged_user_on_a_socket_only(pg_server):
    assert pg_server.startup_s < 15, f"startup took {pg_server.startup_s:.1f} s; expected about 1 s"
    if pg_server.root is None:
        pytest.skip("external server: nothing to check about how it was started")
    assert (pg_server.root / "data" / "postmaster.pid").stat().st_uid != 0
    with _connect(pg_server.url("postgres")) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert int(conn.execute("SHOW server_version_num").fetchone()[0]) >= 150000


def test_connect_create_insert_select(postgres_url):
    with _connect(postgres_url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS smoke (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO smoke VALUES (%s, %s), (%s, %s)", (1, "a", 2, "b"))
        assert conn.execute("SELECT id, name FROM smoke ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
        conn.rollback()  # the session database is shared: leave it as found


@pytest.mark.parametrize("round_", [1, 2])
def test_fresh_database_is_empty_and_private(fresh_postgres_url, postgres_url, round_):
    """Run twice: the second round would see the first round's table if databases were shared."""
    assert fresh_postgres_url != postgres_url
    with _connect(fresh_postgres_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
        assert tables == 0
        conn.execute("CREATE TABLE leftovers (round int)")
        conn.execute("INSERT INTO leftovers VALUES (%s)", (round_,))


def _claim_one(conn) -> int | None:
    """Lease-style claim: the lowest free chunk, skipping rows another transaction has locked."""
    row = conn.execute(
        "SELECT id FROM chunks WHERE done = false ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED").fetchone()
    return None if row is None else row[0]


def test_for_update_skip_locked_hands_two_workers_different_rows(fresh_postgres_url):
    with _connect(fresh_postgres_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE chunks (id int PRIMARY KEY, done bool NOT NULL DEFAULT false)")
        setup.execute("INSERT INTO chunks (id) VALUES (0), (1)")
    with _connect(fresh_postgres_url) as a, _connect(fresh_postgres_url) as b:
        assert _claim_one(a) == 0  # a's transaction now holds row 0's lock
        assert _claim_one(b) == 1  # b skips the locked row instead of waiting for it
        with pytest.raises(psycopg.errors.LockNotAvailable):  # row 0 really is locked, not just skipped
            b.execute("SELECT id FROM chunks WHERE id = 0 FOR UPDATE NOWAIT")
        b.rollback()
        a.execute("UPDATE chunks SET done = true WHERE id = 0")
        a.commit()  # releases the lock; row 0 is now done
        assert _claim_one(b) == 1
        b.execute("UPDATE chunks SET done = true WHERE id = 1")
        b.commit()
        assert _claim_one(a) is None


def test_terminated_backend_raises_on_next_query_and_keeps_only_committed_rows(fresh_postgres_url):
    with _connect(fresh_postgres_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE results (chunk int PRIMARY KEY)")
        victim = _connect(fresh_postgres_url)
        victim.execute("INSERT INTO results VALUES (0)")
        victim.commit()
        victim.execute("INSERT INTO results VALUES (1)")  # open transaction: this chunk is not committed
        assert admin.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,)).fetchone() == (True,)
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        assert victim.closed
        assert admin.execute("SELECT chunk FROM results ORDER BY chunk").fetchall() == [(0,)]


# The session's own cleanup, checked from outside: a child pytest session uses the fixture, then fails or dies.

_CHILD_TEST = textwrap.dedent("""
    import os, signal
    def test_child(pg_server):
        with open(os.environ["PG_CHILD_REPORT"], "w") as f:
            pid = open(pg_server.root / "data" / "postmaster.pid").readline().strip()
            f.write(f"{pg_server.root}\\n{pid}\\n")
        if os.environ["PG_CHILD_END"] == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        assert False, "this child test fails on purpose"
""")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(os.environ.get("VITBENCH_TEST_PG_URL") is not None, reason="external server: nothing started")
@pytest.mark.parametrize("end", ["fail", "sigkill"])
def test_server_is_stopped_and_removed_when_the_session_fails_or_dies(pg_server, tmp_path, end):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["pg_server"]\n')
    (tmp_path / "test_child.py").write_text(_CHILD_TEST)
    report = tmp_path / "report.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "PG_CHILD_REPORT": str(report), "PG_CHILD_END": end}
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == (-signal.SIGKILL if end == "sigkill" else 1), child.stdout + child.stderr
    root, pid = report.read_text().split()
    deadline = time.monotonic() + 15  # after SIGKILL the watchdog notices within a second or two
    while (Path(root).exists() or _pid_alive(int(pid))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(root).exists(), f"{root} left behind"
    assert not _pid_alive(int(pid)), f"postmaster {pid} still running"
