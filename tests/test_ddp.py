"""DDP under torchrun: 2 CPU processes on gloo train, keep every rank in sync, and write loadable checkpoints."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from conftest import subprocess_env

TINY_ARGS = ["--arch", "vit_tiny_patch16_224", "--arch-arg", "img_size=32", "--arch-arg", "patch_size=8",
             "--arch-arg", "depth=1", "--arch-arg", "embed_dim=32", "--arch-arg", "num_heads=2"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _run(args: list, cwd, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=subprocess_env(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=timeout)


def test_torchrun_trains_the_light_recipe_and_registers_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "run"
    res = _run(TORCHRUN + ["-m", "vitbench.cli.main", "train", "light-recipe", *TINY_ARGS, "--epochs", "1",
                           "--eps", "0.05", "--set", "warmup_epochs=0", "--set", "eps_warmup_epochs=0",
                           "--set", "val_examples=20", "--out", out, "--register", "t.ddp"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    saved = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    # each rank: half of the 1167 training images (1297 less the 130 held out for model selection)
    assert saved["epoch"] == 0 and saved["step"] == -(-1167 // 2) // 64
    weights = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(weights[k], saved["model"][f"net.{k}"]) for k in weights)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0] and log[0]["eps"] == 0.05 and "val_pgd10" in log[0]
    assert "holdout_pgd10" in log[0] and saved["selection"]["epoch"] == 1                 # rank 0 selects
    assert res.stdout.count("registered t.ddp") == 1                                  # rank 0 only
    from vitbench.zoo.load import load_model
    from vitbench.zoo.schema import load_zoo
    model = load_model(load_zoo(tmp_path / "model_zoo.yaml").get("t.ddp"), device="cpu").model  # sha256 checked
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


RANK_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    import torch.distributed as dist
    from vitbench.training import loop
    from vitbench.training.config import load_config

    recipe, out = sys.argv[1], Path(sys.argv[2])
    config = load_config(recipe, cli={"epochs": 1, "arch": "vit_tiny_patch16_224", "arch_args": {
        "img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}},
        sets=["warmup_epochs=0", "val_data=null", "recipe_args.corruptor_lr=0.5"] if recipe == "rspc" else
             ["warmup_epochs=0", "val_data=null", "recipe_args.tau=1e-9"])
    seen = {}
    real_setup = loop.get_recipe(recipe).setup
    def setup(model, config, device):
        seen["model"], seen["state"] = model, real_setup(model, config, device)
        return seen["state"]
    loop.get_recipe(recipe).setup = setup
    loop.train(config, out=out, device="cpu")
    state = {"model." + k: v for k, v in seen["model"].state_dict().items()}
    for name, obj in seen["state"].items():
        if isinstance(obj, torch.nn.Module):
            state.update({name + "." + k: v for k, v in obj.state_dict().items()})
    torch.save(state, out / f"rank{dist.get_rank()}.pt")
""")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["rspc", "nullspace"])
def test_ranks_end_with_identical_model_and_recipe_state(recipe, tmp_path):
    script = tmp_path / "rank_state.py"
    script.write_text(RANK_SCRIPT)
    res = _run(TORCHRUN + [script, recipe, tmp_path / "out"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = (torch.load(tmp_path / "out" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    recipe_keys = [k for k in a if not k.startswith("model.")]
    assert recipe_keys and a.keys() == b.keys()                                        # corruptor / token noise
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), [k for k in a if not torch.allclose(a[k], b[k])]
