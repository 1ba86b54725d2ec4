"""The store's SQLite backend: one file, the embedded default.

A lock held by another process is waited for: silently for ``QUICK_WAIT`` seconds, then with one warning that
says what is waited for, up to the store's timeout. Every write is one ``BEGIN IMMEDIATE`` transaction, so SQLite's
write lock serialises commits and lease claims of every process on the file. Errors are classified by SQLite's
result names (or message words) into one line naming the cause and a fix that keeps the stored results.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from vitbench.errors import StoreError

log = logging.getLogger("vitbench.store")
T = TypeVar("T")

#: seconds a lock is waited for silently (other workers' chunk commits take milliseconds); then announced
QUICK_WAIT = 0.5
#: SQLite result names (and message words, for errors raised without a code) -> what went wrong
_CAUSES = (("locked", ("SQLITE_BUSY", "SQLITE_LOCKED"), ("locked", "busy")),
           ("full", ("SQLITE_FULL",), ("disk is full",)),
           ("readonly-folder", ("SQLITE_READONLY_DIRECTORY",), ()),
           ("readonly", ("SQLITE_READONLY",), ("readonly", "read-only")),
           ("cantopen", ("SQLITE_CANTOPEN", "SQLITE_PERM"), ("unable to open",)),
           ("ioerror", ("SQLITE_IOERR",), ("disk i/o error",)),
           ("corrupt", ("SQLITE_CORRUPT", "SQLITE_NOTADB"), ("malformed", "not a database")))


def classify(exc: sqlite3.Error) -> str:
    """The cause of a SQLite error: its result name when it carries one, else words of its message."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    for cause, names, _ in _CAUSES:
        if any(name == n or name.startswith(n + "_") for n in names):
            return cause
    for cause, _, words in _CAUSES:
        if any(w in text for w in words):
            return cause
    return "other"


class SQLiteBackend:
    """The SQLite side of the backend seam (see :class:`vitbench.store.Store`)."""

    kind = "sqlite"
    #: seconds since the epoch by the machine's clock (every process on one SQLite file shares a machine or a disk)
    clock = "((julianday('now') - 2440587.5) * 86400.0)"
    least = "MIN"
    #: BEGIN IMMEDIATE already holds the write lock: no row locks needed
    skip_locked = ""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.where = f"store {self.path}"
        self.timeout = timeout
        self._announced = False
        if self.path.is_dir():
            raise StoreError(f"store {self.path} is a folder: point VITBENCH_STORE at a file (e.g. "
                             f"{self.path / 'results.sqlite'})")
        from vitbench.paths import ensure_folder
        ensure_folder(self.path.parent, "the store's folder", fix="point VITBENCH_HOME or VITBENCH_STORE elsewhere")
        try:
            self.conn = sqlite3.connect(self.path, timeout=min(QUICK_WAIT, timeout), isolation_level=None)
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def reopen(self) -> SQLiteBackend:
        return SQLiteBackend(self.path, self.timeout)

    def close(self) -> None:
        self.conn.close()

    # -- statements -------------------------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def insert_id(self, sql: str, params: Sequence[Any], column: str) -> int:
        return int(self.conn.execute(sql, params).lastrowid)

    def ddl(self, statement: str) -> str:
        return statement

    def lock_eval(self, eval_key: str) -> None:
        """Commits of one evaluation are serialised by the write lock BEGIN IMMEDIATE took."""

    def guard_schema(self) -> None:
        """Schema creation is serialised by the write lock BEGIN IMMEDIATE took."""

    def has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() \
            is not None

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})").fetchall()}

    def writable(self) -> bool:
        """Whether the store can be migrated in place (an older read-only store is read as it is)."""
        return os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)

    # -- transactions and errors ------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; any failure (commit included) rolls it back, so it is all or nothing."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.debug("rollback of %s failed; SQLite rolls back on close", self.path)
            raise

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a read or a whole transaction); on a lock, announce the wait once and retry with the full
        timeout."""
        try:
            return fn()
        except sqlite3.Error as exc:
            if classify(exc) != "locked" or self.timeout <= QUICK_WAIT:
                raise self.error(exc) from None
        if not self._announced:
            self._announced = True
            log.warning("store %s is locked by another process (a bench, train or leaderboard writing to it); "
                        "waiting up to %g s for it to finish (VITBENCH_STORE_TIMEOUT)", self.path, self.timeout)
        self.conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        try:
            return fn()
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {int(QUICK_WAIT * 1000)}")

    def error(self, exc: sqlite3.Error) -> StoreError:
        """One line for a SQLite error; only a file SQLite cannot read as a database is called corrupt."""
        cause = classify(exc)
        kept = "the results already stored are intact"
        where = self.where
        messages = {
            "locked": f"{where} is still locked by another process after {self.timeout:g} s; wait for it to "
                      "finish, raise VITBENCH_STORE_TIMEOUT, or use another VITBENCH_HOME",
            "full": f"{where}: the disk is full ({exc}); free space or move the store to a bigger disk "
                    f"(VITBENCH_HOME / VITBENCH_STORE) and rerun: {kept}, the chunk in flight was rolled back",
            "readonly-folder": f"{where}: its folder {self.path.parent} is read-only and SQLite writes its journal "
                               f"there; make the folder writable or copy the store elsewhere (VITBENCH_STORE): {kept}",
            "readonly": f"{where} is read-only ({exc}); make it and its folder writable, or point VITBENCH_STORE "
                        f"at a writable copy: {kept}",
            "cantopen": f"{where} cannot be opened for writing ({exc}): check that {self.path.parent} exists and is "
                        f"writable (SQLite writes a journal next to the store): {kept}",
            "ioerror": f"{where}: disk I/O error ({exc}); check the disk (full, removed, a network share?) and "
                       f"rerun: {kept}",
            "corrupt": f"{where} is corrupt or not a vitbench store ({exc}); move it aside (results in it are "
                       "lost) or set VITBENCH_HOME to another folder",
        }
        return StoreError(messages.get(cause, f"{where}: SQLite error ({exc}); {kept}: rerun, or report it"))
