"""The store refuses locked and corrupt files with one clear line, and commits chunks atomically."""

import sqlite3
import threading

import pytest

from vitbench.errors import StoreError
from vitbench.store import Store


def test_corrupt_store(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="corrupt or not a vitbench store"):
        Store(path)


def test_locked_store(tmp_path):
    path = tmp_path / "results.sqlite"
    Store(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            Store(path, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _info():
    return {"model": "m", "model_fingerprint": "f", "weights_sha256": "s", "dataset": "d", "data_fingerprint": "df",
            "suite": "clean", "suite_version": 1, "config": {}, "config_hash": "h", "seed": 0, "chunk_size": 2}


def test_chunk_commit_is_all_or_nothing(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.ensure_eval("k", _info())
    with pytest.raises(ValueError):
        store.commit_chunk("k", start=0, stop=2, index=0, seed=1, batch_size=2, seconds=0.1, device="cpu", flags=[],
                           ids=["a", "b"], records=[{"x": 1}])
    assert store.done_chunks("k") == set()
    store.commit_chunk("k", start=0, stop=2, index=0, seed=1, batch_size=2, seconds=0.1, device="cpu", flags=["f"],
                       ids=["a", "b"], records=[{"x": 1}, {"x": 2.5}])
    assert store.done_chunks("k") == {(0, 2)}
    assert store.records("k", [(0, 2)]) == [{"x": 1}, {"x": 2.5}]


def test_concurrent_writers_wait_instead_of_failing(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).ensure_eval("k", _info())
    errors = []

    def write(offset):
        try:
            store = Store(path)
            for i in range(10):
                start = offset + 2 * i
                store.commit_chunk("k", start=start, stop=start + 2, index=i, seed=0, batch_size=2, seconds=0,
                                   device="cpu", flags=[], ids=["a", "b"], records=[{}, {}])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=write, args=(o,)) for o in (0, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(Store(path).done_chunks("k")) == 20
