"""A throwaway PostgreSQL server for the test session, and a fresh empty database per test.

Fixtures (conftest.py loads this module as a plugin):

- ``pg_server`` (session): a running :class:`PgServer`; ``initdb`` into a new temporary folder, ``pg_ctl start``
  listening only on a unix socket in that folder (no TCP port, so nothing to collide with), stopped and removed at
  the end of the session, also when tests fail. A watchdog process removes it if pytest itself is killed.
- ``postgres_url`` (session): ``postgresql://`` URL of one database shared by the whole session.
- ``fresh_postgres_url`` (function): URL of a new empty database, dropped after the test, so tests never see
  each other's rows.

The binaries come from ``pg_config --bindir`` (Debian: /usr/lib/postgresql/15/bin). initdb refuses to run as
root, so under root the server runs as the unprivileged OS user ``VITBENCH_TEST_PG_OS_USER`` (default
``postgres``, which Debian's postgresql-common package creates). The server is tuned for tests, not durability
(``fsync=off``, ``initdb --no-sync``): its data is thrown away anyway.

Where no server binary (or psycopg) exists the fixtures skip with that reason; with ``VITBENCH_REQUIRE_PG=1`` (as
CI sets) they fail instead, so a broken machine image cannot silently skip the PostgreSQL backend. With
``VITBENCH_TEST_PG_URL`` set to a superuser URL of an existing server, no server is started and that one is used.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

OS_USER_ENV = "VITBENCH_TEST_PG_OS_USER"
REQUIRE_ENV = "VITBENCH_REQUIRE_PG"
EXTERNAL_URL_ENV = "VITBENCH_TEST_PG_URL"
SUPERUSER = "postgres"  # the database role initdb creates (not the OS user)
SESSION_DB = "vitbench_test"
PORT = 5432  # only names the socket file (.s.PGSQL.5432) inside our own folder; no TCP listener
START_TIMEOUT_S = 30

# Durability off: the cluster lives for one test session. Log to stderr, which pg_ctl sends to server.log.
TEST_SETTINGS = {
    "listen_addresses": "''",
    "port": str(PORT),
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "max_wal_size": "1GB",
    "log_min_messages": "warning",
    "log_connections": "off",
    "timezone": "UTC",
}


@dataclass(frozen=True)
class PgServer:
    """A running server: where it listens and how long it took to start."""

    base_url: str  # superuser URL without a database name
    version: str  # e.g. "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    startup_s: float  # initdb + pg_ctl start, wall-clock seconds (0 for an external server)
    root: Path | None  # the temporary folder (data, socket, log); None for an external server

    def url(self, dbname: str) -> str:
        """The superuser URL of database ``dbname`` on this server."""
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path="/" + quote(dbname)))

    def log_tail(self, n_lines: int = 40) -> str:
        """The end of the server's log (empty for an external server)."""
        if self.root is None or not (self.root / "server.log").exists():
            return ""
        return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-n_lines:])


def _unavailable(reason: str) -> None:
    """Skip (or, under VITBENCH_REQUIRE_PG=1, fail) the requesting test with ``reason``."""
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so this is an error rather than a skip)", pytrace=False)
    pytest.skip(reason)


def find_bindir() -> Path | None:
    """The folder with initdb, pg_ctl and postgres: ``pg_config --bindir``, else the newest Debian layout."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    # Debian's client-only pg_config may point at /usr/bin; the server binaries live per major version.
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(re.sub(r"\D", "", p) or 0))
    candidates += [Path(p) for p in reversed(versions)]
    for folder in candidates:
        if all((folder / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _server_user() -> pwd.struct_passwd | None:
    """The OS user the server runs as: None means "the current user" (we are not root)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(OS_USER_ENV, "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        _unavailable(f"running as root and no OS user {name!r} to run PostgreSQL as (initdb refuses root); "
                     f"create one (useradd --system {name}) or set {OS_USER_ENV}")
        raise  # unreachable: _unavailable raises


def _run_as(user: pwd.struct_passwd | None, cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``cmd`` as ``user`` (None: ourselves), with a clean PG* environment; raise with its output on failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    kwargs = {}
    if user is not None:
        env.update(HOME=str(cwd), USER=user.pw_name, LOGNAME=user.pw_name)
        # extra_groups=[] drops root's supplementary groups, or the server would keep them
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, **kwargs)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def _start_watchdog(root: Path) -> subprocess.Popen:
    """A detached process that stops the server and removes ``root`` if this pytest process dies without doing it
    (SIGKILL, os._exit from a timeout). It exits by itself once ``root`` is gone."""
    script = (
        'while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 1; done; '
        '[ -d "$2" ] || exit 0; '
        'pid=$(head -n1 "$2/data/postmaster.pid" 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null; '
        'sleep 1; rm -rf "$2"'
    )
    return subprocess.Popen(["sh", "-c", script, "pg-watchdog", str(os.getpid()), str(root)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _init_and_start(bindir: Path, root: Path, user: pwd.struct_passwd | None) -> None:
    """initdb into root/data and start the server on a socket in root, logging to root/server.log."""
    data = root / "data"
    _run_as(user, [str(bindir / "initdb"), "-D", str(data), "--no-sync", "--auth=trust", "-U", SUPERUSER,
                   "--encoding=UTF8", "--locale=C"], cwd=root)
    conf = {**TEST_SETTINGS, "unix_socket_directories": f"'{root}'"}
    with open(data / "postgresql.conf", "a") as f:  # appended settings override the generated ones
        f.write("\n# vitbench tests\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
    _run_as(user, [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                   "-t", str(START_TIMEOUT_S), "start"], cwd=root)


def _stop(bindir: Path, root: Path, user: pwd.struct_passwd | None) -> None:
    """Stop the server (fast shutdown: disconnect clients) and remove its folder."""
    try:
        if (root / "data" / "postmaster.pid").exists():
            _run_as(user, [str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "-t", "30",
                           "stop"], cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _socket_url(root: Path) -> str:
    return f"postgresql://{SUPERUSER}@/?host={quote(str(root), safe='/')}&port={PORT}"


def _execute_autocommit(url: str, sql: str) -> None:
    import psycopg
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for this test session (see the module docstring)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg (psycopg 3) is not installed: pip install -e '.[postgres]'")
    external = os.environ.get(EXTERNAL_URL_ENV)
    if external:
        yield PgServer(base_url=external, version="external", startup_s=0.0, root=None)
        return
    bindir = find_bindir()
    if bindir is None:
        _unavailable("no PostgreSQL server binaries (initdb, pg_ctl, postgres): pg_config --bindir names none; "
                     "install Debian's postgresql package")
    user = _server_user()
    version = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
    # Under /tmp, not pytest's tmp_path: that one is private to root, and a socket path must stay under ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="vitbench-pg-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    watchdog = _start_watchdog(root)
    try:
        t0 = time.perf_counter()
        _init_and_start(bindir, root, user)
        server = PgServer(base_url=_socket_url(root), version=version, startup_s=time.perf_counter() - t0,
                          root=root)
        sys.stderr.write(f"\n[pg_server] {version} started in {server.startup_s:.2f} s at {root}\n")
        yield server
    except RuntimeError as e:  # startup failed: show the server log, not just pg_ctl's "could not start"
        log = (root / "server.log").read_text(errors="replace") if (root / "server.log").exists() else ""
        raise RuntimeError(f"{e}\nserver.log:\n{log}") from None
    finally:
        _stop(bindir, root, user)
        watchdog.kill()  # its only job was a cleanup that has now happened
        watchdog.wait()


@pytest.fixture(scope="session")
def postgres_url(pg_server: PgServer) -> Iterator[str]:
    """URL of one database that the whole session shares (created at the start, dropped at the end)."""
    _execute_autocommit(pg_server.url("postgres"), f"DROP DATABASE IF EXISTS {SESSION_DB} WITH (FORCE)")
    _execute_autocommit(pg_server.url("postgres"), f"CREATE DATABASE {SESSION_DB}")
    yield pg_server.url(SESSION_DB)
    _execute_autocommit(pg_server.url("postgres"), f"DROP DATABASE IF EXISTS {SESSION_DB} WITH (FORCE)")


_db_counter = itertools.count()


@pytest.fixture
def fresh_postgres_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a new, empty database for this test only; dropped afterwards (connections still open are closed)."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    dbname = f"t{next(_db_counter)}_{os.getpid()}_{slug}"[:63]  # 63 bytes: PostgreSQL's identifier limit
    admin = pg_server.url("postgres")
    _execute_autocommit(admin, f"CREATE DATABASE {_quote_ident(dbname)}")
    yield pg_server.url(dbname)
    _execute_autocommit(admin, f"DROP DATABASE IF EXISTS {_quote_ident(dbname)} WITH (FORCE)")
