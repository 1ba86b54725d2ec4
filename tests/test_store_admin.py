"""``--store``, ``vitbench status``, ``vitbench store merge`` and ``vitbench store check`` on both backends."""

from __future__ import annotations

import json

import pytest

from vitbench.store import Plan, Store

BENCH = ("bench", "digits-vit.light", "--data", "digits", "--suite", "clean", "--n-examples", "30", "--chunk-size",
         "10", "--device", "cpu")


def one_line(res, *needles):
    assert res.code == 2, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vitbench: error: "), res.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _execute(url: str, sql: str, params=()) -> None:
    store = Store(url)
    try:
        store._run(lambda: store._x(sql, params))
    finally:
        store.close()


def test_bench_and_leaderboard_take_a_store_and_leave_the_default_one_alone(cli, store_url, isolated_home):
    assert cli(*BENCH, "--store", store_url).code == 0
    board = cli("leaderboard", "--data", "digits", "--store", store_url)
    assert board.code == 0 and "| digits-vit.light" in board.out, board
    assert not (isolated_home / "results.sqlite").exists()
    assert [run.suite for run in Store(store_url).runs()] == ["clean"]


@pytest.mark.parametrize("location, says", [
    ("mysql://lab/vitbench", "not in a mysql:// store"),
    ("postgresql://me:pw@/vitbench?host=/nonexistent&port=1", "cannot connect to the PostgreSQL store"),
    ("postgresql://lab/vitbench?bogus_option=1", "not a PostgreSQL URL psycopg can read"),
])
def test_a_bad_store_is_one_line(cli, location, says):
    line = one_line(cli("leaderboard", "--store", location), says)
    assert ":pw@" not in line


def test_status_shows_chunks_done_leased_left_and_workers(cli, store_url):
    assert cli(*BENCH, "--store", store_url).code == 0
    store = Store(store_url)
    (key,) = [k for (k,) in store.select("SELECT eval_key FROM evals")]
    plan = Plan(60, 10)  # a larger run of the same evaluation, under way on two (pretend) workers
    store.plan_leases(key, plan)
    store.claim(key, plan, "node7:42:beef0001/slurm-99_1", 600)
    store.claim(key, plan, "node8:43:beef0002", -5)  # an expired lease: its worker is gone
    res = cli("status", "--store", store_url, "--json")
    assert res.code == 0, res
    (state,) = json.loads(res.out)
    assert (state["model"], state["suite"], state["chunks"], state["done"], state["leased"], state["left"],
            state["stale"], state["runs"]) == ("digits-vit.light", "clean", 6, 3, 1, 2, 1, 1)
    busy = [w for w in state["workers"] if w["holding"]]
    assert [(w["worker"], w["holding"]) for w in busy] == [("node7:42 (slurm-99_1)", "[30, 40)")]
    assert 0 < busy[0]["expires_s"] <= 600
    table = cli("status", "--store", store_url, "--suite", "clean")
    assert table.code == 0 and "| digits-vit.light | clean" in table.out and "node7:42 (slurm-99_1)" in table.out
    one_line(cli("status", "--store", store_url, "--model", "other"), "holds no evaluation that matches")


def _counts(url: str) -> tuple:
    store = Store(url)
    try:
        return tuple(store.select(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("evals", "chunks", "samples", "runs"))
    finally:
        store.close()


@pytest.mark.parametrize("direction", ["sqlite-into-store", "store-into-sqlite"])
def test_merge_is_idempotent_in_either_direction(cli, store_url, tmp_path, direction):
    shard = str(tmp_path / "shard.sqlite")
    assert cli(*BENCH, "--store", shard).code == 0
    assert cli(*BENCH, "--store", store_url, "--n-examples", "40").code == 0  # shares 3 chunks with the shard
    src, dst = (shard, store_url) if direction == "sqlite-into-store" else (store_url, shard)
    before = _counts(dst)
    first = cli("store", "merge", src, "--into", dst)
    assert first.code == 0, first
    after = _counts(dst)
    assert after[0] == before[0] and after[1] == 4 and after[3] == 2
    assert first.out.count("\n") == 1 and "3 chunks and 0 runs were there already" in first.out
    again = cli("store", "merge", src, "--into", dst)
    assert again.code == 0 and "0 evaluations, 0 chunks (0 samples) and 0 runs added" in again.out
    assert _counts(dst) == after
    assert cli("store", "check", dst).code == 0


def test_merge_refuses_a_chunk_with_other_records_and_merges_nothing(cli, store_url, tmp_path):
    shard = str(tmp_path / "shard.sqlite")
    assert cli(*BENCH, "--store", shard).code == 0
    assert cli(*BENCH, "--store", store_url).code == 0
    _execute(shard, "UPDATE samples SET record = '{\"correct\": false}' WHERE idx = 12")
    _execute(shard, "DELETE FROM runs")  # so that only the chunk could differ
    before = _counts(store_url)
    (key,) = [k for (k,) in Store(shard).select("SELECT eval_key FROM evals")]
    one_line(cli("store", "merge", shard, "--into", store_url), f"evaluation {key} chunk [10, 20) differs between",
             "first difference at example 12", "nothing from")
    assert _counts(store_url) == before


def test_merge_into_itself_is_refused(cli, store_url):
    Store(store_url).close()
    one_line(cli("store", "merge", store_url, "--into", store_url), "is the destination itself")


def test_check_names_each_problem_on_one_line(cli, store_url):
    assert cli(*BENCH, "--store", store_url).code == 0
    ok = cli("store", "check", store_url)
    assert ok.code == 0 and ": ok (1 evaluations, 3 chunks, 30 samples, 1 runs, schema version 3)" in ok.out
    store = Store(store_url)
    (key,) = [k for (k,) in store.select("SELECT eval_key FROM evals")]
    plan = Plan(60, 10)
    store.plan_leases(key, plan)
    store.claim(key, plan, "node8:43:beef0002", -5)
    _execute(store_url, "DELETE FROM samples WHERE idx = 15")
    _execute(store_url, "DELETE FROM chunks WHERE start = 20")
    res = cli("store", "check", store_url)
    assert res.code == 1
    lines = res.out.strip().splitlines()
    assert len(lines) == 5, res.out
    assert f"evaluation {key} chunk [10, 20) holds 9 records instead of 10" in lines[0]
    assert f"evaluation {key} has records of chunk [20, 30) but no such chunk" in lines[1]
    assert "run 1 (digits-vit.light clean, 30 examples) lacks 1 of its chunks" in lines[2]
    assert "stale lease on evaluation" in lines[3] and "chunk [30, 40): held by node8:43" in lines[3]
    assert f"evaluation {key} chunk [20, 30) is marked done in leases but not stored" in lines[4]
    assert "5 problems" in res.err
    _execute(store_url, "DELETE FROM evals")
    assert "which is not in evals" in cli("store", "check", store_url).out


def test_check_says_an_older_store_is_read_as_it_is(cli, tmp_path):
    import sqlite3

    from test_store import V1_SCHEMA
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    res = cli("store", "check", path)
    assert res.code == 1 and "schema version 1, this vitbench writes 3" in res.out, res
    assert "1 chunks of evaluation k, which is not in evals" in res.out  # V1_SCHEMA stores no evals row
    assert Store(path, migrate=False).schema_version() == 1  # checking changed nothing


def test_the_read_path_imports_no_torch(cli, store_url, tmp_path):
    """leaderboard, status, store check and store merge read a store of either backend without importing torch."""
    import subprocess
    import sys

    from conftest import subprocess_env
    assert cli(*BENCH, "--store", store_url).code == 0
    script = (
        "import sys\n"
        "from vitbench.cli.main import main\n"
        f"for argv in (['leaderboard', '--store', {store_url!r}], ['status', '--store', {store_url!r}],\n"
        f"             ['store', 'check', {store_url!r}],\n"
        f"             ['store', 'merge', {store_url!r}, '--into', {str(tmp_path / 'copy.sqlite')!r}]):\n"
        "    assert main(argv) == 0, argv\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| digits-vit.light | clean" in res.stdout and ": ok (" in res.stdout


@pytest.mark.parametrize("argv", [("store", "merge", "{missing}", "--into", "{into}"), ("store", "check", "{missing}"),
                                  ("status", "--store", "{missing}")])
def test_a_missing_store_file_is_named_and_never_created(cli, tmp_path, argv):
    """A typo in a source path must not merge "nothing" into a fresh store, nor report an empty one as ok."""
    missing, into = tmp_path / "typo.sqlite", tmp_path / "into.sqlite"
    res = cli(*(a.format(missing=missing, into=into) for a in argv))
    one_line(res, f"store {missing}: no such file")
    assert not missing.exists() and not into.exists()


def test_slurm_options_without_slurm_are_refused_before_anything_runs(cli, isolated_home):
    res = cli(*BENCH, "--partition", "gpu", "--time-min", "5")
    one_line(res, "--partition, --time-min only apply to a Slurm submission: add --slurm")
    assert not (isolated_home / "results.sqlite").exists()
