"""Safe loading: safetensors and weights_only torch files; nested keys and prefixes; unsafe pickles refused."""

import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

from conftest import TINY_VIT_ARGS, tiny_zoo_text
from vitbench.errors import CheckpointError
from vitbench.zoo.load import check_logits, load_model
from vitbench.zoo.schema import load_zoo, parse_zoo


def _net(num_classes=10, seed=1):
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", num_classes=num_classes, **TINY_VIT_ARGS)


def _entry(folder, source, extra_weights=""):
    text = tiny_zoo_text(source).replace("weights: {source: " + source + "}",
                                         "weights: {source: " + source + extra_weights + "}")
    path = folder / "model_zoo.yaml"
    path.write_text(text)
    return load_zoo(path).get("tiny-vit.test")


def test_nested_state_dict_with_module_prefix(tmp_path):
    net = _net()
    state = {"module." + k: v for k, v in net.state_dict().items()}
    torch.save({"model": state, "epoch": 3, "best_acc": 0.5}, tmp_path / "ckpt.pth")
    entry = _entry(tmp_path, "ckpt.pth", ", state_dict_key: model, strip_prefix: [module.]")
    loaded = load_model(entry)
    x = torch.rand(2, 3, 32, 32)
    expected = net.eval()((x - 0.5) / 0.5)
    assert torch.allclose(loaded.model(x), expected, atol=1e-6)
    assert check_logits(loaded.model, entry) == 10


def test_single_nested_dict_found_without_key(tmp_path):
    net = _net()
    torch.save({"state_dict": net.state_dict(), "args": "lr=0.1"}, tmp_path / "c.pt")
    load_model(_entry(tmp_path, "c.pt"))


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED",))


def test_arbitrary_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": _net().state_dict(), "hook": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="arbitrary unpickling.*refused, nothing in it was run"):
        load_model(_entry(tmp_path, "evil.pt"))
    assert not (tmp_path / "PWNED").exists()


def test_plain_pickle_file_is_refused(tmp_path):
    with open(tmp_path / "p.pkl", "wb") as fh:
        pickle.dump({"w": _Evil()}, fh)
    with pytest.raises(CheckpointError):
        load_model(_entry(tmp_path, "p.pkl"))


def test_wrong_number_of_classes(tmp_path):
    save_file(_net(num_classes=7).state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match="predicts 7 classes, the entry declares 10"):
        load_model(_entry(tmp_path, "w.safetensors"))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(_entry(tmp_path, "nothere.safetensors"))


def test_wrong_sha256(tmp_path):
    save_file(_net().state_dict(), str(tmp_path / "w.safetensors"))
    entry = _entry(tmp_path, "w.safetensors", ", sha256: '" + "0" * 64 + "'")
    with pytest.raises(CheckpointError, match="has sha256 .* the zoo entry says 0000"):
        load_model(entry)


def test_truncated_checkpoint(tmp_path):
    torch.save(_net().state_dict(), tmp_path / "t.pt")
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_model(_entry(tmp_path, "t.pt"))


def test_mismatched_architecture(tmp_path):
    torch.manual_seed(0)
    other = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=8, depth=3,
                              embed_dim=32, num_heads=2)
    save_file(other.state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match="does not fit the architecture.*unexpected, e.g. blocks.2"):
        load_model(_entry(tmp_path, "w.safetensors"))


def test_model_contract_takes_unit_pixels(tiny_zoo):
    loaded = load_model(load_zoo(tiny_zoo).get("tiny-vit.test"))
    assert loaded.model.patch_size == 8
    assert len(loaded.model.blocks) == 2
    assert not loaded.model.training


def test_parse_zoo_entry_name_key_rejected():
    text = tiny_zoo_text("x.safetensors").replace("    num_classes: 10", "    name: foo\n    num_classes: 10")
    with pytest.raises(Exception, match="unknown key 'name'"):
        parse_zoo(text, "z.yaml")



def test_robustbench_source_without_the_extra_names_it(tmp_path):
    """robustbench is an optional extra (broken on PyPI): its absence is one error naming the extra."""
    import importlib.util
    if importlib.util.find_spec("robustbench") is not None:
        pytest.skip("robustbench is installed")
    from vitbench.errors import VitbenchError
    text = tiny_zoo_text("x").replace("weights: {source: x}", "weights: {source: 'robustbench:Standard_R50'}")
    (tmp_path / "rb.yaml").write_text(text)
    with pytest.raises(VitbenchError, match=r"optional extra 'robustbench'.*pip install 'vitbench\[robustbench\]'"):
        load_model(load_zoo(tmp_path / "rb.yaml").get("tiny-vit.test"))
