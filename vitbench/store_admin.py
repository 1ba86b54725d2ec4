"""Looking after stores: the state of jobs and their workers (``vitbench status``), merging stores (offline
nodes, shard files; SQLite and PostgreSQL on either side) and integrity checks (``vitbench store check``).

Everything goes through :class:`vitbench.store.Store` and its common SQL, so it works on both backends; nothing
here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from vitbench.errors import StoreError
from vitbench.leases import short
from vitbench.store import SCHEMA_VERSION, Plan, Store

#: the columns of an evaluation that its key is made of (another model name for the same weights is no conflict)
_KEYED = ("model_fingerprint", "data_fingerprint", "suite", "suite_version", "config_hash", "seed", "chunk_size")
_EVAL_COLUMNS = ("eval_key", "model", "model_fingerprint", "weights_sha256", "dataset", "data_fingerprint", "suite",
                 "suite_version", "config", "config_hash", "seed", "chunk_size", "created")
_RUN_FIELDS = ("eval_key", "model", "dataset", "data_fingerprint", "label_space", "suite", "config", "n_examples",
               "seed", "metrics", "flags", "provenance", "created", "seconds", "cached", "details")


# -- status -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerState:
    """A worker of an evaluation: chunks it committed, and the chunk it holds a live lease on, if any."""

    worker: str
    computed: int
    holding: str = ""  # "[start, stop)"
    heartbeat_s: float | None = None  # seconds since its last heartbeat
    expires_s: float | None = None  # seconds until that lease expires


@dataclass(frozen=True)
class EvalState:
    """One evaluation's chunks: stored, leased (live), left (neither), stale (expired leases), and its workers."""

    eval_key: str
    model: str
    suite: str
    dataset: str
    chunks: int
    done: int
    leased: int
    stale: int
    runs: int
    workers: list[WorkerState] = field(default_factory=list)

    @property
    def left(self) -> int:
        return self.chunks - self.done - self.leased

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("eval_key", "model", "suite", "dataset", "chunks", "done", "leased",
                                              "left", "stale", "runs")}
        out["workers"] = [w.__dict__ for w in self.workers]
        return out


def status(store: Store, *, model: str | None = None, suite: str | None = None,
           data: str | None = None) -> list[EvalState]:
    """Every evaluation in the store (optionally of one model, suite or dataset spec or kind) with its chunks and
    workers, most recent first."""
    evals = store.select("SELECT eval_key, model, suite, dataset FROM evals ORDER BY created DESC, eval_key")
    chosen = [e for e in evals if (model is None or e[1] == model) and (suite is None or e[2] == suite)
              and (data is None or data in (e[3], e[3].split(":")[0]))]
    return [_eval_state(store, *e) for e in chosen]


def _eval_state(store: Store, key: str, model: str, suite: str, dataset: str) -> EvalState:
    clock = store.clock()
    stored = store.select("SELECT start, stop, worker FROM chunks WHERE eval_key=?", (key,))
    leases = store.select("SELECT start, stop, owner, expires, heartbeat FROM leases WHERE eval_key=? AND done=0",
                          (key,))
    spans = {(a, b) for a, b, _ in stored} | {(a, b) for a, b, *_ in leases}
    live = [row for row in leases if row[2] and row[3] >= clock]
    stale = sum(1 for row in leases if row[2] and row[3] < clock)
    computed: dict[str, int] = {}
    for _, _, worker in stored:
        computed[worker] = computed.get(worker, 0) + 1
    workers = {w: WorkerState(short(w) if w else "(earlier runs)", n) for w, n in computed.items()}
    for a, b, owner, expires, beat in live:
        workers[owner] = WorkerState(short(owner), computed.get(owner, 0), f"[{a}, {b})", round(clock - beat, 1),
                                     round(expires - clock, 1))
    runs = store.select("SELECT COUNT(*) FROM runs WHERE eval_key=?", (key,))[0][0]
    return EvalState(key, model, suite, dataset, len(spans), len(stored), len(live), stale, int(runs),
                     sorted(workers.values(), key=lambda w: (w.holding == "", w.worker)))


def render_status(states: Sequence[EvalState]) -> str:
    """The jobs table and, when any worker is known, the workers table (Markdown)."""
    from tabulate import tabulate
    jobs = [[s.model, s.suite, s.dataset, s.eval_key[:12], s.chunks, s.done, s.leased, s.left, s.stale or "",
             s.runs] for s in states]
    text = tabulate(jobs, headers=["model", "suite", "data", "evaluation", "chunks", "done", "leased", "left",
                                   "stale leases", "runs"], tablefmt="github", disable_numparse=True)
    workers = [[s.model, s.suite, w.worker, w.computed, w.holding, _num(w.heartbeat_s), _num(w.expires_s)]
               for s in states for w in s.workers]
    if workers:
        text += "\n\n" + tabulate(workers, headers=["model", "suite", "worker", "chunks computed", "computing",
                                                    "heartbeat (s ago)", "lease left (s)"],
                                  tablefmt="github", disable_numparse=True)
    return text


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


# -- merge ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MergeResult:
    """What one source added to the destination, and what it had that was there already."""

    source: str
    evals: int
    chunks: int
    samples: int
    runs: int
    chunks_present: int
    runs_present: int

    def line(self, into: str) -> str:
        return (f"merged {self.source} into {into}: {self.evals} evaluations, {self.chunks} chunks "
                f"({self.samples} samples) and {self.runs} runs added; {self.chunks_present} chunks and "
                f"{self.runs_present} runs were there already")


def merge(source: Store, into: Store) -> MergeResult:
    """Copy what ``source`` has and ``into`` lacks (evaluations, chunks with their samples and workers, runs), in
    one transaction; merging again adds nothing.

    Raises:
        StoreError: (nothing merged) when a chunk or an evaluation of the same key is stored in both with other
            contents, naming the key and the chunk; when source and destination are the same store.
    """
    if _same(source, into):
        raise StoreError(f"store merge: {source.location} is the destination itself; name another store")
    evals = _evals(source)
    known = _evals(into)
    for key, row in evals.items():
        if key in known and any(row[c] != known[key][c] for c in _KEYED):
            other = next(c for c in _KEYED if row[c] != known[key][c])
            raise StoreError(f"store merge: evaluation {key} has another {other} in {source.location} than in "
                             f"{into.location}; nothing from {source.location} was merged")
    chunks = _chunks(source)
    present = {c[:3] for c in _chunks(into)}
    for key, start, stop, *_ in chunks:
        if (key, start, stop) in present:
            _same_chunk(source, into, key, start, stop)
    new_chunks = [c for c in chunks if c[:3] not in present]
    runs = _runs(source)
    have = set(_runs(into))
    new_runs = [r for r in runs if r not in have]
    samples = into.merge_rows([_eval_values(evals[k]) for k in evals if k not in known],
                              [(c, lambda c=c: _samples(source, *c[:3])) for c in new_chunks], new_runs)
    return MergeResult(source.location, len(set(evals) - set(known)), len(new_chunks), samples, len(new_runs),
                       len(chunks) - len(new_chunks), len(runs) - len(new_runs))


def _same(a: Store, b: Store) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "sqlite":
        return os.path.realpath(a.path) == os.path.realpath(b.path)
    return a.address == b.address


def _evals(store: Store) -> dict[str, dict]:
    rows = store.select(f"SELECT {', '.join(_EVAL_COLUMNS)} FROM evals")
    return {r[0]: dict(zip(_EVAL_COLUMNS, r, strict=True)) for r in rows}


def _eval_values(row: dict) -> tuple:
    return tuple(row[c] for c in _EVAL_COLUMNS)


def _chunks(store: Store) -> list[tuple]:
    worker = "worker" if "worker" in store.columns("chunks") else "''"
    return store.select(f"SELECT eval_key, start, stop, chunk_index, seed, batch_size, seconds, device, flags, "
                        f"created, {worker} FROM chunks ORDER BY eval_key, start, stop")


def _samples(store: Store, key: str, start: int, stop: int) -> list[tuple]:
    return store.select("SELECT idx, sample_id, record FROM samples WHERE eval_key=? AND start=? AND stop=? "
                        "ORDER BY idx", (key, start, stop))


def _same_chunk(source: Store, into: Store, key: str, start: int, stop: int) -> None:
    ours, theirs = _samples(source, key, start, stop), _samples(into, key, start, stop)
    if ours == theirs:
        return
    pairs = zip(ours, theirs, strict=False)  # a shorter side differs where it ends
    first = next((a[0] for a, b in pairs if a != b), start + min(len(ours), len(theirs)))
    raise StoreError(f"store merge: evaluation {key} chunk [{start}, {stop}) differs between {source.location} and "
                     f"{into.location} (first difference at example {first}); nothing from {source.location} was "
                     "merged")


def _runs(store: Store) -> list[tuple]:
    details = "details" if "details" in store.columns("runs") else "'{}'"
    fields = ", ".join(details if f == "details" else f for f in _RUN_FIELDS)
    return store.select(f"SELECT {fields} FROM runs ORDER BY run_id")


# -- check ------------------------------------------------------------------------------------------------------

def check(store: Store) -> list[str]:
    """Integrity problems, one line each (empty when there are none): the schema version, chunks whose record
    count is not their size, samples outside their chunk or without one, chunks and runs of unknown
    evaluations, runs whose chunks are not all stored, expired leases of gone workers, leases done without a
    chunk."""
    where = f"store {store.location}"
    version = store.schema_version()
    if version is None:
        return [f"{where}: no schema version: not a vitbench store"]
    problems = [] if version == SCHEMA_VERSION else [
        f"{where}: schema version {version}, this vitbench writes {SCHEMA_VERSION}: it is migrated by the next "
        "write (any bench), or read as it is"]
    problems += _chunk_problems(store, where)
    problems += _run_problems(store, where)
    if version >= 3:
        problems += _lease_problems(store, where)
    return problems


def _chunk_problems(store: Store, where: str) -> list[str]:
    out = []
    for key, a, b, n in store.select(
            "SELECT chunks.eval_key, chunks.start, chunks.stop, COUNT(samples.idx) FROM chunks LEFT JOIN samples "
            "ON samples.eval_key = chunks.eval_key AND samples.start = chunks.start AND samples.stop = chunks.stop "
            "GROUP BY chunks.eval_key, chunks.start, chunks.stop HAVING COUNT(samples.idx) <> chunks.stop - "
            "chunks.start ORDER BY chunks.eval_key, chunks.start"):
        out.append(f"{where}: evaluation {key} chunk [{a}, {b}) holds {n} records instead of {b - a}")
    for key, a, b, n in store.select("SELECT eval_key, start, stop, COUNT(*) FROM samples WHERE idx < start OR "
                                     "idx >= stop GROUP BY eval_key, start, stop ORDER BY eval_key, start"):
        out.append(f"{where}: evaluation {key} chunk [{a}, {b}) holds {n} records of examples outside it")
    for key, a, b in store.select(
            "SELECT DISTINCT samples.eval_key, samples.start, samples.stop FROM samples LEFT JOIN chunks ON "
            "chunks.eval_key = samples.eval_key AND chunks.start = samples.start AND chunks.stop = samples.stop "
            "WHERE chunks.eval_key IS NULL ORDER BY samples.eval_key, samples.start"):
        out.append(f"{where}: evaluation {key} has records of chunk [{a}, {b}) but no such chunk")
    for key, n in store.select("SELECT chunks.eval_key, COUNT(*) FROM chunks LEFT JOIN evals ON evals.eval_key = "
                               "chunks.eval_key WHERE evals.eval_key IS NULL GROUP BY chunks.eval_key"):
        out.append(f"{where}: {n} chunks of evaluation {key}, which is not in evals")
    return out


def _run_problems(store: Store, where: str) -> list[str]:
    out = []
    rows = store.select("SELECT runs.run_id, runs.eval_key, runs.model, runs.suite, runs.n_examples, "
                        "evals.chunk_size FROM runs LEFT JOIN evals ON evals.eval_key = runs.eval_key "
                        "ORDER BY runs.run_id")
    for run_id, key, model, suite, n, chunk_size in rows:
        if chunk_size is None:
            out.append(f"{where}: run {run_id} ({model} {suite}) refers to evaluation {key}, which is not in evals")
            continue
        missing = store.missing(key, Plan(int(n), int(chunk_size)))
        if missing:
            out.append(f"{where}: run {run_id} ({model} {suite}, {n} examples) lacks {missing} of its chunks of "
                       f"evaluation {key}")
    return out


def _lease_problems(store: Store, where: str) -> list[str]:
    out = []
    clock = store.clock()
    for key, a, b, owner, expires in store.select(
            "SELECT eval_key, start, stop, owner, expires FROM leases WHERE done=0 AND owner<>'' AND expires < ? "
            "ORDER BY eval_key, start", (clock,)):
        out.append(f"{where}: stale lease on evaluation {key} chunk [{a}, {b}): held by {short(owner)}, expired "
                   f"{clock - expires:.0f} s ago (its worker is gone; any worker on the job takes it over)")
    for key, a, b in store.select(
            "SELECT leases.eval_key, leases.start, leases.stop FROM leases LEFT JOIN chunks ON chunks.eval_key = "
            "leases.eval_key AND chunks.start = leases.start AND chunks.stop = leases.stop WHERE leases.done = 1 "
            "AND chunks.eval_key IS NULL ORDER BY leases.eval_key, leases.start"):
        out.append(f"{where}: evaluation {key} chunk [{a}, {b}) is marked done in leases but not stored")
    return out


def summary(store: Store) -> str:
    """One line: what the store holds."""
    count = {t: store.select(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("evals", "chunks", "samples", "runs")}
    return (f"store {store.location}: ok ({count['evals']} evaluations, {count['chunks']} chunks, "
            f"{count['samples']} samples, {count['runs']} runs, schema version {store.schema_version()})")
