"""The store on both backends (SQLite file, PostgreSQL database): atomic and idempotent chunk commits, leases
(claim, renew, take over, release), concurrent writers, one schema; SQLite's lock and corruption messages and its
migrations; PostgreSQL's connection errors."""

import json
import sqlite3
import threading

import pytest

from vitbench.errors import ConfigError, StoreError
from vitbench.store import SCHEMA_VERSION, Plan, Store


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


def _commit(store, start, records=None, *, key="k", worker="w", plan=None, size=2):
    records = records if records is not None else [{"x": start + i} for i in range(size)]
    return store.commit_chunk(key, start=start, stop=start + len(records), index=start // 2, seed=start,
                              batch_size=2, seconds=0.1, device="cpu", flags=[], ids=[str(start + i) for i in
                                                                                       range(len(records))],
                              records=records, worker=worker, plan=plan)


@pytest.fixture
def store(store_url):
    store = Store(store_url)
    store.ensure_eval("k", _info())
    yield store
    store.close()


def test_chunk_commit_is_all_or_nothing(store):
    with pytest.raises(ValueError):
        store.commit_chunk("k", start=0, stop=2, index=0, seed=1, batch_size=2, seconds=0.1, device="cpu", flags=[],
                           ids=["a", "b"], records=[{"x": 1}])
    assert store.done_chunks("k") == set()
    store.commit_chunk("k", start=0, stop=2, index=0, seed=1, batch_size=2, seconds=0.1, device="cpu", flags=["f"],
                       ids=["a", "b"], records=[{"x": 1}, {"x": 2.5}])
    assert store.done_chunks("k") == {(0, 2)}
    assert store.records("k", [(0, 2)]) == [{"x": 1}, {"x": 2.5}]
    assert store.chunk_info("k", [(0, 2)]) == [{"flags": ["f"], "batch_size": 2, "seconds": 0.1, "device": "cpu"}]


def test_a_second_commit_of_a_chunk_is_a_no_op_or_refused(store):
    plan = Plan(4, 2)
    assert _commit(store, 0, plan=plan, worker="first") == _commit_result(True, 1)
    assert _commit(store, 0, plan=plan, worker="second") == _commit_result(False, 1)  # same records: nothing written
    with pytest.raises(StoreError) as err:
        _commit(store, 0, [{"x": 0}, {"x": 99}], worker="third")
    message = str(err.value)
    assert "evaluation k chunk [0, 2) is already stored (by first)" in message and "third" in message
    assert "first difference at example 1" in message and "\n" not in message
    assert store.records("k", [(0, 2)]) == [{"x": 0}, {"x": 1}]
    assert store.select("SELECT worker FROM chunks WHERE eval_key='k'") == [("first",)]


def _commit_result(inserted, missing):
    from vitbench.store import Commit
    return Commit(inserted, missing)


def test_the_commit_that_completes_a_plan_says_so(store):
    plan = Plan(5, 2)  # chunks [0, 2), [2, 4), [4, 5)
    assert [_commit(store, a, plan=plan, size=b - a).missing for a, b in [(4, 5), (0, 2)]] == [2, 1]
    _commit(store, 2, plan=Plan(3, 2), size=1)  # [2, 3) belongs to a 3-example plan, not to this one
    assert store.missing("k", plan) == 1 and store.missing("k", Plan(3, 2)) == 0
    assert _commit(store, 2, plan=plan).missing == 0


def test_claims_hand_out_each_chunk_once_in_order(store):
    plan = Plan(6, 2)
    assert store.plan_leases("k", plan) == 3
    a = store.claim("k", plan, "a", 60)
    b = store.claim("k", plan, "b", 60)
    assert (a.lease.start, b.lease.start) == (0, 2)
    assert store.claim("k", plan, "a", 60).lease.start == 0  # a worker holding a lease gets it back (a retry)
    _commit(store, 0, plan=plan, worker="a")
    c = store.claim("k", plan, "a", 60)
    assert c.lease.start == 4
    none = store.claim("k", plan, "c", 60)
    assert none.lease is None and (none.missing, none.leased) == (2, 2)
    assert store.lease_owners("k") == ["a", "b"]


def test_an_expired_lease_is_taken_over_and_its_renewal_fails(store):
    plan = Plan(2, 2)
    store.plan_leases("k", plan)
    first = store.claim("k", plan, "dead", -1.0).lease  # a lease that has already expired
    assert first.taken_from == ""
    second = store.claim("k", plan, "alive", 60).lease
    assert (second.start, second.taken_from) == (0, "dead")
    assert not store.renew("k", first, "dead", 60) and store.renew("k", second, "alive", 60)
    assert store.select("SELECT owner, claims FROM leases WHERE eval_key='k'") == [("alive", 2)]


def test_release_and_expire_make_a_chunk_claimable_at_once(store):
    plan = Plan(4, 2)
    store.plan_leases("k", plan)
    lease = store.claim("k", plan, "a", 60).lease
    store.release("k", lease, "a")
    assert store.claim("k", plan, "b", 60).lease.start == 0
    assert store.expire("k", "b") == 1
    assert store.claim("k", plan, "c", 60).lease.taken_from == "b"


def test_a_committed_chunk_is_never_claimed_and_its_lease_is_done(store):
    plan = Plan(4, 2)
    _commit(store, 0, worker="x")  # committed before any lease existed (a torchrun rank 0, an older store)
    assert store.plan_leases("k", plan) == 1
    assert store.claim("k", plan, "a", 60).lease.start == 2
    _commit(store, 2, worker="a", plan=plan)
    assert store.claim("k", plan, "b", 60) == _claim(None, 0, 0)
    assert store.select("SELECT start, owner, done FROM leases WHERE eval_key='k' ORDER BY start") == \
        [(0, "x", 1), (2, "a", 1)]


def _claim(lease, missing, leased):
    from vitbench.store import Claim
    return Claim(lease, missing, leased)


def test_concurrent_writers_wait_instead_of_failing(store_url):
    Store(store_url).ensure_eval("k", _info())
    errors = []

    def write(offset):
        try:
            store = Store(store_url)
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
    assert not errors and len(Store(store_url).done_chunks("k")) == 20


def test_concurrent_claimers_compute_each_chunk_once_and_one_completes_the_plan(store_url):
    """Four threads, each with its own connection, claim and commit 24 chunks: every chunk is claimed once, and
    exactly one commit sees the plan complete."""
    plan = Plan(48, 2)
    setup = Store(store_url)
    setup.ensure_eval("k", _info())
    setup.plan_leases("k", plan)
    finishers, claimed, errors = [], [], []

    def worker(name):
        try:
            store = Store(store_url)
            while (lease := store.claim("k", plan, name, 60).lease) is not None:
                claimed.append(lease.start)
                if _commit(store, lease.start, worker=name, plan=plan).missing == 0:
                    finishers.append(name)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(claimed) == list(range(0, 48, 2)) and len(finishers) == 1
    assert setup.select("SELECT COUNT(*) FROM leases WHERE claims <> 1 OR done <> 1") == [(0,)]


def test_both_backends_hold_the_same_schema(store_url, tmp_path):
    reference = Store(tmp_path / "reference.sqlite")
    store = Store(store_url)
    for table in ("meta", "evals", "chunks", "samples", "runs", "leases"):
        assert store.columns(table) == reference.columns(table), table
    assert store.schema_version() == SCHEMA_VERSION


def test_runs_round_trip(store):
    run_id = store.add_run(eval_key="k", model="m", dataset="d", data_fingerprint="df", label_space="digits",
                           suite="clean", config={"a": 1}, n_examples=2, seed=0, metrics={"acc": [0.5, True]},
                           flags=["f"], provenance={"p": 1}, seconds=1.5, cached=False, details={"columns": [1]})
    (row,) = store.runs()
    assert (row.run_id, row.config, row.metrics, row.flags, row.cached, row.columns) == \
        (run_id, {"a": 1}, {"acc": [0.5, True]}, ["f"], False, [1])
    assert row.model_fingerprint == "f" and store.runs(model="other") == []


# -- SQLite: migrations of older stores --------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE evals (eval_key TEXT PRIMARY KEY, model TEXT NOT NULL, model_fingerprint TEXT NOT NULL,
    weights_sha256 TEXT, dataset TEXT NOT NULL, data_fingerprint TEXT NOT NULL, suite TEXT NOT NULL,
    suite_version INTEGER NOT NULL, config TEXT NOT NULL, config_hash TEXT NOT NULL, seed INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL, created TEXT NOT NULL);
CREATE TABLE chunks (eval_key TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL,
    chunk_index INTEGER NOT NULL, seed INTEGER NOT NULL, batch_size INTEGER NOT NULL, seconds REAL NOT NULL,
    device TEXT NOT NULL, flags TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (eval_key, start, stop));
CREATE TABLE samples (eval_key TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL, idx INTEGER NOT NULL,
    sample_id TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (eval_key, start, stop, idx));
CREATE TABLE runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, eval_key TEXT NOT NULL, model TEXT NOT NULL,
    dataset TEXT NOT NULL, data_fingerprint TEXT NOT NULL, label_space TEXT NOT NULL, suite TEXT NOT NULL,
    config TEXT NOT NULL, n_examples INTEGER NOT NULL, seed INTEGER NOT NULL, metrics TEXT NOT NULL,
    flags TEXT NOT NULL, provenance TEXT NOT NULL, created TEXT NOT NULL, seconds REAL NOT NULL,
    cached INTEGER NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO chunks VALUES ('k', 0, 2, 0, 1, 2, 0.1, 'cpu', '[]', 'then');
INSERT INTO samples VALUES ('k', 0, 2, 0, 'a', '{"x": 1}'), ('k', 0, 2, 1, 'b', '{"x": 2}');
"""


def test_a_version_1_store_is_migrated_and_keeps_its_chunks(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert {"details"} <= store.columns("runs") and {"worker"} <= store.columns("chunks")
    assert store.records("k", [(0, 2)]) == [{"x": 1}, {"x": 2}]
    store.ensure_eval("k", _info())
    assert store.plan_leases("k", Plan(4, 2)) == 1 and store.claim("k", Plan(4, 2), "a", 60).lease.start == 2


def test_an_old_store_opened_without_migration_is_read_as_it_is(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    store = Store(path, migrate=False)
    assert store.schema_version() == 1 and store.runs() == [] and store.done_chunks("k") == {(0, 2)}


# -- locations and PostgreSQL's errors ---------------------------------------------------------------------------

def test_a_url_of_another_database_is_one_line():
    with pytest.raises(ConfigError, match=r"SQLite file \(a path\) or on a PostgreSQL server .* not in a mysql://"):
        Store("mysql://lab/vitbench")


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path):
    url = f"postgresql://me:secret@/vitbench?host={tmp_path}&port=1"  # no server listens on that socket
    with pytest.raises(StoreError) as err:
        Store(url)
    message = str(err.value)
    assert "cannot connect to the PostgreSQL store" in message and "check that the server runs" in message
    assert "secret" not in message and "me:***@" in message and "\n" not in message


def test_a_missing_database_is_named(pg_server):
    with pytest.raises(StoreError, match="the database does not exist: create it"):
        Store(pg_server.url("no_such_database"))


def test_without_psycopg_the_extra_is_named(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name == "psycopg":
            raise ImportError("No module named 'psycopg'")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(StoreError, match=r"pip install 'vitbench\[postgres\]'"):
        Store("postgresql://localhost/vitbench")


def test_a_dropped_connection_is_reopened_and_a_retried_commit_stores_the_chunk_once(fresh_postgres_url):
    import psycopg
    store = Store(fresh_postgres_url)
    store.ensure_eval("k", _info())
    _commit(store, 0)
    with psycopg.connect(fresh_postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store._db.info.backend_pid,))
    assert _commit(store, 2, plan=Plan(4, 2)).missing == 0  # reconnected, then committed
    assert _commit(store, 2).inserted is False
    assert store.records("k", [(0, 2), (2, 4)]) == [{"x": 0}, {"x": 1}, {"x": 2}, {"x": 3}]
    assert json.loads(store.select("SELECT flags FROM chunks WHERE start=2")[0][0]) == []
