"""ImageNet-P perturbation sequences: lengths, seeds, frame 0, schedules, noise independence, crops, errors."""

from __future__ import annotations

import math

import pytest
import torch

import corruption_reference as R
from vitbench.data import image_ops as ops
from vitbench.data import perturbations as P
from vitbench.errors import ConfigError

RANDOM = ("gaussian_noise", "shot_noise", "speckle_noise", "snow", "spatter")
CASES = [(n, t) for n in P.ALL_PERTURBATIONS for t in P.SEQUENCE_TABLES]




def natural(b: int, size: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(R.natural_images(b, size, seed)).to(dtype)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def seq(x: torch.Tensor, name: str, table: str, seed: int = 0, **kw) -> torch.Tensor:
    return P.perturbation_sequence(x, name, gen(seed), table=table, **kw)


# ------------------------------------------------------------------------------------------ registry, errors

def test_registry_lists():
    assert P.TEST_PERTURBATIONS == ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
                                    "brightness", "translate", "rotate", "tilt", "scale")
    assert P.VALIDATION_PERTURBATIONS == ("speckle_noise", "gaussian_blur", "spatter", "shear")
    assert set(P.NOISE_PERTURBATIONS) == {"gaussian_noise", "shot_noise", "speckle_noise"}
    assert {n for n, i in P.PERTURBATIONS.items() if i.noise} == set(P.NOISE_PERTURBATIONS)
    assert {n for n, i in P.PERTURBATIONS.items() if i.validation} == set(P.VALIDATION_PERTURBATIONS)
    assert P.sequence_table_for(32, 32) == "cifar" and P.sequence_table_for(64, 64) == "cifar"
    assert P.sequence_table_for(96, 96) == "imagenet" and P.sequence_table_for(224, 224) == "imagenet"


def test_errors():
    x = natural(1, 16)
    with pytest.raises(ConfigError, match="did you mean 'rotate'"):
        P.perturbation_sequence(x, "rotat")
    for bad in (0, 32, True, 2.0):
        with pytest.raises(ConfigError, match="n_frames"):
            P.perturbation_sequence(x, "rotate", n_frames=bad, table="imagenet")
    with pytest.raises(ConfigError, match="crop_size"):
        P.perturbation_sequence(x, "rotate", crop_size=17)
    with pytest.raises(ConfigError, match="table"):
        P.perturbation_sequence(x, "rotate", table="tiny")
    with pytest.raises(ConfigError, match=r"\(B, 3, H, W\)"):
        P.perturbation_sequence(x[0], "rotate")


# ------------------------------------------------------------------------------------------ every sequence

@pytest.mark.parametrize("name, table", CASES)
def test_shape_range_and_seed(name, table):
    x = natural(2, 32, seed=1)
    out = seq(x, name, table, seed=3)
    frames = {"translate": {"imagenet": 41, "cifar": 16}, "motion_blur": {"imagenet": 31, "cifar": 21}}
    assert out.shape == (2, frames.get(name, {}).get(table, 31), 3, 32, 32) and out.dtype == x.dtype
    assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert float((out[:, 1:] - out[:, :-1]).abs().mean()) > 1e-4          # frames change
    assert torch.equal(out, seq(x, name, table, seed=3))
    assert torch.equal(out, seq(x, name, table, seed=4)) == (name not in RANDOM)


@pytest.mark.parametrize("name", ["translate", "rotate", "gaussian_noise", "snow", "spatter"])
def test_leading_frames(name):
    x = natural(1, 32, seed=2)
    full = seq(x, name, "imagenet")
    assert torch.equal(seq(x, name, "imagenet", n_frames=5), full[:, :5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", P.ALL_PERTURBATIONS)
def test_cuda_matches_cpu(name):
    x = natural(2, 32, seed=6)
    cpu, cuda = seq(x, name, "cifar"), seq(x.cuda(), name, "cifar")
    diff = (cuda.cpu() - cpu).abs()
    assert float(diff.mean()) < 1e-5 and float((diff > 1e-3).float().mean()) < 0.002


# ------------------------------------------------------------------------------------------ frame 0, schedules

@pytest.mark.parametrize("name", list(P.NOISE_PERTURBATIONS) + ["zoom_blur"])
def test_first_frame_is_the_clean_image(name):
    x = natural(2, 32, seed=3)
    for table in P.SEQUENCE_TABLES:
        assert torch.equal(seq(x, name, table)[:, 0], x)


def test_first_frame_is_the_first_setting():
    x = natural(2, 32, seed=4, dtype=torch.float64)
    assert torch.allclose(seq(x, "brightness", "imagenet")[:, 0], ops.shift_value(x, -0.3).clamp(0, 1))
    assert torch.allclose(seq(x, "brightness", "cifar")[:, 0], ops.shift_value(x, -0.225).clamp(0, 1))
    shifted = seq(x, "translate", "cifar")[:, 0]                         # 7 px to the left, black fill
    assert torch.equal(shifted[..., :25], x[..., 7:]) and float(shifted[..., 25:].abs().max()) == 0
    blurred = ops.motion_blur(x, 10, 3, torch.tensor([-120.0, -120.0])).clamp(0, 1)
    assert torch.allclose(seq(x, "motion_blur", "imagenet")[:, 0], blurred)
    assert torch.allclose(seq(x, "gaussian_blur", "imagenet")[:, 0], ops.gaussian_filter(x, 0.25, "nearest", 6.0))


def test_schedules():
    assert P.frame_parameters("translate", "imagenet") == [float(i) for i in range(-20, 21)]
    assert P.frame_parameters("translate", "cifar") == [float(i) for i in range(-7, 9)]
    brightness = P.frame_parameters("brightness", "imagenet")
    assert brightness[0] == -0.3 and brightness[15] == 0 and brightness[-1] == 0.3
    assert P.frame_parameters("motion_blur", "imagenet") == [float(4 * (i - 30)) for i in range(31)]
    assert P.frame_parameters("motion_blur", "cifar") == [float(9 * (i - 20)) for i in range(21)]
    assert P.frame_parameters("snow", "imagenet") == [float(4 * i - 150) for i in range(31)]
    assert P.frame_parameters("scale", "imagenet")[0] == 0.4 and P.frame_parameters("scale", "imagenet")[-1] == 1.15
    assert P.frame_parameters("scale", "cifar")[15] == 1.0 and P.frame_parameters("tilt", "cifar")[0] == -11.25
    assert P.frame_parameters("gaussian_blur", "cifar")[0] == 0.3
    for name in ("translate", "rotate", "tilt", "scale", "shear", "brightness", "motion_blur", "snow",
                 "gaussian_blur", "zoom_blur"):
        values = P.frame_parameters(name, "imagenet")
        assert all(a < b for a, b in zip(values, values[1:], strict=False)), name


@pytest.mark.parametrize("name, frame", [("rotate", 15), ("shear", 15), ("scale", 24)])
def test_middle_frame_is_the_identity(name, frame):
    x = natural(2, 32, seed=5, dtype=torch.float64)
    assert torch.allclose(seq(x, name, "imagenet")[:, frame], x, atol=1e-9)


def test_tilt_keeps_the_reference_zoom_at_zero_angle():
    """The reference's P1 puts points at z = 1, so the untilted frame is a zoom by f / (1 + f) about the centre."""
    h = w = 32
    f = math.sqrt(h * h + w * w)
    scale = f / (1 + f)
    expected = torch.tensor([[1 / scale, 0, w / 2 * (1 - 1 / scale)], [0, 1 / scale, h / 2 * (1 - 1 / scale)],
                             [0, 0, 1]], dtype=torch.float64)
    m = P.tilt_homography(h, w, 0.0)
    assert torch.allclose(m / m[2, 2], expected, atol=1e-12)


def test_monotone_effects_along_the_sequence():
    x = natural(2, 32, seed=6)
    means = seq(x, "brightness", "imagenet").mean(dim=(0, 2, 3, 4))
    assert bool((means[1:] > means[:-1]).all())
    bar = torch.zeros(1, 3, 32, 32)
    bar[..., 14:18] = 1                                                    # a vertical bar
    moved = seq(bar, "translate", "cifar")[0, :, 0, 5]                     # (T, W) one row
    centres = (moved * torch.arange(32)).sum(-1) / moved.sum(-1)
    assert torch.allclose(centres, 15.5 + torch.arange(-7, 9).float())
    blur = seq(x, "gaussian_blur", "imagenet")
    energy = ((blur[..., 1:, :] - blur[..., :-1, :]) ** 2).mean(dim=(0, 2, 3, 4))
    assert bool((energy[1:] < energy[:-1]).all())
    zoom = seq(x, "zoom_blur", "imagenet")
    drift = (zoom - zoom[:, :1]).abs().mean(dim=(0, 2, 3, 4))
    assert bool((drift[2:] > drift[1:-1]).all())
    square = torch.zeros(1, 3, 32, 32)
    square[..., 8:24, 8:24] = 1
    area = seq(square, "scale", "imagenet").sum(dim=(0, 2, 3, 4))   # bilinear, no antialias: steps may be flat
    assert bool((area[1:] >= area[:-1]).all()) and float(area[-1]) > 4 * float(area[0])


def test_spatter_drips_down_and_snow_moves():
    x = natural(2, 32, seed=7)
    water = (seq(x, "spatter", "cifar") - x.unsqueeze(1)).clamp(min=0).sum(dim=(0, 2, 4))   # (T, H)
    rows = (water * torch.arange(32)).sum(-1) / water.sum(-1).clamp_min(1e-9)   # CIFAR-P: 1 row per frame
    assert float(rows[8]) > float(rows[0]) + 3
    snow = seq(x, "snow", "imagenet")
    assert float(snow.mean()) > float(x.mean())
    assert float((snow[:, 0] - snow[:, -1]).abs().mean()) > 1e-3


# ------------------------------------------------------------------------------------------ noise frames

@pytest.mark.parametrize("name, table, level", [("gaussian_noise", "imagenet", 0.03), ("gaussian_noise", "cifar", 0.02),
                                                ("speckle_noise", "imagenet", 0.05)])
def test_noise_frames_are_independent_with_the_reference_level(name, table, level):
    x = torch.full((1, 3, 32, 32), 0.5)
    r = (seq(x, name, table) - x.unsqueeze(1))[0, 1:].flatten(1)         # (30, values)
    expected = level * (0.5 if name == "speckle_noise" else 1.0)
    assert float(r.std()) == pytest.approx(expected, rel=0.03)
    corr = torch.corrcoef(r)
    off_diagonal = corr[~torch.eye(len(corr), dtype=torch.bool)]
    assert float(off_diagonal.abs().max()) < 0.1


def test_shot_noise_frames():
    levels = torch.tensor([0.1, 0.4]).view(2, 1, 1, 1)
    x = levels.expand(2, 3, 32, 32).contiguous()
    frames = seq(x, "shot_noise", "imagenet")[:, 1:]
    var = frames.flatten(1).var(dim=1)
    assert torch.allclose(var, levels.flatten() / 300, rtol=0.05)         # ImageNet-P: Poisson(300 x) / 300


# ------------------------------------------------------------------------------------------ ImageNet-P crops

def test_crop_size_brings_content_from_outside_the_crop():
    x = natural(1, 48, seed=8)
    frames = seq(x, "translate", "imagenet", crop_size=32)
    assert frames.shape == (1, 41, 3, 32, 32)
    for i, shift in enumerate(range(-20, 21)):
        if abs(shift) <= 8:                                               # 8 px of margin on each side
            assert torch.equal(frames[:, i], x[..., 8:40, 8 - shift:40 - shift])
    noisy = seq(x, "gaussian_noise", "imagenet", crop_size=32)
    assert torch.equal(noisy[:, 0], x[..., 8:40, 8:40])
    assert P.perturbation_sequence(x, "rotate", crop_size=32).shape[1] == 31
