"""The results store: SQLite, one file (``VITBENCH_HOME/results.sqlite``).

Tables: ``evals`` (what an evaluation is: model, data, suite config, seed, chunk size), ``chunks`` (each chunk
committed with its samples in one transaction, so an interrupted run loses at most the chunk in flight),
``samples`` (per-sample records as JSON), ``runs`` (one per finished bench invocation: aggregated metrics, flags
and provenance). Leaderboards and reports are computed from it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vitbench.errors import StoreError

SCHEMA_VERSION = 1
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
    provenance TEXT NOT NULL, created TEXT NOT NULL, seconds REAL NOT NULL, cached INTEGER NOT NULL);
"""


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


class Store:
    """A connection to the results store.

    Raises:
        StoreError: when the file is locked by another process longer than ``timeout`` seconds, or is not a
            vitbench store (corrupt or another kind of file).
    """

    def __init__(self, path: Path, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def _init_schema(self) -> None:
        with self._tx():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema version {row[0]}, this vitbench uses "
                                 f"{SCHEMA_VERSION}: point VITBENCH_HOME elsewhere or upgrade vitbench")

    def _error(self, exc: sqlite3.DatabaseError) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(f"store {self.path} is locked by another process; wait for it to finish or use "
                              "another VITBENCH_HOME")
        return StoreError(f"store {self.path} is corrupt or not a vitbench store ({text}); move it aside "
                          "(results in it are lost) or set VITBENCH_HOME to another folder")

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self_inner):
                store._db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, kind, exc, tb):
                store._db.execute("COMMIT" if kind is None else "ROLLBACK")
                return False
        return _Tx()

    def _run(self, fn):
        try:
            return fn()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

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
                provenance: dict, seconds: float, cached: bool) -> int:
        def go():
            with self._tx():
                cur = self._db.execute(
                    "INSERT INTO runs (eval_key, model, dataset, data_fingerprint, label_space, suite, config, "
                    "n_examples, seed, metrics, flags, provenance, created, seconds, cached) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (eval_key, model, dataset, data_fingerprint, label_space, suite,
                     json.dumps(config, sort_keys=True), n_examples, seed, json.dumps(metrics), json.dumps(flags),
                     json.dumps(provenance, sort_keys=True), now(), seconds, int(cached)))
                return int(cur.lastrowid)
        return self._run(go)

    def runs(self, *, model: str | None = None, suite: str | None = None) -> list[RunRow]:
        """All runs (oldest first), optionally for one model or suite."""
        query = ("SELECT runs.*, evals.model_fingerprint, evals.weights_sha256 FROM runs "
                 "LEFT JOIN evals ON evals.eval_key = runs.eval_key")
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
        return [RunRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], r[9], json.loads(r[10]),
                       json.loads(r[11]), json.loads(r[12]), r[13], r[14], bool(r[15]), r[16] or "", r[17])
                for r in rows]


def open_store(path: Path | None = None, *, timeout: float | None = None) -> Store:
    """Open the default store (``VITBENCH_STORE`` or ``VITBENCH_HOME/results.sqlite``)."""
    import os

    from vitbench.paths import store_path
    wait = timeout if timeout is not None else float(os.environ.get("VITBENCH_STORE_TIMEOUT", "60"))
    return Store(path or store_path(), timeout=wait)
