"""Patch sensitivity: mask size and placement, exact values at rho = 0 and for identity blocks, CNN skip,
XCiT channel maps, the adversarial variant, batch-size independence through the engine."""

import math

import pytest
import timm
import torch
from torch import nn

from conftest import TINY_VIT_ARGS
from vitbench.board.plots import plot_layer_stability
from vitbench.data import open_dataset
from vitbench.engine import Engine, Options, SuiteRun
from vitbench.errors import ConfigError
from vitbench.store import open_store
from vitbench.suites import get_suite, load_preset, resolve
from vitbench.suites.base import Chunk, Context
from vitbench.suites.patch_sensitivity import (
    FLAG_CHANNEL_MAPS,
    FLAG_NO_ATTENTION,
    FLAG_NO_BLOCKS,
    PatchSensitivityConfig,
    _occluded_input,
    num_occluded,
    occlude,
    patch_mask,
    pixel_mask,
    relative_change,
    row_cosine,
)
from vitbench.zoo.introspect import capture
from vitbench.zoo.schema import load_zoo
from vitbench.zoo.wrapper import RobustModel

SUITE = get_suite("patch_sensitivity")




def _wrap(net: nn.Module) -> RobustModel:
    return RobustModel(net, mean=(0.5,) * 3, std=(0.5,) * 3, name="t", num_classes=10, input_size=32).eval()


def _vit(seed: int = 0) -> RobustModel:
    torch.manual_seed(seed)
    return _wrap(timm.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT_ARGS))


def _chunk(n: int = 12, seed: int = 7) -> Chunk:
    gen = torch.Generator().manual_seed(seed)
    return Chunk(0, 0, n, torch.rand(n, 3, 32, 32, generator=gen), torch.arange(n) % 10, seed,
                 [str(i) for i in range(n)])


def _run(model, config, chunk=None, batch=64):
    return SUITE.run(model, chunk or _chunk(), config, Context(torch.device("cpu"), batch))


@pytest.mark.parametrize("rho, n, k", [(0.1, 64, 6), (0.1, 16, 2), (0.25, 16, 4), (0.0, 16, 0), (1.0, 16, 16),
                                       (0.5, 9, 5)])
def test_mask_covers_exactly_round_rho_n_patches(rho, n, k):
    assert num_occluded(rho, n) == k == math.floor(rho * n + 0.5)
    mask = patch_mask(40, n, rho, torch.Generator().manual_seed(0))
    assert mask.shape == (40, n) and mask.sum(1).tolist() == [k] * 40
    again = patch_mask(40, n, rho, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)  # fixed by the seed
    if 0 < k < n:
        assert len({tuple(m.tolist()) for m in mask}) > 1  # not the same patches for every image


def test_pixel_mask_and_occlusion_touch_only_selected_patches():
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, 5] = True  # row 1, column 1 of a 4 x 4 grid of 8-pixel patches
    px = pixel_mask(mask, (4, 4), 8)
    assert px.shape == (1, 1, 32, 32) and px.sum() == 64 and px[0, 0, 8:16, 8:16].eq(1).all()
    x, noise = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    out = occlude(x, px, noise)
    assert torch.equal(out[..., 8:16, 8:16], noise[..., 8:16, 8:16])
    out[..., 8:16, 8:16] = x[..., 8:16, 8:16]
    assert torch.equal(out, x)


def test_rho_zero_gives_identical_outputs_and_exact_stability():
    out = _run(_vit(), PatchSensitivityConfig(rho=0.0))
    assert out.flags == []
    for r in out.records:
        assert r["occluded_patches"] == 0 and r["patch_size"] == 8
        assert r["clean_correct"] == r["occluded_correct"] and r["confidence"] == r["confidence_occluded"]
        assert r["attn_stability"] == [1.0, 1.0] and r["repr_change"] == [0.0, 0.0]
    metrics = SUITE.aggregate(out.records, PatchSensitivityConfig(rho=0.0))
    assert metrics["confidence_drop"].value == 0.0 and metrics["attn_stability"].value == 1.0


def test_occlusion_lowers_stability_and_layer_metrics_have_the_right_shape():
    config = PatchSensitivityConfig(rho=0.5)
    out = _run(_vit(), config)
    for r in out.records:
        assert r["occluded_patches"] == 8 and len(r["attn_stability"]) == 2 and len(r["repr_change"]) == 2
        assert all(-1 <= a < 1 for a in r["attn_stability"]) and all(c > 0 for c in r["repr_change"])
    metrics = SUITE.aggregate(out.records, config)
    assert set(metrics) >= {"attn_stability_l0", "attn_stability_l1", "repr_change_l0", "repr_change_l1"}
    assert metrics["attn_stability"].value == pytest.approx(
        (metrics["attn_stability_l0"].value + metrics["attn_stability_l1"].value) / 2)
    labels = [c.label for c in SUITE.columns(config, metrics)]
    assert labels == ["Occluded acc (rho 0.5)", "Conf drop (rho 0.5)", "Attn stability (rho 0.5)",
                      "Repr change (rho 0.5)"]


def test_row_cosine_and_relative_change_on_hand_made_tensors():
    clean = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])           # (1, H=1, Q=2, K=2)
    occluded = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]]])         # cos 0 and 1/sqrt(2)
    assert row_cosine(torch.cat([clean, occluded])).item() == pytest.approx((0 + 2 ** -0.5) / 2)
    out = torch.tensor([[[3.0, 4.0]], [[3.0, 4.0]], [[0.0, 0.0]], [[6.0, 8.0]]])  # clean half, occluded half
    assert relative_change(out).tolist() == pytest.approx([1.0, 1.0])


def test_input_independent_attention_is_exactly_stable():
    """Zero query/key weights make every attention row uniform whatever the input: stability exactly 1."""
    model = _vit()
    for block in model.net.blocks:
        block.attn.qkv.weight.data.zero_()
        block.attn.qkv.bias.data.zero_()
    out = _run(model, PatchSensitivityConfig(rho=0.5))
    assert all(r["attn_stability"] == [1.0, 1.0] and min(r["repr_change"]) > 0 for r in out.records)


def test_identity_blocks_give_the_embedding_change_at_every_layer():
    """With identity blocks every block output is the token embedding: the change is known in closed form."""
    model = _vit()
    net = model.net
    net.blocks = nn.Sequential(nn.Identity(), nn.Identity(), nn.Identity())
    chunk, config = _chunk(6), PatchSensitivityConfig(rho=0.25)
    out = _run(model, config, chunk)
    assert out.flags == [FLAG_NO_ATTENTION]  # identity blocks have no attention: marked, not zero
    mask = pixel_mask(patch_mask(6, 16, 0.25, chunk.generator("mask")), (4, 4), 8)
    x_hat = occlude(chunk.x, mask, torch.rand(chunk.x.shape, generator=chunk.generator("noise")))
    with torch.no_grad():
        embed = lambda x: net.norm_pre(net._pos_embed(net.patch_embed((x - 0.5) / 0.5)))  # noqa: E731
        expected = ((embed(x_hat) - embed(chunk.x)).flatten(1).norm(dim=1) / embed(chunk.x).flatten(1).norm(dim=1))
    for r, e in zip(out.records, expected.tolist(), strict=True):
        assert r["attn_stability"] is None
        assert r["repr_change"] == pytest.approx([e] * 3, rel=1e-5)
    assert "attn_stability" not in SUITE.aggregate(out.records, config)


def test_cnn_gets_accuracy_only_with_a_marked_skip():
    torch.manual_seed(0)
    model = _wrap(timm.create_model("test_resnet", num_classes=10))
    config = PatchSensitivityConfig()
    out = _run(model, config)
    assert out.flags == [FLAG_NO_BLOCKS]
    assert all(r["repr_change"] is None and r["attn_stability"] is None for r in out.records)
    assert {r["patch_size"] for r in out.records} == {4} and {r["occluded_patches"] for r in out.records} == {6}
    metrics = SUITE.aggregate(out.records, config)
    assert set(metrics) == {"clean_accuracy", "occluded_accuracy", "confidence_drop"}
    assert [c.label for c in SUITE.columns(config, metrics)] == ["Occluded acc (rho 0.1)", "Conf drop (rho 0.1)"]
    with pytest.raises(ConfigError, match="does not divide"):
        _run(model, PatchSensitivityConfig(patch_size=5))
    with pytest.raises(ConfigError, match="occludes no patch"):
        _run(model, PatchSensitivityConfig(rho=0.005))


def test_xcit_channel_attention_maps_are_compared():
    torch.manual_seed(0)
    model = _wrap(timm.create_model("xcit_nano_12_p8_224", num_classes=10, img_size=32, depth=2))
    with torch.no_grad(), capture(model) as cap:
        model(torch.rand(2, 3, 32, 32))
    assert [tuple(a.shape) for a in cap.attention] == [(2, 4, 32, 32)] * 2  # (B, H, D/H, D/H)
    assert all(blk.attn.fused_attn == timm.layers.use_fused_attn(experimental=True) for blk in model.net.blocks)
    out = _run(model, PatchSensitivityConfig(rho=0.25), _chunk(4))
    assert FLAG_CHANNEL_MAPS in out.flags
    assert all(len(r["attn_stability"]) == 2 and all(-1 <= a <= 1 for a in r["attn_stability"]) for r in out.records)
    assert all(a < 1 for r in out.records for a in r["attn_stability"])  # the occluded maps differ: compared


def test_adversarial_variant_perturbs_only_the_selected_patches():
    config = PatchSensitivityConfig(rho=0.25, adversarial=True, norm="linf", eps=0.05, steps=3)
    chunk = _chunk(6)
    mask = pixel_mask(patch_mask(6, 16, 0.25, chunk.generator("mask")), (4, 4), 8)
    x_adv = _occluded_input(_vit(), chunk, config, mask, 64)
    diff = (x_adv - chunk.x).abs()
    assert diff[mask.expand_as(diff) == 0].max() == 0
    assert 0 < diff.max() <= 0.05 + 1e-6
    labels = [c.label for c in SUITE.columns(config, SUITE.aggregate(_run(_vit(), config, chunk).records, config))]
    assert labels[0] == "Patch-PGD acc (rho 0.25, Linf 0.05)"


def test_normalised_noise_follows_the_model_normalisation():
    """noise: normalised is U[0, 1) in normalised space: mean 0.5 / std 0.5 puts every noise pixel in [0.5, 1)."""
    chunk = _chunk(4)
    mask = pixel_mask(patch_mask(4, 16, 0.5, chunk.generator("mask")), (4, 4), 8)
    pixel = _occluded_input(_vit(), chunk, PatchSensitivityConfig(rho=0.5), mask, 64)
    normalised = _occluded_input(_vit(), chunk, PatchSensitivityConfig(rho=0.5, noise="normalised"), mask, 64)
    inside = mask.expand_as(pixel) == 1
    assert torch.allclose(normalised[inside], 0.5 + 0.5 * pixel[inside])
    assert torch.equal(normalised[~inside], chunk.x[~inside])


def test_config_validation():
    assert PatchSensitivityConfig(eps=0.1, norm="linf").eps is None  # ignored unless adversarial
    with pytest.raises(ValueError, match="rho"):
        PatchSensitivityConfig(rho=1.5)
    with pytest.raises(ValueError, match="needs norm and eps"):
        PatchSensitivityConfig(adversarial=True)
    configs = [resolve(i, overrides={}, default_threat=("linf", 0.1), where="t")
               for i in load_preset("analyses").items if i.suite == "patch_sensitivity"]
    assert [c.adversarial for c in configs] == [False, True] and configs[1].eps == 0.1


def test_engine_run_is_independent_of_batch_size_and_plots(tiny_zoo, monkeypatch, tmp_path):
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    job = SuiteRun("patch_sensitivity", PatchSensitivityConfig())
    runs = []
    for batch, store in ((64, "a.sqlite"), (5, "b.sqlite")):
        monkeypatch.setenv("VITBENCH_STORE", str(tmp_path / store))
        result = Engine(open_store(), Options(n_examples=20, chunk_size=10, batch_size=batch, device="cpu")).run(
            entry, data, job)
        runs.append(open_store().records(result.eval_key, [(0, 10), (10, 20)]))
    (a, b) = runs
    assert [r["occluded_correct"] for r in a] == [r["occluded_correct"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra["repr_change"] == pytest.approx(rb["repr_change"], rel=1e-4)
        assert ra["attn_stability"] == pytest.approx(rb["attn_stability"], rel=1e-4)
    path = plot_layer_stability(open_store().runs(), tmp_path / "plots" / "layers.png")
    assert path is not None and path.stat().st_size > 0
