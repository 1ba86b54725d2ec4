"""Every failure a user can cause is one line naming what was wrong and the fix, a non-zero exit, and nothing
lost or half-written (issue 9, "Failures")."""

from __future__ import annotations

import pytest
import torch


def one_line(res, *needles: str) -> str:
    """The single stderr line of a failed CLI run, checked to say each needle."""
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert res.code == 2, res
    assert len(lines) == 1 and lines[0].startswith("vitbench: error:"), res.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


BENCH = ("bench", "digits-vit.light", "--data", "digits", "--suite", "clean", "--n-examples", "10")


@pytest.mark.parametrize("device, gpus, needles", [
    ("nonsense", 0, ("'nonsense' is not a device", "cpu, cuda or cuda:N")),
    ("meta", 0, ("meta tensors hold shapes but no data",)),
    ("cuda", 0, ("no CUDA GPU is usable here", "--device cpu")),
    ("cuda:7", 0, ("no CUDA GPU is usable here",)),
    ("cuda:7", 2, ("this machine has 2 CUDA GPUs (cuda:0 to cuda:1)",)),
    ("xla", 0, ("runs on cpu, cuda or mps",)),
])
def test_bad_device_is_one_line(cli, monkeypatch, isolated_home, device, gpus, needles):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    one_line(cli(*BENCH, "--device", device), *needles)
    assert not (isolated_home / "results.sqlite").exists()  # refused before anything was stored


def test_compare_with_no_local_rows_does_not_suggest_allow_mismatch(cli):
    res = cli("leaderboard", "--compare", "robustbench-imagenet", "--allow-mismatch")
    line = one_line(res, "no local results")
    assert "--allow-mismatch" not in line


def _png_bytes(size: tuple[int, int] = (32, 32)) -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(side: int) -> bytes:
    """A valid PNG header claiming side x side pixels, with a tiny IDAT: 69 bytes, no pixels behind it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _folder(tmp_path, extra: dict[str, bytes]):
    root = tmp_path / "imgs"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            (root / cls / f"{i}.png").write_bytes(_png_bytes())
    for rel, data in extra.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data) if data else path.mkdir()
    return root


def _bench_folder(cli, root):
    return cli("bench", "digits-vit.light", "--data", f"folder:{root}?labels=digits", "--suite", "clean")


@pytest.mark.parametrize("extra, needles", [
    ({"a/bad.png": b"\x89PNG\r\n\x1a\n" + b"junk" * 100},
     ("image a/bad.png cannot be decoded", "corrupt or truncated")),
    ({"b/cut.png": _png_bytes((64, 64))[:90]}, ("image b/cut.png cannot be decoded",)),
    ({"a/huge.png": _bomb_png(30000)}, ("image a/huge.png has 900,000,000 pixels", "decompression bomb")),
])
def test_broken_images_are_one_line(cli, tmp_path, isolated_home, extra, needles):
    one_line(_bench_folder(cli, _folder(tmp_path, extra)), *needles)


def test_a_name_that_is_not_utf8_is_one_line(cli, tmp_path):
    import os
    root = _folder(tmp_path, {})
    with open(os.path.join(os.fsencode(root / "a"), b"caf\xe9.png"), "wb") as fh:
        fh.write(_png_bytes())
    one_line(_bench_folder(cli, root), "caf\\xe9.png' is not valid UTF-8", "rename it")


def test_an_empty_class_folder_is_named(cli, tmp_path):
    root = _folder(tmp_path, {"c": b""})
    one_line(_bench_folder(cli, root), f"class folder {root / 'c'} has no images", "remove the folder")


@pytest.mark.parametrize("labels, needles", [
    (["cat", "dog", "cat", "dog"], ("label column 'label' holds string values (e.g. 'cat')", "integer class indices")),
    ([0.0, 1.5, 2.0, 3.0], ("label column 'label' holds float64 values",)),
    ([0, None, 2, 3], ("label column 'label' has missing values",)),
])
def test_parquet_labels_that_are_not_class_indices_are_one_line(cli, tmp_path, labels, needles):
    import pyarrow as pa
    import pyarrow.parquet as pq
    image = {"bytes": _png_bytes(), "path": None}
    pq.write_table(pa.table({"image": [image] * 4, "label": labels}), tmp_path / "s.parquet")
    res = cli("bench", "digits-vit.light", "--data", f"parquet:{tmp_path / 's.parquet'}", "--suite", "clean")
    one_line(res, *needles)


TRAIN = ("train", "standard", "--epochs", "1", "--set", "warmup_epochs=0", "--set", "val_examples=10")


def _fake_last(path, *, truncate: bool):
    path.parent.mkdir(parents=True, exist_ok=True)
    if truncate:
        torch.save({"epoch": 0, "step": 1, "model": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(b"not a checkpoint at all" * 50)
    return path.read_bytes()


@pytest.mark.parametrize("truncate", [True, False])
def test_a_truncated_or_corrupt_last_pt_is_one_line_and_kept(cli, tmp_path, truncate):
    out = tmp_path / "run"
    before = _fake_last(out / "last.pt", truncate=truncate)
    one_line(cli(*TRAIN, "--out", out, "--resume"), f"{out / 'last.pt'} is truncated or corrupt", "restore a copy")
    assert (out / "last.pt").read_bytes() == before and not (out / "model.safetensors").exists()


def test_a_foreign_last_pt_is_one_line(cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"weights": torch.zeros(3)}, out / "last.pt")
    one_line(cli(*TRAIN, "--out", out, "--resume"), "is not a vitbench training checkpoint (no 'epoch')")


@pytest.mark.parametrize("bench, needles", [
    (("--bench", "demo", "--bench-data", "folder:/no/such/folder"), ("/no/such/folder does not exist",)),
    (("--bench", "nope"), ("unknown preset 'nope'",)),
    (("--bench", "demo"), ("suite autoattack", "needs norm and eps")),   # the standard recipe trains at eps 0
])
def test_train_bench_is_checked_before_training(cli, tmp_path, bench, needles):
    out = tmp_path / "run"
    one_line(cli(*TRAIN, "--out", out, "--register", "mine.x", *bench), *needles)
    assert not (out / "last.pt").exists() and not (tmp_path / "work" / "model_zoo.yaml").exists()


def test_vitbench_home_that_is_a_file(cli, tmp_path, monkeypatch):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("VITBENCH_HOME", str(home))
    one_line(cli(*BENCH), f"VITBENCH_HOME {home} is a file, not a folder", "set VITBENCH_HOME to a folder")
    assert home.read_text() == "not a folder"


def test_vitbench_home_that_cannot_be_created(cli, tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    monkeypatch.setenv("VITBENCH_HOME", str(blocker / "home"))
    one_line(cli("leaderboard"), f"VITBENCH_HOME {blocker / 'home'} cannot be created (Not a directory)")


@pytest.fixture
def stored_sweep(cli):
    res = cli("bench", "digits-resnet.light", "--data", "digits", "--suite", "pgd_sweep", "--eps", "0.1",
              "--n-examples", "8")
    assert res.code == 0, res


def test_plot_into_a_path_that_cannot_be_a_folder(cli, tmp_path, stored_sweep):
    blocker = tmp_path / "plots.png"
    blocker.write_text("x")
    one_line(cli("leaderboard", "--plot", blocker), f"--plot folder {blocker} is a file")
    one_line(cli("leaderboard", "--plot", blocker / "sub"), "cannot be created (Not a directory)")


def test_plot_into_an_unwritable_folder(cli, tmp_path, stored_sweep, monkeypatch):
    """Root ignores permissions, so the refusal the OS gives a user is simulated where matplotlib writes."""
    import matplotlib.figure

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", refuse)
    one_line(cli("leaderboard", "--plot", tmp_path / "plots"), "cannot write plots into", "(Permission denied)")


def test_out_that_cannot_be_written(cli, tmp_path, stored_sweep):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    one_line(cli("leaderboard", "--out", blocker / "board.md"), "cannot write --out", "nothing was written")
    one_line(cli("leaderboard", "--out", tmp_path), "is a folder: name a file")


@pytest.mark.parametrize("args, needles", [
    (("--eps", "1e308"), ("eps '1e308' is larger than any distance between two images",)),
    (("--eps", "2", "--norm", "linf"), ("L-inf eps 2 is above 1", "e.g. 2/255")),
    (("--eps", "1e9", "--norm", "linf"), ("is larger than any distance",)),
    (("--eps", "8"), ("L-inf eps 8 is above 1", "8/255")),       # norm from the model's threat model
])
def test_eps_beyond_the_pixel_range_is_refused(cli, args, needles):
    res = cli("bench", "digits-vit.light", "--data", "digits", "--suite", "autoattack", "--n-examples", "4", *args)
    line = one_line(res, *needles)
    assert "255000000000/255" not in line


def test_l2_eps_above_1_is_still_fine():
    from vitbench.threat import ThreatModel
    assert ThreatModel.parse("l2", "3.0").eps == 3.0
    with pytest.raises(Exception, match="L-inf eps 1.5 is above 1"):
        ThreatModel.parse("linf", "1.5")


def _zoo_file(tmp_path, **overrides):
    body = {"eps": "0.1", "num_classes": "10", "input_size": "32", "img_size": "32"}
    body.update(overrides)
    path = tmp_path / "zoo.yaml"
    path.write_text(f"""version: 1
models:
  big.one:
    arch: vit_tiny_patch16_224
    arch_args: {{img_size: {body['img_size']}, patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2}}
    weights: {{source: w.safetensors}}
    num_classes: {body['num_classes']}
    dataset: digits
    preprocessing: {{input_size: {body['input_size']}, crop_pct: 1.0}}
    threat_model: {{norm: linf, eps: {body['eps']}}}
""")
    return path


@pytest.mark.parametrize("override, needles", [
    ({"eps": "1.0e+308"}, ("models.big.one.threat_model", "larger than any distance")),
    ({"eps": "1e308"}, ("eps '1e308' is larger than any distance",)),
    ({"eps": "3"}, ("models.big.one.threat_model", "L-inf eps 3 is above 1")),
    ({"num_classes": "1000000000"}, ("num_classes 1000000000 must lie in [2, 100000]",)),
    ({"input_size": "100000000"}, ("input_size 100000000 must lie in [8, 4096]",)),
    ({"img_size": "100000000"}, ("arch_args.img_size 100000000 must lie in [1, 4096]",)),
])
def test_yaml_values_are_bounded_before_anything_is_built(cli, tmp_path, override, needles):
    import time
    start = time.perf_counter()
    one_line(cli("zoo", "list", "--zoo", _zoo_file(tmp_path, **override)), *needles)
    assert time.perf_counter() - start < 5


def test_a_preset_eps_beyond_the_pixel_range_is_refused(cli, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("suites:\n  - suite: pgd_sweep\n    norm: linf\n    eps: [0.1, 1.0e+308]\n")
    one_line(cli("bench", "digits-vit.light", "--data", "digits", "--preset", preset), "suite pgd_sweep",
             "larger than any distance")


def test_a_yaml_alias_bomb_is_refused_at_once(cli, tmp_path):
    import time
    lines = ["version: 1", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nmodels: {}\n")
    start = time.perf_counter()
    one_line(cli("zoo", "list", "--zoo", bomb), "YAML aliases would expand the document", "at most 10,000")
    assert time.perf_counter() - start < 5
    loop = tmp_path / "loop.yaml"
    loop.write_text("version: 1\nmodels: &m {x: *m}\n")
    one_line(cli("zoo", "list", "--zoo", loop), "a YAML alias refers to itself")


def test_yaml_anchors_of_normal_size_still_work(tmp_path):
    from vitbench.zoo.schema import read_zoo_file
    path = _zoo_file(tmp_path)
    text = path.read_text().replace("    preprocessing: {input_size: 32, crop_pct: 1.0}",
                                    "    preprocessing: &prep {input_size: 32, crop_pct: 1.0}")
    text += text.split("models:\n")[1].replace("big.one", "big.two").replace(
        "preprocessing: &prep {input_size: 32, crop_pct: 1.0}", "preprocessing: *prep")
    path.write_text(text)
    entries = read_zoo_file(path)
    assert entries["big.two"].preprocessing == entries["big.one"].preprocessing


def test_nan_weights_stop_the_bench_and_store_nothing(cli, tmp_path, isolated_home):
    from safetensors.torch import load_file, save_file

    from conftest import save_tiny_vit, tiny_zoo_text
    from vitbench.store import Store
    path = save_tiny_vit(tmp_path / "nan.safetensors")
    state = load_file(str(path))
    state["head.weight"][0, 0] = float("nan")
    save_file(state, str(path))
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(tiny_zoo_text(str(path)))
    res = cli("bench", "tiny-vit.test", "--zoo", zoo, "--data", "digits", "--suite", "clean,autoattack",
              "--n-examples", "10")
    one_line(res, "tiny-vit.test: weight head.weight holds 1 NaN or inf value", "nothing was evaluated")
    store = Store(isolated_home / "results.sqlite")
    assert store.runs() == [] and store._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 0


# -- the store: full disk, read-only file or folder, locks ------------------------------------------------------

CLEAN = ("bench", "digits-vit.light", "--data", "digits", "--suite", "clean", "--n-examples", "20")


def _store_counts(path) -> tuple[int, int]:
    import sqlite3
    with sqlite3.connect(path) as db:
        return (db.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
                db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])


def test_a_read_only_store_is_reported_as_such_and_still_read(cli, isolated_home, monkeypatch):
    """Root ignores file modes, so the store is opened the way SQLite opens a read-only file (mode=ro)."""
    import sqlite3
    assert cli(*CLEAN).code == 0
    before = _store_counts(isolated_home / "results.sqlite")
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda path, **kw: real(f"file:{path}?mode=ro", uri=True, **kw))
    line = one_line(cli(*CLEAN, "--seed", "1"), "is read-only", "results already stored are intact")
    assert "corrupt" not in line and "move it aside" not in line
    board = cli("leaderboard", "--data", "digits")
    assert board.code == 0 and "| digits-vit.light" in board.out, board
    monkeypatch.setattr(sqlite3, "connect", real)
    assert _store_counts(isolated_home / "results.sqlite") == before


def test_a_full_disk_is_reported_as_such_and_loses_nothing(cli, isolated_home, monkeypatch):
    import sqlite3
    assert cli(*CLEAN).code == 0
    before = _store_counts(isolated_home / "results.sqlite")

    class FullDisk(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql.lstrip().upper().startswith(("INSERT", "DELETE")):
                raise sqlite3.OperationalError("database or disk is full")
            return super().execute(sql, *args)

        def executemany(self, sql, rows):
            raise sqlite3.OperationalError("database or disk is full")
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda path, **kw: real(path, factory=FullDisk, **kw))
    line = one_line(cli(*CLEAN, "--seed", "1"), "the disk is full", "results already stored are intact")
    assert "corrupt" not in line and "move it aside" not in line
    monkeypatch.setattr(sqlite3, "connect", real)
    assert _store_counts(isolated_home / "results.sqlite") == before  # the failed chunk was rolled back


@pytest.mark.parametrize("name, text, says", [
    ("SQLITE_FULL", "database or disk is full", "the disk is full"),
    ("SQLITE_READONLY", "attempt to write a readonly database", "is read-only"),
    ("SQLITE_READONLY_DIRECTORY", "attempt to write a readonly database", "its folder"),
    ("SQLITE_CANTOPEN", "unable to open database file", "cannot be opened for writing"),
    ("SQLITE_IOERR_WRITE", "disk I/O error", "disk I/O error"),
    ("SQLITE_NOTADB", "file is not a database", "corrupt or not a vitbench store"),
    ("SQLITE_BUSY", "database is locked", "still locked by another process"),
    ("", "database or disk is full", "the disk is full"),   # an error raised without a result code
])
def test_store_errors_name_their_cause(tmp_path, name, text, says):
    import sqlite3

    from vitbench.store import Store
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorname = name
    message = str(Store(tmp_path / "s.sqlite")._error(exc))
    assert says in message
    assert ("move it aside" in message) == (says == "corrupt or not a vitbench store")


def test_a_locked_store_says_at_once_that_it_waits(tmp_path, caplog):
    import sqlite3
    import threading
    import time

    from vitbench.store import Store
    path = tmp_path / "s.sqlite"
    Store(path).close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(1.5, lambda: holder.execute("ROLLBACK"))
    release.start()
    start = time.time()
    with caplog.at_level("WARNING", logger="vitbench.store"):
        store = Store(path, timeout=30)
    waited = time.time() - start
    release.join()
    holder.close()
    assert 1.2 < waited < 10 and store.runs() == []
    said = [r for r in caplog.records if "locked by another process" in r.getMessage()]
    assert len(said) == 1 and "waiting up to 30 s" in said[0].getMessage()
    assert "VITBENCH_STORE_TIMEOUT" in said[0].getMessage()
    assert said[0].created - start < 1.0  # said at once, not after the wait


def test_store_timeout_must_be_a_number(cli, monkeypatch):
    monkeypatch.setenv("VITBENCH_STORE_TIMEOUT", "soon")
    one_line(cli("leaderboard"), "VITBENCH_STORE_TIMEOUT='soon' is not a number of seconds")


def test_a_store_path_that_is_a_folder(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("VITBENCH_STORE", str(tmp_path))
    one_line(cli("leaderboard"), f"store {tmp_path} is a folder")


# -- progress when stderr is not a terminal ----------------------------------------------------------------------

def test_long_work_reports_lines_when_stderr_is_not_a_terminal(cli, monkeypatch):
    from vitbench import runtime
    monkeypatch.delenv("VITBENCH_PROGRESS")                 # the default: stderr here is not a terminal
    monkeypatch.setattr(runtime, "PROGRESS_INTERVAL", 0.0)   # a line per chunk instead of one per 30 s
    res = cli("bench", "digits-vit.light", "--data", "digits", "--suite", "clean", "--n-examples", "30",
              "--chunk-size", "10")
    assert res.code == 0, res
    lines = [ln for ln in res.err.splitlines() if ln.startswith("vitbench: digits-vit.light clean:")]
    assert len(lines) == 3, res.err
    assert "33% in" in lines[0] and "10 examples at" in lines[0] and "examples/s" in lines[0] and "left" in lines[0]
    assert "100% in" in lines[-1] and "30 examples at" in lines[-1]
    again = cli("bench", "digits-vit.light", "--data", "digits", "--suite", "clean", "--n-examples", "30",
                "--chunk-size", "10")
    assert "vitbench: " not in again.err  # a cache hit has no work to report


def test_line_progress_heartbeat_while_a_chunk_runs(capsys):
    import time

    from vitbench.runtime import LineProgress
    progress = LineProgress(100, "m autoattack", "examples", interval=0.2)
    time.sleep(0.5)
    progress.advance(50, 50)
    progress.close()
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("vitbench: m autoattack: 0% in") and err[0].endswith("still working")
    assert "50% in" in err[-1] and "50 examples at" in err[-1]


@pytest.mark.parametrize("value, mode", [("0", "off"), ("1", "bar"), ("lines", "lines"), ("LINES", "lines")])
def test_vitbench_progress_modes(monkeypatch, value, mode):
    from vitbench.runtime import progress_mode
    monkeypatch.setenv("VITBENCH_PROGRESS", value)
    assert progress_mode() == mode


def test_vitbench_progress_typo_is_one_line(cli, monkeypatch):
    monkeypatch.setenv("VITBENCH_PROGRESS", "verbose")
    one_line(cli(*BENCH), "VITBENCH_PROGRESS='verbose' is not one of")


# -- smaller: help texts, hints ----------------------------------------------------------------------------------

def test_demo_help_shows_the_demo_defaults(cli):
    import re
    text = " ".join(cli("demo", "--help").out.split())
    assert "(default: digits)" in text and "(default: 100)" in text and "(default: 0.1)" in text
    assert re.search(r"--norm NORM linf or l2 \(default: linf\)", text)
    assert "(default: demo (standard with --standard))" in text and "(default: all)" not in text


def test_register_norm_help_is_about_training_not_presets(cli):
    text = " ".join(cli("zoo", "register", "--help").out.split())
    norm = text[text.index("--norm NORM"):text.index("--eps EPS radius")]
    assert "trained against" in norm and "preset's" not in norm


def test_unknown_model_hint_names_zoo_list(cli):
    one_line(cli("bench", "qqqqzzzzxx", "--data", "digits"), "list them with `vitbench zoo list`")


class Pickled:
    """A class a checkpoint can only hold by pickling it."""


def _register(cli, ckpt, *extra):
    return cli("zoo", "register", "x.vit", "--arch", "vit_tiny_patch16_224", "--arch-arg", "img_size=32",
               "--arch-arg", "patch_size=8", "--arch-arg", "depth=2", "--arch-arg", "embed_dim=32",
               "--arch-arg", "num_heads=2", "--checkpoint", ckpt, "--dataset", "digits", *extra)


def test_pickle_refusal_names_the_offending_global(cli, tmp_path):
    ckpt = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": Pickled()}, ckpt)
    line = one_line(_register(cli, ckpt), "needs arbitrary unpickling", f"Python global {Pickled.__module__}.Pickled")
    assert "\x1b[" not in line and "nothing in it was run" in line


def test_a_module_prefixed_checkpoint_gets_the_flag_to_add(cli, tmp_path):
    from safetensors.torch import load_file, save_file

    from conftest import save_tiny_vit
    path = save_tiny_vit(tmp_path / "ddp.safetensors")
    save_file({f"module.{k}": v for k, v in load_file(str(path)).items()}, str(path))
    one_line(_register(cli, path), "prefix 'module.'", "add `--strip-prefix module.`")
    res = _register(cli, path, "--strip-prefix", "module.")
    assert res.code == 0, res
