"""The results store: SQLite, one file (``VITBENCH_HOME/results.sqlite``).

Tables: ``evals`` (what an evaluation is: model, data, suite config, seed, chunk size), ``chunks`` (each chunk
committed with its samples in one transaction, so an interrupted run loses at most the chunk in flight),
``samples`` (per-sample records as JSON), ``runs`` (one per finished bench invocation: aggregated metrics, flags
and provenance). Leaderboards and reports are computed from it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vitbench.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: schema migrations: from version v, the statements that make it version v + 1
_MIGRATIONS = {1: ["ALTER TABLE runs ADD COLUMN details TEXT NOT NULL DEFAULT '{}'"]}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evals (
    eval_key TEXT PRIMARY KEY, model TEXT NOT NULL, model_fingerprint TEXT NOT NULL, weights_sha256 TEXT,
    dataset TEXT NOT NULL, data_fingerprint TEXT NOT NULL, suite TEXT NOT NULL, suite_version INTEGER NOT NULL,
    config TEXT NOT NULL, config_hash TEXT NOT NULL, seed INTEGER NOT NULL, chunk_size INTEGER NOT NULL,
    created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    eval_key TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL, chunk_index INTEGER NOT NULL,
    seed INTEGER NOT NULL, batch_size INTEGER NOT NULL, seconds REAL NOT NULL, device TEXT NOT NULL,
    flags TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (eval_key, start, stop));
CREATE TABLE IF NOT EXISTS samples (
    eval_key TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL, idx INTEGER NOT NULL,
    sample_id TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (eval_key, start, stop, idx));
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, eval_key TEXT NOT NULL, model TEXT NOT NULL, dataset TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL, label_space TEXT NOT NULL, suite TEXT NOT NULL, config TEXT NOT NULL,
    n_examples INTEGER NOT NULL, seed INTEGER NOT NULL, metrics TEXT NOT NULL, flags TEXT NOT NULL,
    provenance TEXT NOT NULL, created TEXT NOT NULL, seconds REAL NOT NULL, cached INTEGER NOT NULL,
    details TEXT NOT NULL DEFAULT '{}');
"""


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


def _classify(exc: sqlite3.Error) -> str:
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


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class RunRow:
    """One finished bench run of one suite on one model."""

    run_id: int
    eval_key: str
    model: str
    dataset: str
    data_fingerprint: str
    label_space: str
    suite: str
    config: dict
    n_examples: int
    seed: int
    metrics: dict
    flags: list
    provenance: dict
    created: str
    seconds: float
    cached: bool
    model_fingerprint: str = ""  # weights + input pipeline: which version of the model the run belongs to
    weights_sha256: str | None = None
    #: the run's leaderboard columns (metrics.Column.to_dict) and the plots its suite declares, stored at bench
    #: time so that tables, cards, plots and the site never import the suites (or torch)
    columns: list = field(default_factory=list)
    plots: list = field(default_factory=list)


class Store:
    """A connection to the results store.

    A lock held by another process is waited for: silently for ``QUICK_WAIT`` seconds, then with one warning that
    says what is waited for, up to ``timeout`` seconds (``VITBENCH_STORE_TIMEOUT``). A store that exists is only
    read until something is written, so a read-only store still serves leaderboards.

    Raises:
        StoreError: naming the cause and a fix that keeps the stored results: still locked after ``timeout``,
            a full disk, a read-only file or folder, a file that cannot be opened, a disk error, or a file that
            is corrupt or not a vitbench store.
    """

    def __init__(self, path: Path, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._announced = False
        if self.path.is_dir():
            raise StoreError(f"store {self.path} is a folder: point VITBENCH_STORE at a file (e.g. "
                             f"{self.path / 'results.sqlite'})")
        from vitbench.paths import ensure_folder
        ensure_folder(self.path.parent, "the store's folder", fix="point VITBENCH_HOME or VITBENCH_STORE elsewhere")
        try:
            self._db = sqlite3.connect(self.path, timeout=min(QUICK_WAIT, timeout), isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        self._run(self._init_schema)

    def _init_schema(self) -> None:
        version = self._schema_version()
        if version is None:
            with self._tx():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                if self._schema_version() is None:  # another process may have created it meanwhile
                    self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif version < SCHEMA_VERSION and self._writable():
            self._migrate(version)
        elif version > SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {version}, this vitbench uses "
                             f"{SCHEMA_VERSION}: upgrade vitbench (or point VITBENCH_HOME elsewhere)")

    def _writable(self) -> bool:
        """Whether the store can be migrated in place (an older read-only store is read as it is)."""
        import os
        return os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)

    def _migrate(self, version: int) -> None:
        with self._tx():
            current = self._schema_version()
            while current is not None and current < SCHEMA_VERSION:  # another process may have migrated it
                for statement in _MIGRATIONS[current]:
                    self._db.execute(statement)
                current += 1
                self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(current),))
        log.info("store %s migrated from schema version %d to %d", self.path, version, SCHEMA_VERSION)

    def _schema_version(self) -> int | None:
        """The stored schema version, or None for a new (empty) store; reads only."""
        has_meta = self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return None if row is None else int(row[0])

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """One line for a SQLite error; only a file SQLite cannot read as a database is called corrupt."""
        cause = _classify(exc)
        kept = "the results already stored are intact"
        where = f"store {self.path}"
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

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction; any failure (commit included) rolls it back, so it is all or nothing."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    log.debug("rollback of %s failed; SQLite rolls back on close", self.path)
            raise

    def _run(self, fn):
        """Run ``fn`` (a read or a whole transaction); on a lock, announce the wait once and retry with the full
        timeout."""
        try:
            return fn()
        except sqlite3.Error as exc:
            if _classify(exc) != "locked" or self.timeout <= QUICK_WAIT:
                raise self._error(exc) from None
        if not self._announced:
            self._announced = True
            log.warning("store %s is locked by another process (a bench, train or leaderboard writing to it); "
                        "waiting up to %g s for it to finish (VITBENCH_STORE_TIMEOUT)", self.path, self.timeout)
        self._db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        try:
            return fn()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(QUICK_WAIT * 1000)}")

    def close(self) -> None:
        self._db.close()

    # -- evaluations and chunks --------------------------------------------------------------------------------
    def ensure_eval(self, eval_key: str, info: dict) -> None:
        def go():
            with self._tx():
                self._db.execute(
                    "INSERT OR IGNORE INTO evals VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (eval_key, info["model"], info["model_fingerprint"], info.get("weights_sha256"),
                     info["dataset"], info["data_fingerprint"], info["suite"], info["suite_version"],
                     json.dumps(info["config"], sort_keys=True), info["config_hash"], info["seed"],
                     info["chunk_size"], now()))
        self._run(go)

    def done_chunks(self, eval_key: str) -> set[tuple[int, int]]:
        rows = self._run(lambda: self._db.execute(
            "SELECT start, stop FROM chunks WHERE eval_key=?", (eval_key,)).fetchall())
        return {(a, b) for a, b in rows}

    def commit_chunk(self, eval_key: str, *, start: int, stop: int, index: int, seed: int, batch_size: int,
                     seconds: float, device: str, flags: Sequence[str], ids: Sequence[str],
                     records: Sequence[dict]) -> None:
        """Store a finished chunk and its per-sample records atomically (idempotent)."""
        if len(records) != stop - start or len(ids) != stop - start:
            raise ValueError(f"chunk [{start}, {stop}) got {len(records)} records")
        rows = [(eval_key, start, stop, start + i, str(sid), json.dumps(rec, sort_keys=True))
                for i, (sid, rec) in enumerate(zip(ids, records))]

        def go():
            with self._tx():
                self._db.execute("DELETE FROM samples WHERE eval_key=? AND start=? AND stop=?", (eval_key, start, stop))
                self._db.executemany("INSERT INTO samples VALUES (?,?,?,?,?,?)", rows)
                self._db.execute("INSERT OR REPLACE INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?)",
                                 (eval_key, start, stop, index, seed, batch_size, seconds, device,
                                  json.dumps(list(flags)), now()))
        self._run(go)

    def records(self, eval_key: str, plan: Iterable[tuple[int, int]]) -> list[dict]:
        """Per-sample records of the planned chunks, in sample order."""
        out: list[dict] = []
        for start, stop in plan:
            rows = self._run(lambda s=start, e=stop: self._db.execute(
                "SELECT record FROM samples WHERE eval_key=? AND start=? AND stop=? ORDER BY idx",
                (eval_key, s, e)).fetchall())
            if len(rows) != stop - start:
                raise StoreError(f"store {self.path}: chunk [{start}, {stop}) of evaluation {eval_key} is "
                                 "incomplete; delete the store or rerun with another seed")
            out += [json.loads(r[0]) for r in rows]
        return out

    def chunk_size(self, eval_key: str) -> int:
        """The chunk size an evaluation was computed with."""
        row = self._run(lambda: self._db.execute("SELECT chunk_size FROM evals WHERE eval_key=?",
                                                 (eval_key,)).fetchone())
        if row is None:
            raise StoreError(f"store {self.path}: no evaluation {eval_key}")
        return int(row[0])

    def sample_rows(self, eval_key: str, plan: Iterable[tuple[int, int]]) -> list[tuple[int, str, dict]]:
        """(example index, sample id, record) of the planned chunks, in sample order."""
        out: list[tuple[int, str, dict]] = []
        for start, stop in plan:
            rows = self._run(lambda s=start, e=stop: self._db.execute(
                "SELECT idx, sample_id, record FROM samples WHERE eval_key=? AND start=? AND stop=? ORDER BY idx",
                (eval_key, s, e)).fetchall())
            out += [(int(i), str(sid), json.loads(rec)) for i, sid, rec in rows]
        return out

    def first_records(self, eval_key: str, limit: int) -> list[dict]:
        """The first ``limit`` stored per-sample records of an evaluation, in sample order (e.g. for plots)."""
        rows = self._run(lambda: self._db.execute(
            "SELECT record FROM samples WHERE eval_key=? ORDER BY idx LIMIT ?", (eval_key, limit)).fetchall())
        return [json.loads(r[0]) for r in rows]

    def chunk_info(self, eval_key: str, plan: Iterable[tuple[int, int]]) -> list[dict]:
        out = []
        for start, stop in plan:
            row = self._run(lambda s=start, e=stop: self._db.execute(
                "SELECT flags, batch_size, seconds, device FROM chunks WHERE eval_key=? AND start=? AND stop=?",
                (eval_key, s, e)).fetchone())
            if row:
                out.append({"flags": json.loads(row[0]), "batch_size": row[1], "seconds": row[2], "device": row[3]})
        return out

    # -- runs -------------------------------------------------------------------------------------------------
    def add_run(self, *, eval_key: str, model: str, dataset: str, data_fingerprint: str, label_space: str,
                suite: str, config: dict, n_examples: int, seed: int, metrics: dict, flags: list,
                provenance: dict, seconds: float, cached: bool, details: dict | None = None) -> int:
        def go():
            with self._tx():
                cur = self._db.execute(
                    "INSERT INTO runs (eval_key, model, dataset, data_fingerprint, label_space, suite, config, "
                    "n_examples, seed, metrics, flags, provenance, created, seconds, cached, details) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (eval_key, model, dataset, data_fingerprint, label_space, suite,
                     json.dumps(config, sort_keys=True), n_examples, seed, json.dumps(metrics), json.dumps(flags),
                     json.dumps(provenance, sort_keys=True), now(), seconds, int(cached),
                     json.dumps(details or {})))
                return int(cur.lastrowid)
        return self._run(go)

    def runs(self, *, model: str | None = None, suite: str | None = None) -> list[RunRow]:
        """All runs (oldest first), optionally for one model or suite."""
        details = "runs.details" if self._has_details() else "'{}'"
        query = ("SELECT runs.run_id, runs.eval_key, runs.model, runs.dataset, runs.data_fingerprint, "
                 "runs.label_space, runs.suite, runs.config, runs.n_examples, runs.seed, runs.metrics, runs.flags, "
                 "runs.provenance, runs.created, runs.seconds, runs.cached, evals.model_fingerprint, "
                 f"evals.weights_sha256, {details} FROM runs LEFT JOIN evals ON evals.eval_key = runs.eval_key")
        where, args = [], []
        if model:
            where.append("runs.model=?")
            args.append(model)
        if suite:
            where.append("runs.suite=?")
            args.append(suite)
        if where:
            query += " WHERE " + " AND ".join(where)
        rows = self._run(lambda: self._db.execute(query + " ORDER BY runs.run_id", args).fetchall())
        return [self._run_row(r) for r in rows]

    @staticmethod
    def _run_row(r: tuple) -> RunRow:
        details = json.loads(r[18] or "{}")
        return RunRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], r[9], json.loads(r[10]),
                      json.loads(r[11]), json.loads(r[12]), r[13], r[14], bool(r[15]), r[16] or "", r[17],
                      details.get("columns", []), details.get("plots", []))

    def _has_details(self) -> bool:
        cols = self._run(lambda: self._db.execute("PRAGMA table_info(runs)").fetchall())
        return any(c[1] == "details" for c in cols)


def open_store(path: Path | None = None, *, timeout: float | None = None) -> Store:
    """Open the default store (``VITBENCH_STORE`` or ``VITBENCH_HOME/results.sqlite``), waiting up to
    ``VITBENCH_STORE_TIMEOUT`` seconds (default 60) for another process's lock."""
    from vitbench.paths import store_path
    wait = timeout if timeout is not None else store_timeout()
    return Store(path or store_path(), timeout=wait)


def store_timeout() -> float:
    """``VITBENCH_STORE_TIMEOUT`` in seconds (default 60)."""
    import math
    import os
    text = os.environ.get("VITBENCH_STORE_TIMEOUT", "60")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"VITBENCH_STORE_TIMEOUT={text!r} is not a number of seconds >= 0 (e.g. 60)")
    return value
