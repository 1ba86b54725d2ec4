"""The results store: SQLite by default (one file, ``VITBENCH_HOME/results.sqlite``) or a PostgreSQL server
(``VITBENCH_STORE=postgresql://...``), one schema and one set of queries above a small backend seam.

Tables: ``evals`` (what an evaluation is: model, data, suite config, seed, chunk size), ``chunks`` (each chunk
committed with its samples and the worker that computed it in one transaction, so an interrupted run loses at
most the chunk in flight), ``samples`` (per-sample records as JSON), ``runs`` (one per finished bench invocation:
aggregated metrics, flags and provenance), ``leases`` (which worker is computing which chunk, until when) and
``meta`` (the schema version). Leaderboards and reports are computed from it.

The backend seam (:mod:`vitbench.store_sqlite`, :mod:`vitbench.store_postgres`) is what differs: placeholders,
column types and the autoincrementing run id, how a transaction locks (SQLite's write lock; PostgreSQL's row
locks), the database clock leases expire by, and how errors read. Everything here is torch-free.

Leases. Workers that share a job claim its chunks one at a time: a claim takes the first chunk of the plan that is
neither stored nor leased (or whose lease expired, or that the claimer already holds), writes the claimer as its
owner with an expiry, and the worker renews the lease while it computes. Committing a chunk stores its records,
marks its lease done and records the worker, atomically; a second commit of the same chunk is a no-op when its
records are the same and refused when they differ. The commit that stores a plan's last missing chunk says so
(:attr:`Commit.missing` is 0), which makes its worker the one that aggregates.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitbench.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
_LEASES = """CREATE TABLE IF NOT EXISTS leases (
    eval_key TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL, chunk_index INTEGER NOT NULL,
    owner TEXT NOT NULL DEFAULT '', expires REAL NOT NULL DEFAULT 0, heartbeat REAL NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (eval_key, start, stop))"""
#: schema migrations: from version v, the statements that make it version v + 1
_MIGRATIONS = {1: ["ALTER TABLE runs ADD COLUMN details TEXT NOT NULL DEFAULT '{}'"],
               2: ["ALTER TABLE chunks ADD COLUMN worker TEXT NOT NULL DEFAULT ''", _LEASES]}
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
    flags TEXT NOT NULL, created TEXT NOT NULL, worker TEXT NOT NULL DEFAULT '', PRIMARY KEY (eval_key, start, stop));
CREATE TABLE IF NOT EXISTS samples (
    eval_key TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL, idx INTEGER NOT NULL,
    sample_id TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (eval_key, start, stop, idx));
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, eval_key TEXT NOT NULL, model TEXT NOT NULL, dataset TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL, label_space TEXT NOT NULL, suite TEXT NOT NULL, config TEXT NOT NULL,
    n_examples INTEGER NOT NULL, seed INTEGER NOT NULL, metrics TEXT NOT NULL, flags TEXT NOT NULL,
    provenance TEXT NOT NULL, created TEXT NOT NULL, seconds REAL NOT NULL, cached INTEGER NOT NULL,
    details TEXT NOT NULL DEFAULT '{}');
""" + _LEASES + ";"
_RUN_COLUMNS = ("eval_key, model, dataset, data_fingerprint, label_space, suite, config, n_examples, seed, metrics, "
                "flags, provenance, created, seconds, cached, details")
_CHUNK_COLUMNS = "eval_key, start, stop, chunk_index, seed, batch_size, seconds, device, flags, created, worker"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _statements(script: str) -> list[str]:
    return [s for s in (part.strip() for part in script.split(";")) if s]


@dataclass(frozen=True)
class Plan:
    """The chunks an n-example run needs: chunk i covers [i * chunk_size, min((i + 1) * chunk_size, n))."""

    n: int
    chunk_size: int

    def chunks(self) -> list[tuple[int, int, int]]:
        """(index, start, stop) of every chunk."""
        return [(i, a, min(a + self.chunk_size, self.n)) for i, a in enumerate(range(0, self.n, self.chunk_size))]

    def spans(self) -> list[tuple[int, int]]:
        return [(a, b) for _, a, b in self.chunks()]

    def __len__(self) -> int:
        return -(-self.n // self.chunk_size)


@dataclass(frozen=True)
class Lease:
    """A chunk a worker holds: its place in the plan and the worker it was taken over from, if any."""

    index: int
    start: int
    stop: int
    taken_from: str = ""


@dataclass(frozen=True)
class Claim:
    """The outcome of a claim: the lease (None when nothing is claimable) and the plan's state at that moment."""

    lease: Lease | None
    missing: int  # chunks of the plan not stored yet
    leased: int  # of those, chunks other workers hold live leases on


@dataclass(frozen=True)
class Commit:
    """The outcome of a chunk commit."""

    inserted: bool  # False: the chunk was already stored with the same records (nothing written)
    missing: int | None  # chunks of the plan still missing after it (None when no plan was given)


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


def _backend(location: str | os.PathLike, timeout: float):
    from vitbench.store_postgres import PostgresBackend, is_url
    text = os.fspath(location)
    if is_url(text):
        return PostgresBackend(text, timeout)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigError(f"store {text!r}: vitbench stores results in a SQLite file (a path) or on a PostgreSQL "
                          f"server (postgresql://USER@HOST/DATABASE), not in a {scheme}:// store")
    from vitbench.store_sqlite import SQLiteBackend
    return SQLiteBackend(Path(text).expanduser(), timeout)


def check_exists(location: str | os.PathLike) -> None:
    """Refuse a SQLite path with no file behind it (a store read as a source is never created by the read)."""
    from vitbench.store_postgres import is_url
    text = os.fspath(location)
    if not is_url(text) and "://" not in text and not Path(text).expanduser().exists():
        raise StoreError(f"store {text}: no such file; name an existing SQLite store or a postgresql:// URL "
                         "(`vitbench bench ... --store PATH` creates one)")


class Store:
    """A connection to the results store: a SQLite path or a ``postgresql://`` URL.

    A SQLite lock held by another process is waited for: silently for half a second (``store_sqlite.QUICK_WAIT``),
    then with one warning that says what is waited for, up to ``timeout`` seconds (``VITBENCH_STORE_TIMEOUT``). A
    store that exists is only read until something is written, so a read-only store still serves leaderboards. A
    dropped PostgreSQL connection is reopened and the interrupted transaction retried.

    Args:
        location: a SQLite file path or a ``postgresql://`` URL.
        timeout: seconds a lock is waited for.
        migrate: migrate an older writable store in place (False: read it as it is, e.g. a merge's source).

    Raises:
        StoreError: naming the cause and a fix that keeps the stored results: still locked after ``timeout``,
            a full disk, a read-only file or folder, a file that cannot be opened, a disk error, a file that is
            corrupt or not a vitbench store, a server that cannot be reached, psycopg missing.
        ConfigError: a URL of a database kind vitbench does not store in.
    """

    def __init__(self, location: str | os.PathLike, *, timeout: float = 60.0, migrate: bool = True,
                 existing: bool = False) -> None:
        self.timeout = timeout
        if existing:
            check_exists(location)
        self._sql = _backend(location, timeout)
        #: the location as given, to reopen the store elsewhere (a URL keeps its password: never print it)
        self.address: str = os.fspath(location)
        self.location: str = self._sql.location  # the path, or the URL without its password, for messages
        self.path: Path | None = self._sql.path  # None for a server
        self.kind: str = self._sql.kind
        self._run(lambda: self._init_schema(migrate))

    @property
    def _db(self):
        """The backend's connection (sqlite3 or psycopg)."""
        return self._sql.conn

    def reopen(self) -> Store:
        """Another connection to the same store (e.g. for a heartbeat thread)."""
        return Store(self.address, timeout=self.timeout)

    def _init_schema(self, migrate: bool) -> None:
        version = self._schema_version()
        if version is None:
            with self._tx():
                self._sql.guard_schema()
                if self._schema_version() is None:  # another process may have created it meanwhile
                    for statement in _statements(_SCHEMA):
                        self._x(self._sql.ddl(statement))
                    self._x("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif version < SCHEMA_VERSION and migrate and self._sql.writable():
            self._migrate(version)
        elif version > SCHEMA_VERSION:
            raise StoreError(f"{self._sql.where} has schema version {version}, this vitbench uses "
                             f"{SCHEMA_VERSION}: upgrade vitbench (or point VITBENCH_HOME elsewhere)")

    def _migrate(self, version: int) -> None:
        with self._tx():
            self._sql.guard_schema()
            current = self._schema_version()
            while current is not None and current < SCHEMA_VERSION:  # another process may have migrated it
                for statement in _MIGRATIONS[current]:
                    self._x(self._sql.ddl(statement))
                current += 1
                self._x("UPDATE meta SET value=? WHERE key='schema_version'", (str(current),))
        log.info("%s migrated from schema version %d to %d", self._sql.where, version, SCHEMA_VERSION)

    def _schema_version(self) -> int | None:
        """The stored schema version, or None for a new (empty) store; reads only."""
        if not self._sql.has_table("meta"):
            return None
        row = self._x("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return None if row is None else int(row[0])

    def schema_version(self) -> int | None:
        return self._run(self._schema_version)

    def _error(self, exc: Exception) -> StoreError:
        return self._sql.error(exc)

    def _x(self, sql: str, params: Sequence[Any] = ()):
        return self._sql.execute(sql, params)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._sql.transaction():
            yield

    def _run(self, fn):
        return self._sql.run(fn)

    def select(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one read-only statement (``?`` placeholders, the common SQL of both backends)."""
        return self._run(lambda: [tuple(r) for r in self._x(sql, params).fetchall()])

    def columns(self, table: str) -> set[str]:
        return self._run(lambda: self._sql.columns(table))

    def close(self) -> None:
        self._sql.close()

    # -- evaluations and chunks --------------------------------------------------------------------------------
    def ensure_eval(self, eval_key: str, info: dict) -> None:
        def go():
            with self._tx():
                self._x("INSERT INTO evals VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                        (eval_key, info["model"], info["model_fingerprint"], info.get("weights_sha256"),
                         info["dataset"], info["data_fingerprint"], info["suite"], info["suite_version"],
                         json.dumps(info["config"], sort_keys=True), info["config_hash"], info["seed"],
                         info["chunk_size"], now()))
        self._run(go)

    def done_chunks(self, eval_key: str) -> set[tuple[int, int]]:
        rows = self.select("SELECT start, stop FROM chunks WHERE eval_key=?", (eval_key,))
        return {(a, b) for a, b in rows}

    def commit_chunk(self, eval_key: str, *, start: int, stop: int, index: int, seed: int, batch_size: int,
                     seconds: float, device: str, flags: Sequence[str], ids: Sequence[str],
                     records: Sequence[dict], worker: str = "", plan: Plan | None = None) -> Commit:
        """Store a finished chunk, its per-sample records and the worker that computed it atomically, and mark
        its lease done.

        A chunk already stored with the same sample ids and records is left as it is (a retried or duplicated
        commit); with other records it is refused.

        Returns:
            Whether this commit stored the chunk, and how many chunks of ``plan`` are still missing after it.

        Raises:
            ValueError: when the records do not cover the chunk.
            StoreError: when the chunk is stored with other records (naming the evaluation, the chunk and the
                workers), or the store fails.
        """
        if len(records) != stop - start or len(ids) != stop - start:
            raise ValueError(f"chunk [{start}, {stop}) got {len(records)} records")
        rows = [(eval_key, start, stop, start + i, str(sid), json.dumps(rec, sort_keys=True))
                for i, (sid, rec) in enumerate(zip(ids, records, strict=True))]

        def go() -> Commit:
            with self._tx():
                self._sql.lock_eval(eval_key)
                prior = self._x("SELECT worker FROM chunks WHERE eval_key=? AND start=? AND stop=?",
                                (eval_key, start, stop)).fetchone()
                if prior is not None:
                    self._check_same(eval_key, start, stop, rows, prior[0], worker)
                else:
                    self._insert_chunk(rows, (eval_key, start, stop, index, seed, batch_size, seconds, device,
                                              json.dumps(list(flags)), now(), worker))
                return Commit(prior is None, None if plan is None else self._missing(eval_key, plan))
        return self._run(go)

    def _insert_chunk(self, rows: list[tuple], chunk: tuple) -> None:
        eval_key, start, stop, index, worker = chunk[0], chunk[1], chunk[2], chunk[3], chunk[10]
        self._x("DELETE FROM samples WHERE eval_key=? AND start=? AND stop=?", (eval_key, start, stop))
        self._sql.executemany("INSERT INTO samples VALUES (?,?,?,?,?,?)", rows)
        self._x(f"INSERT INTO chunks ({_CHUNK_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", chunk)
        self._x("INSERT INTO leases (eval_key, start, stop, chunk_index, owner, expires, heartbeat, claims, done) "
                f"VALUES (?,?,?,?,?,0,{self._sql.clock},0,1) ON CONFLICT (eval_key, start, stop) DO UPDATE SET "
                "owner=excluded.owner, expires=0, heartbeat=excluded.heartbeat, done=1",
                (eval_key, start, stop, index, worker))

    def _check_same(self, eval_key: str, start: int, stop: int, rows: list[tuple], prior: str, worker: str) -> None:
        stored = self._x("SELECT sample_id, record FROM samples WHERE eval_key=? AND start=? AND stop=? ORDER BY idx",
                         (eval_key, start, stop)).fetchall()
        new = [(r[4], r[5]) for r in rows]
        if [tuple(s) for s in stored] == new:
            return
        pairs = zip(stored[:len(new)], new[:len(stored)], strict=True)
        first = next((i for i, (a, b) in enumerate(pairs) if tuple(a) != b), min(len(stored), len(new)))
        raise StoreError(f"{self._sql.where}: evaluation {eval_key} chunk [{start}, {stop}) is already stored (by "
                         f"{prior or 'an earlier run'}) with other records than {worker or 'this run'} computed "
                         f"(first difference at example {start + first}); the stored chunk is kept: check that both "
                         "ran the same vitbench, data and device, or use another store")

    def _in_plan(self, plan: Plan) -> tuple[str, tuple]:
        """A WHERE clause (and its parameters) selecting the chunk rows of ``plan``."""
        return (f"start < ? AND stop = {self._sql.least}(start + ?, ?)", (plan.n, plan.chunk_size, plan.n))

    def _missing(self, eval_key: str, plan: Plan) -> int:
        where, args = self._in_plan(plan)
        done = self._x(f"SELECT COUNT(*) FROM chunks WHERE eval_key=? AND {where}", (eval_key, *args)).fetchone()[0]
        return len(plan) - int(done)

    def missing(self, eval_key: str, plan: Plan) -> int:
        """Chunks of ``plan`` not stored yet."""
        return self._run(lambda: self._missing(eval_key, plan))

    def records(self, eval_key: str, plan: Iterable[tuple[int, int]]) -> list[dict]:
        """Per-sample records of the planned chunks, in sample order."""
        out: list[dict] = []
        for start, stop in plan:
            rows = self.select("SELECT record FROM samples WHERE eval_key=? AND start=? AND stop=? ORDER BY idx",
                               (eval_key, start, stop))
            if len(rows) != stop - start:
                raise StoreError(f"{self._sql.where}: chunk [{start}, {stop}) of evaluation {eval_key} is "
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
            rows = self.select("SELECT idx, sample_id, record FROM samples WHERE eval_key=? AND start=? AND stop=? "
                               "ORDER BY idx", (eval_key, start, stop))
            out += [(int(i), str(sid), json.loads(rec)) for i, sid, rec in rows]
        return out

    def first_records(self, eval_key: str, limit: int) -> list[dict]:
        """The first ``limit`` stored per-sample records of an evaluation, in sample order (e.g. for plots)."""
        rows = self.select("SELECT record FROM samples WHERE eval_key=? ORDER BY idx LIMIT ?", (eval_key, limit))
        return [json.loads(r[0]) for r in rows]

    def chunk_info(self, eval_key: str, plan: Iterable[tuple[int, int]]) -> list[dict]:
        out = []
        for start, stop in plan:
            rows = self.select("SELECT flags, batch_size, seconds, device FROM chunks WHERE eval_key=? AND start=? "
                               "AND stop=?", (eval_key, start, stop))
            if rows:
                flags, batch, seconds, device = rows[0]
                out.append({"flags": json.loads(flags), "batch_size": batch, "seconds": seconds, "device": device})
        return out

    # -- leases -----------------------------------------------------------------------------------------------
    def plan_leases(self, eval_key: str, plan: Plan) -> int:
        """Make sure every chunk of ``plan`` that is not stored has a lease row; returns how many are missing."""
        def go() -> int:
            with self._tx():
                done = {(a, b) for a, b in self._x("SELECT start, stop FROM chunks WHERE eval_key=?",
                                                   (eval_key,)).fetchall()}
                rows = [(eval_key, a, b, i) for i, a, b in plan.chunks() if (a, b) not in done]
                if rows:
                    self._sql.executemany("INSERT INTO leases (eval_key, start, stop, chunk_index) VALUES (?,?,?,?) "
                                          "ON CONFLICT DO NOTHING", rows)
                return len(rows)
        return self._run(go)

    def claim(self, eval_key: str, plan: Plan, owner: str, lease_s: float) -> Claim:
        """Lease the first chunk of ``plan`` that is not stored and not held by a live lease of another worker
        (rows are made by :meth:`plan_leases`); the lease lasts ``lease_s`` seconds unless renewed."""
        for _ in range(3):  # PostgreSQL: a row locked and changed by a racing claim may hide a free one (LIMIT 1)
            claim = self._run(lambda: self._claim_once(eval_key, plan, owner, lease_s))
            if claim.lease is not None or claim.missing <= claim.leased:
                return claim
        return claim

    def _claim_once(self, eval_key: str, plan: Plan, owner: str, lease_s: float) -> Claim:
        where, args = self._in_plan(plan)
        clock = self._sql.clock
        with self._tx():
            row = self._x(f"SELECT start, stop, chunk_index, owner FROM leases WHERE eval_key=? AND done=0 AND "
                          f"{where} AND (owner='' OR owner=? OR expires < {clock}) ORDER BY start LIMIT 1"
                          f"{self._sql.skip_locked}", (eval_key, *args, owner)).fetchone()
            if row is not None:
                start, stop, index, previous = row
                self._x(f"UPDATE leases SET owner=?, expires={clock} + ?, heartbeat={clock}, claims=claims + ? "
                        "WHERE eval_key=? AND start=? AND stop=?",
                        (owner, float(lease_s), int(previous != owner), eval_key, start, stop))
                return Claim(Lease(index, start, stop, previous if previous not in ("", owner) else ""), -1, -1)
            missing = self._missing(eval_key, plan)
            leased = self._x(f"SELECT COUNT(*) FROM leases WHERE eval_key=? AND done=0 AND {where} AND owner<>'' "
                             f"AND owner<>? AND expires >= {clock}", (eval_key, *args, owner)).fetchone()[0]
            return Claim(None, missing, int(leased))

    def renew(self, eval_key: str, lease: Lease, owner: str, lease_s: float) -> bool:
        """Extend a held lease by ``lease_s`` seconds from now; False when the worker no longer holds it."""
        clock = self._sql.clock

        def go() -> bool:
            cur = self._x(f"UPDATE leases SET expires={clock} + ?, heartbeat={clock} WHERE eval_key=? AND start=? "
                          "AND stop=? AND owner=? AND done=0",
                          (float(lease_s), eval_key, lease.start, lease.stop, owner))
            return cur.rowcount > 0
        return self._run(go)

    def release(self, eval_key: str, lease: Lease, owner: str) -> None:
        """Give a held, unfinished lease back (the worker stops: interrupted, preempted)."""
        self._run(lambda: self._x("UPDATE leases SET owner='', expires=0 WHERE eval_key=? AND start=? AND stop=? "
                                  "AND owner=? AND done=0", (eval_key, lease.start, lease.stop, owner)))

    def expire(self, eval_key: str, owner: str) -> int:
        """End the live leases ``owner`` holds on an evaluation now (a worker known to be dead); returns how many."""
        return self._run(lambda: self._x("UPDATE leases SET expires=0 WHERE eval_key=? AND owner=? AND done=0",
                                         (eval_key, owner)).rowcount)

    def lease_owners(self, eval_key: str) -> list[str]:
        """Workers holding live leases on an evaluation's unfinished chunks."""
        rows = self.select(f"SELECT DISTINCT owner FROM leases WHERE eval_key=? AND done=0 AND owner<>'' AND "
                           f"expires >= {self._sql.clock} ORDER BY owner", (eval_key,))
        return [r[0] for r in rows]

    def clock(self) -> float:
        """The database's clock (seconds since the epoch) that lease expiries are written in."""
        return float(self.select(f"SELECT {self._sql.clock}")[0][0])

    def merge_rows(self, evals: Sequence[tuple], chunks: Sequence[tuple[tuple, Callable[[], list[tuple]]]],
                   runs: Sequence[tuple]) -> int:
        """Insert rows copied from another store in one transaction (see :func:`vitbench.store_admin.merge`):
        evaluations (the 13 columns of ``evals``), chunks (the columns of ``chunks``) each with a function that
        reads its (idx, sample_id, record) samples, and runs (every column but run_id); returns the samples
        inserted."""
        def go() -> int:
            inserted = 0
            with self._tx():
                for row in evals:
                    self._x(f"INSERT INTO evals VALUES ({','.join('?' * 13)}) ON CONFLICT DO NOTHING", row)
                for chunk, read in chunks:
                    rows = [(chunk[0], chunk[1], chunk[2], idx, sid, rec) for idx, sid, rec in read()]
                    self._insert_chunk(rows, chunk)
                    inserted += len(rows)
                for run in runs:
                    self._sql.insert_id(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({','.join('?' * 16)})", run,
                                        "run_id")
            return inserted
        return self._run(go)

    # -- runs -------------------------------------------------------------------------------------------------
    def add_run(self, *, eval_key: str, model: str, dataset: str, data_fingerprint: str, label_space: str,
                suite: str, config: dict, n_examples: int, seed: int, metrics: dict, flags: list,
                provenance: dict, seconds: float, cached: bool, details: dict | None = None,
                created: str | None = None) -> int:
        values = (eval_key, model, dataset, data_fingerprint, label_space, suite, json.dumps(config, sort_keys=True),
                  n_examples, seed, json.dumps(metrics), json.dumps(flags), json.dumps(provenance, sort_keys=True),
                  created or now(), seconds, int(cached), json.dumps(details or {}))

        def go() -> int:
            with self._tx():
                return self._sql.insert_id(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({','.join('?' * 16)})",
                                           values, "run_id")
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
        return [self._run_row(r) for r in self.select(query + " ORDER BY runs.run_id", args)]

    @staticmethod
    def _run_row(r: tuple) -> RunRow:
        details = json.loads(r[18] or "{}")
        return RunRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], r[9], json.loads(r[10]),
                      json.loads(r[11]), json.loads(r[12]), r[13], r[14], bool(r[15]), r[16] or "", r[17],
                      details.get("columns", []), details.get("plots", []))

    def _has_details(self) -> bool:
        return "details" in self.columns("runs")


def default_location() -> str | Path:
    """``VITBENCH_STORE`` (a SQLite path or a ``postgresql://`` URL), else ``VITBENCH_HOME/results.sqlite``."""
    override = os.environ.get("VITBENCH_STORE")
    if override:
        return override if "://" in override else Path(override).expanduser()
    from vitbench.paths import home
    return home() / "results.sqlite"


def open_store(location: str | os.PathLike | None = None, *, timeout: float | None = None,
               existing: bool = False) -> Store:
    """Open a store (default: :func:`default_location`), waiting up to ``VITBENCH_STORE_TIMEOUT`` seconds
    (default 60) for another process's lock; with ``existing``, a SQLite path must name a file."""
    wait = timeout if timeout is not None else store_timeout()
    return Store(location if location is not None else default_location(), timeout=wait, existing=existing)


@contextmanager
def using_store(location: str | os.PathLike | None) -> Iterator[None]:
    """Within the block, the default store is ``location`` (None: unchanged), for this process and the worker
    processes it starts (the CLI's ``--store``)."""
    if location is None:
        yield
        return
    before = os.environ.get("VITBENCH_STORE")
    os.environ["VITBENCH_STORE"] = os.fspath(location)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("VITBENCH_STORE", None)
        else:
            os.environ["VITBENCH_STORE"] = before


def store_timeout() -> float:
    """``VITBENCH_STORE_TIMEOUT`` in seconds (default 60)."""
    import math
    text = os.environ.get("VITBENCH_STORE_TIMEOUT", "60")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"VITBENCH_STORE_TIMEOUT={text!r} is not a number of seconds >= 0 (e.g. 60)")
    return value
