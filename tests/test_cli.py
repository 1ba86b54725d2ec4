"""End-to-end: the CLI as a user drives it, on the embedded set; every bad input is one line and exit 2."""

import json
import subprocess

import pytest
import yaml

from conftest import save_tiny_vit, subprocess_env, vitbench_exe


def test_zoo_list_and_show(cli):
    listing = cli("zoo", "list")
    assert listing.code == 0
    for name in ("digits-vit.standard", "digits-vit.light", "digits-resnet.standard", "digits-resnet.light"):
        assert name in listing.out
    show = cli("zoo", "show", "digits-vit.light")
    assert show.code == 0
    assert "recipe: light-recipe" in show.out and "pinned in the zoo entry" in show.out


def test_register_then_verify_then_bench(cli, tmp_path):
    ckpt = save_tiny_vit(tmp_path / "mine.safetensors")
    zoo = tmp_path / "work" / "model_zoo.yaml"
    res = cli("zoo", "register", "mine.vit", "--arch", "vit_tiny_patch16_224", "--arch-arg", "img_size=32",
              "--arch-arg", "patch_size=8", "--arch-arg", "depth=2", "--arch-arg", "embed_dim=32",
              "--arch-arg", "num_heads=2", "--checkpoint", ckpt, "--dataset", "digits", "--norm", "linf",
              "--eps", "8/255")
    assert res.code == 0, res
    entry = yaml.safe_load(zoo.read_text())["models"]["mine.vit"]
    assert entry["num_classes"] == 10 and len(entry["weights"]["sha256"]) == 64
    assert entry["preprocessing"]["input_size"] == 32 and entry["threat_model"]["eps"] == pytest.approx(8 / 255)
    assert cli("zoo", "verify", "mine.vit").code == 0
    bench = cli("bench", "mine.vit", "--data", "digits", "--suite", "clean", "--n-examples", "20", "--json")
    assert bench.code == 0, bench
    result = json.loads(bench.out)[0]
    acc = result["metrics"]["clean/accuracy"]
    assert result["n_examples"] == 20 and 0 <= acc["value"] <= 1 and not result["cached"]
    assert acc["label"] == "Clean" and acc["n"] == 20 and acc["metric"] == "accuracy"
    again = json.loads(cli("bench", "mine.vit", "--data", "digits", "--suite", "clean", "--n-examples", "20",
                           "--json").out)[0]
    assert again["cached"] and again["metrics"] == result["metrics"]


def test_bench_and_leaderboard_on_bundled_models(cli):
    res = cli("bench", "digits-resnet.standard", "digits-resnet.light", "--data", "digits", "--preset", "demo",
              "--n-examples", "20", "--eps", "0.1", "--json")
    assert res.code == 0, res
    by = {(r["model"], r["suite"]): r["metrics"] for r in json.loads(res.out)}
    aa_id = "autoattack/custom[apgd-ce+apgd-t]/robust_accuracy@linf:0.1"
    std = by[("digits-resnet.standard", "autoattack")][aa_id]["value"]
    rob = by[("digits-resnet.light", "autoattack")][aa_id]["value"]
    assert rob > std + 0.3  # the adversarially trained CNN is clearly robust
    board = cli("leaderboard", "--data", "digits", "--json")
    rows = json.loads(board.out)
    assert [r["model"] for r in rows][0] == "digits-resnet.light"
    aa = rows[0]["metrics"]["autoattack/custom[apgd-ce+apgd-t]/robust_accuracy@linf:0.1"]
    assert aa["value"] == pytest.approx(rob) and aa["label"] == "AA[APGD-CE+APGD-T] Linf 0.1"
    lo, hi = aa["ci95"]
    assert lo < rob < hi and aa["n"] == 20 and aa["method"] == "wilson"
    md = cli("leaderboard", "--data", "digits")
    assert "| digits-resnet.light" in md.out and "PGD-10 Linf 0.1 (%)" in md.out


BAD_INPUTS = [
    (["bench", "no-such-model", "--data", "digits"], "unknown model 'no-such-model'"),
    (["bench", "digits-vit.lite", "--data", "digits"], "did you mean 'digits-vit.light'"),
    (["bench", "digits-vit.light", "--data", "digitz"], "unknown dataset kind 'digitz'"),
    (["bench", "digits-vit.light", "--data", "folder:/no/such/dir"], "does not exist"),
    (["bench", "digits-vit.light", "--data", "digits", "--suite", "autoatack"], "unknown suite 'autoatack'"),
    (["bench", "digits-vit.light", "--data", "digits", "--preset", "nope"], "unknown preset 'nope'"),
    (["bench", "digits-vit.light", "--data", "digits", "--eps", "four"], "eps 'four' does not parse"),
    (["bench", "digits-vit.light", "--data", "digits", "--norm", "l1"], "norm 'l1' is not supported"),
    (["zoo", "show", "nothing"], "unknown model 'nothing'"),
    (["leaderboard", "--compare", "nope"], "unknown reference leaderboard 'nope'"),
    (["train", "rspcc"], "unknown recipe 'rspcc'"),
    (["zoo", "register", "x", "--arch", "vit_tiny_patch16_224", "--checkpoint", "/no/file.safetensors"],
     "does not exist"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_one_line(cli, args, message):
    res = cli(*args)
    assert res.code == 2, res
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitbench: error:") and message in lines[0], res.err


def test_malformed_user_zoo(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nmodels:\n  x: {arch: a, weights: {source: s}, num_classes: 3, dataset: d, colour: 1}\n")
    res = cli("zoo", "list", "--zoo", bad)
    assert res.code == 2 and "unknown key 'colour'" in res.err


def test_wrong_checkpoint_leaves_zoo_untouched(cli, tmp_path):
    ckpt = save_tiny_vit(tmp_path / "w.safetensors", num_classes=5)
    zoo = tmp_path / "work" / "model_zoo.yaml"
    res = cli("zoo", "register", "x.vit", "--arch", "vit_tiny_patch16_224", "--arch-arg", "img_size=32",
              "--arch-arg", "patch_size=8", "--arch-arg", "depth=2", "--arch-arg", "embed_dim=32",
              "--arch-arg", "num_heads=2", "--checkpoint", ckpt, "--dataset", "digits")
    assert res.code == 2 and "predicts 5 classes, the entry declares 10" in res.err
    assert not zoo.exists()


def test_corrupt_store_is_one_line(cli, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "results.sqlite").write_bytes(b"garbage" * 1000)
    res = cli("leaderboard")
    assert res.code == 2 and "corrupt or not a vitbench store" in res.err


def test_console_script_end_to_end(tmp_path):
    """The installed `vitbench` command, as a user runs it."""
    env = subprocess_env(VITBENCH_HOME=str(tmp_path / "h"))
    out = subprocess.run(vitbench_exe() + ["bench", "digits-vit.light", "--data", "digits", "--suite", "clean",
                                           "--n-examples", "50"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| digits-vit.light" in out.stdout and "Clean (%)" in out.stdout
    bad = subprocess.run(vitbench_exe() + ["bench", "nope", "--data", "digits"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0


def test_leaderboard_plots_every_suite_present(cli, tmp_path):
    """--plot writes each stored suite's PNGs (real images, non-trivial size)."""
    from PIL import Image
    res = cli("bench", "digits-resnet.light", "digits-vit.light", "--data", "digits", "--suite",
              "pgd_sweep,corruptions,patch_sensitivity,semantic", "--eps", "0.1", "--n-examples", "10")
    assert res.code == 0, res
    out = tmp_path / "plots"
    assert cli("leaderboard", "--data", "digits", "--plot", out).code == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert set(names) == {"robustness_vs_eps.png", "corruptions_accuracy_vs_severity.png",
                          "patch_sensitivity_layers.png", "semantic_scores.png",
                          "semantic_examples_digits-resnet.light.png", "semantic_examples_digits-vit.light.png"}
    for path in out.glob("*.png"):
        with Image.open(path) as img:
            assert img.size[0] > 300 and img.size[1] > 200
