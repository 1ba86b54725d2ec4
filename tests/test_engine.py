"""The engine on both store backends: chunk plans and seeds, cache hits, chunk reuse, resume after interruption,
OOM back-off, leases (taken over when expired or dead, given back on Ctrl-C), and a torchrun rank's share."""

import os
from dataclasses import dataclass

import pytest
import torch

from vitbench.data import open_dataset
from vitbench.engine import Engine, Options, SuiteRun, chunk_seed, plan_chunks
from vitbench.store import open_store
from vitbench.suites import register
from vitbench.suites.base import Metric, Suite, SuiteOutput
from vitbench.suites.pgd_sweep import PGDSweepConfig
from vitbench.zoo.schema import load_zoo


@dataclass(frozen=True)
class ProbeConfig:
    fail_at_chunk: int = -1


CALLS: list = []


@register
class ProbeSuite(Suite):
    """A test suite: records each sample's chunk seed and a random draw, can interrupt at a chunk."""

    name = "test_probe"
    Config = ProbeConfig
    summary = "test-only suite: chunk seeds and interruptions"

    def run(self, model, chunk, config, ctx):
        CALLS.append((chunk.index, ctx.batch_size))
        if chunk.index == config.fail_at_chunk:
            raise KeyboardInterrupt
        with torch.no_grad():
            pred = torch.cat([model(chunk.x[i:i + ctx.batch_size]) for i in range(0, len(chunk.x), ctx.batch_size)])
        noise = torch.rand(len(chunk.y), generator=chunk.generator("probe"))
        return SuiteOutput([{"correct": bool(p == t), "draw": float(d)}
                            for p, t, d in zip(pred.argmax(1).tolist(), chunk.y.tolist(), noise.tolist(), strict=True)])

    def aggregate(self, records, config):
        return {"accuracy": Metric(sum(r["correct"] for r in records) / len(records)),
                "draw_sum": Metric(sum(r["draw"] for r in records))}


@pytest.fixture(autouse=True)
def each_backend(on_store):
    """Every test here runs once on a SQLite file and once on a fresh PostgreSQL database."""
    return on_store


def _engine(n=35, chunk=10, batch=64, seed=0):
    return Engine(open_store(), Options(seed=seed, n_examples=n, chunk_size=chunk, batch_size=batch, device="cpu"))


def _job(**kw):
    return SuiteRun("test_probe", ProbeConfig(**kw))


def test_plan_and_seeds():
    assert plan_chunks(35, 10) == [(0, 0, 10), (1, 10, 20), (2, 20, 30), (3, 30, 35)]
    assert chunk_seed(0, 1) == chunk_seed(0, 1) != chunk_seed(0, 2) != chunk_seed(1, 1)


def test_cache_hit_loads_no_model(tiny_zoo, monkeypatch):
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    first = _engine().run(entry, data, _job())
    assert not first.cached

    def boom(*a, **k):
        raise AssertionError("model loaded on a cache hit")
    monkeypatch.setattr("vitbench.engine.load_model", boom)
    again = _engine().run(entry, data, _job())
    assert again.cached and again.metrics["draw_sum"].value == first.metrics["draw_sum"].value


def test_larger_run_reuses_smaller_runs_chunks(tiny_zoo):
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    _engine(n=30).run(entry, data, _job())
    CALLS.clear()
    _engine(n=50).run(entry, data, _job())
    assert [c[0] for c in CALLS] == [3, 4]


def test_interrupted_run_resumes_from_first_missing_chunk(tiny_zoo, monkeypatch, tmp_path):
    """Ctrl-C during chunk 2: chunks 0-1 stay stored, the rerun computes only 2 and 3, numbers equal a fresh run."""
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    job = _job()
    real_run = ProbeSuite.run

    def flaky(self, model, chunk, config, ctx):
        if chunk.index == 2 and not getattr(flaky, "done", False):
            flaky.done = True
            raise KeyboardInterrupt
        return real_run(self, model, chunk, config, ctx)
    monkeypatch.setattr(ProbeSuite, "run", flaky)
    with pytest.raises(KeyboardInterrupt):
        _engine().run(entry, data, job)
    CALLS.clear()
    resumed = _engine().run(entry, data, job)
    assert [c[0] for c in CALLS] == [2, 3]
    monkeypatch.setenv("VITBENCH_STORE", str(tmp_path / "fresh.sqlite"))
    fresh = _engine().run(entry, data, job)
    assert resumed.metrics == fresh.metrics and not resumed.cached


def test_oom_backoff_continues_with_smaller_batches(tiny_zoo, monkeypatch, tmp_path):
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    from vitbench.zoo import load as load_mod
    real = load_mod.load_model

    def limited(*args, **kwargs):
        loaded = real(*args, **kwargs)
        forward = loaded.model.forward

        def guarded(x):
            if len(x) > 4:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return forward(x)
        loaded.model.forward = guarded
        return loaded
    monkeypatch.setattr("vitbench.engine.load_model", limited)
    CALLS.clear()
    result = _engine(n=20, batch=32).run(entry, data, _job())
    assert [b for _, b in CALLS] == [32, 16, 8, 4, 4]
    monkeypatch.setenv("VITBENCH_STORE", str(tmp_path / "plain.sqlite"))
    monkeypatch.setattr("vitbench.engine.load_model", real)
    plain = _engine(n=20, batch=4).run(entry, data, _job())
    assert result.metrics == plain.metrics


def test_label_space_mismatch_is_refused(tiny_zoo, tmp_path):
    from vitbench.errors import DataError
    text = tiny_zoo.read_text().replace("dataset: digits", "dataset: imagenet").replace(
        "num_classes: 10", "num_classes: 10")
    tiny_zoo.write_text(text)
    with pytest.raises(DataError, match="predicts imagenet labels but 'digits' has digits labels"):
        _engine().run(load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits"), _job())


def test_pgd_sweep_results_do_not_depend_on_batch_size(tiny_zoo, monkeypatch, tmp_path):
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    job = SuiteRun("pgd_sweep", PGDSweepConfig(norm="linf", eps=(0.01, 0.02), steps=(3,)))
    big = _engine(n=20, batch=64).run(entry, data, job)
    records_big = open_store().records(big.eval_key, [(0, 10), (10, 20)])
    monkeypatch.setenv("VITBENCH_STORE", str(tmp_path / "small.sqlite"))
    small = _engine(n=20, batch=3).run(entry, data, job)
    records_small = open_store().records(small.eval_key, [(0, 10), (10, 20)])
    assert [r["robust"] for r in records_big] == [r["robust"] for r in records_small]


def test_suite_example_cap_selects_chunks_without_changing_the_key(tiny_zoo):
    from vitbench.suites.corruptions import CorruptionsConfig
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    capped = SuiteRun("corruptions", CorruptionsConfig(corruptions=("brightness",), severities=(1,), n_examples=20))
    full = SuiteRun("corruptions", CorruptionsConfig(corruptions=("brightness",), severities=(1,)))
    engine = _engine(n=30)
    first = engine.run(entry, data, capped)
    assert first.n_examples == 20
    assert engine.key(entry, data, capped)[0] == engine.key(entry, data, full)[0]
    assert open_store().done_chunks(first.eval_key) == {(0, 10), (10, 20)}
    second = engine.run(entry, data, full)
    assert second.n_examples == 30 and open_store().done_chunks(first.eval_key) == {(0, 10), (10, 20), (20, 30)}


def test_a_rank_computes_its_share_and_sends_it_to_rank_0_without_a_store(tiny_zoo, monkeypatch):
    """Under torchrun a rank r > 0 has no store: it gets the stored chunks from rank 0, computes the missing
    chunks with i % world == r and sends each one's records to rank 0."""
    from vitbench import engine as E
    from vitbench.suites.clean import CleanConfig
    sent = []
    monkeypatch.setattr(E, "dist_world", lambda: (1, 2))
    monkeypatch.setattr(E, "_broadcast", lambda value: {(0, 10)})  # rank 0 says chunk 0 is stored
    monkeypatch.setattr(E, "_gather", lambda value, world: sent.append(value))
    engine = Engine(None, Options(n_examples=60, chunk_size=10, device="cpu"))
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    job = SuiteRun("clean", CleanConfig())
    assert engine.pending(entry, data, job) == 30
    assert engine.run(entry, data, job) is None
    assert [(c.index, c.start, c.stop, len(c.records)) for c in sent if c is not None] == \
        [(1, 10, 20, 10), (3, 30, 40, 10), (5, 50, 60, 10)]
    assert len(sent) == 3 and sent[0].worker.endswith("/rank1")  # rank 0 has chunks 2, 4: three rounds


def _foreign_lease(key, plan, owner, lease_s):
    store = open_store()
    store.plan_leases(key, plan)
    return store.claim(key, plan, owner, lease_s).lease


def test_an_expired_lease_of_another_machine_is_taken_over(tiny_zoo, caplog):
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    engine = _engine(n=20)
    key, info = engine.key(entry, data, _job())
    open_store().ensure_eval(key, info)
    assert _foreign_lease(key, engine.plan(data, _job()), "elsewhere:1:cafe0000", -1.0).start == 0
    CALLS.clear()
    result = engine.run(entry, data, _job())
    assert [c[0] for c in CALLS] == [0, 1] and result is not None and not result.cached
    assert "took over chunk [0, 10) from worker elsewhere:1" in caplog.text
    assert open_store().select("SELECT start, claims FROM leases ORDER BY start") == [(0, 2), (10, 1)]


def test_a_live_lease_of_a_dead_local_worker_is_taken_over_without_waiting(tiny_zoo):
    """kill -9 then rerun: the dead process's lease (60 s left) is ended at once because its pid is gone."""
    import subprocess
    import sys

    from vitbench.leases import worker_id
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    engine = _engine(n=20)
    key, info = engine.key(entry, data, _job())
    open_store().ensure_eval(key, info)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = worker_id().replace(f":{os.getpid()}:", f":{gone.stdout.strip()}:")
    assert _foreign_lease(key, engine.plan(data, _job()), owner, 60.0).start == 0
    CALLS.clear()
    assert engine.run(entry, data, _job()) is not None and sorted(c[0] for c in CALLS) == [0, 1]


def test_ctrl_c_gives_the_lease_back(tiny_zoo):
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    with pytest.raises(KeyboardInterrupt):
        _engine(n=20).run(entry, data, _job(fail_at_chunk=1))
    assert open_store().select("SELECT start, owner, done FROM leases ORDER BY start")[1] == (10, "", 0)


def test_a_shared_worker_leaves_a_job_stored_before_it_started_to_its_launcher(tiny_zoo):
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    assert _engine(n=20).run(entry, data, _job()) is not None
    shared = Engine(open_store(), Options(n_examples=20, chunk_size=10, device="cpu"), shared=True)
    assert shared.run(entry, data, _job()) is None
    assert len(open_store().runs()) == 1
