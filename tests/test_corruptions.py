"""ImageNet-C corruptions: registry, errors, agreement with the per-image numpy reference (same random draws),
noise statistics, structural effects of blur and weather, batch/seed/device behaviour."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

import corruption_reference as R
from vitbench.data import corruptions as C
from vitbench.data import image_ops as ops
from vitbench.errors import ConfigError

RANDOM = [n for n in C.ALL_CORRUPTIONS if not C.CORRUPTIONS[n].deterministic]
DETERMINISTIC = [n for n in C.ALL_CORRUPTIONS if C.CORRUPTIONS[n].deterministic]
CASES = [(n, s) for n in C.ALL_CORRUPTIONS for s in C.SEVERITIES]
#: 8-bit truncation steps inside the corruption: float32 rounding may flip a few pixels by 1/255
QUANTISED = ("snow", "spatter", "motion_blur")
#: float64 agreement is to rounding error, except where the reference itself runs in float32 (Pillow's 'F' mode)
EXACT = {"pixelate": 1e-6}




def natural(b: int, size: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(R.natural_images(b, size, seed)).to(dtype)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference(x: torch.Tensor, name: str, severity: int, draws: dict[str, torch.Tensor],
              table: str | None = None) -> np.ndarray:
    table = table or C.table_for(*x.shape[-2:])
    params = C.corruption_params(name, severity, table)
    return np.stack([R.corrupt_image(x[i].double().numpy(), name, params, {k: v[i].numpy() for k, v in draws.items()},
                                     table) for i in range(len(x))])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(float(((a.double() - b.double()) ** 2).mean()))


def gradient_energy(x: torch.Tensor) -> float:
    return float(((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., 1:] - x[..., :-1]) ** 2).mean())


# ------------------------------------------------------------------------------------------ registry, errors

def test_registry_lists():
    assert C.BENCHMARK_CORRUPTIONS == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
    assert set(C.EXTRA_CORRUPTIONS) == {"speckle_noise", "gaussian_blur", "spatter", "saturate"}
    assert C.NOISE_CORRUPTIONS == ("gaussian_noise", "shot_noise", "impulse_noise")
    assert list(C.CORRUPTIONS) == sorted(C.CORRUPTIONS, key=C.ALL_CORRUPTIONS.index) and len(C.CORRUPTIONS) == 19
    assert {i.name for i in C.CORRUPTIONS.values() if i.extra} == set(C.EXTRA_CORRUPTIONS)
    assert {i.kind for i in C.CORRUPTIONS.values()} == {"noise", "blur", "weather", "digital"}
    assert set(DETERMINISTIC) == {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                                  "jpeg_compression", "gaussian_blur", "saturate"}


def test_parameter_tables_golden_values():
    """Spot values of the reference generators (make_imagenet_c.py, make_tinyimagenet_c.py, make_cifar_c.py)."""
    assert [C.corruption_params("gaussian_noise", s, "imagenet") for s in C.SEVERITIES] == [.08, .12, .18, .26, .38]
    assert [C.corruption_params("shot_noise", s, "cifar") for s in C.SEVERITIES] == [500, 250, 100, 75, 50]
    assert C.corruption_params("glass_blur", 5, "imagenet") == (1.5, 4, 2)
    assert C.corruption_params("saturate", 5, "tiny") == (30, 0.2)
    assert C.corruption_params("snow", 3, "cifar") == (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9)
    assert C.corruption_params("jpeg_compression", 1, "tiny") == 65
    assert C.corruption_params("elastic_transform", 1, "imagenet") == (244 * 2, 244 * 0.7, 244 * 0.1)
    for table in C.PARAMETER_TABLES.values():
        assert set(table) == set(C.ALL_CORRUPTIONS) and all(len(v) == 5 for v in table.values())


def test_zoom_factors_are_numpy_arange_to_the_bit():
    for table in C.PARAMETER_TABLES.values():
        for p in table["zoom_blur"]:
            assert C.zoom_factors(*p) == np.arange(*p).tolist()


@pytest.mark.parametrize("side, table", [(28, "cifar"), (32, "cifar"), (45, "cifar"), (64, "tiny"), (96, "tiny"),
                                         (128, "imagenet"), (224, "imagenet"), (384, "imagenet")])
def test_table_choice_by_size(side, table):
    assert C.table_for(side, side) == table


def test_errors_name_severity_shape_table():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ConfigError, match="did you mean 'gaussian_noise'"):
        C.corrupt(x, "gausian_noise", 1)
    for bad in (0, 6, 2.0, True, "3"):
        with pytest.raises(ConfigError, match="severity"):
            C.corrupt(x, "contrast", bad)
    with pytest.raises(ConfigError, match=r"\(B, 3, H, W\)"):
        C.corrupt(torch.rand(3, 8, 8), "contrast", 1)
    with pytest.raises(ConfigError, match="table"):
        C.corrupt(x, "contrast", 1, table="mnist")


# ------------------------------------------------------------------------------------------ every case

@pytest.mark.parametrize("name, severity", CASES)
def test_shape_dtype_range_and_seed(name, severity):
    x = natural(2, 32)
    out = C.corrupt(x, name, severity, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert float((out - x).abs().mean()) > 1e-4                          # the corruption does something
    assert torch.equal(out, C.corrupt(x, name, severity, gen(1)))         # same seed, same images
    other = C.corrupt(x, name, severity, gen(2))
    assert torch.equal(out, other) == (name in DETERMINISTIC)             # other seed differs iff random


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", C.ALL_CORRUPTIONS)
def test_the_input_is_left_alone(name, dtype):
    x = natural(2, 32, seed=17, dtype=dtype)
    before = x.clone()
    C.corrupt(x, name, 3, gen(17))
    C.save_like_release(C.corrupt(x, name, 3, gen(17)), "jpeg85")
    assert torch.equal(x, before)
    last = x.contiguous(memory_format=torch.channels_last)          # a layout the JPEG path also copies from
    C.corrupt(last, name, 3, gen(17))
    assert torch.equal(last, before)


@pytest.mark.parametrize("name, severity", CASES)
def test_matches_numpy_reference_exactly(name, severity):
    """float64 batch vs the per-image numpy reference fed the same random draws."""
    x = natural(2, 32, seed=severity, dtype=torch.float64)
    draws = C.draw_randomness(x, name, severity, gen(severity))
    out = C.apply_corruption(x, name, severity, draws).numpy()
    np.testing.assert_allclose(out, reference(x, name, severity, draws), rtol=0, atol=EXACT.get(name, 1e-9))


@pytest.mark.parametrize("name", C.ALL_CORRUPTIONS)
def test_float32_matches_reference(name):
    """float32 batch vs the reference on the same images' exact 8-bit values (as the reference reads them)."""
    x = natural(2, 32, seed=3)
    draws = C.draw_randomness(x, name, 3, gen(3))
    exact = natural(2, 32, seed=3, dtype=torch.float64)
    diff = np.abs(C.apply_corruption(x, name, 3, draws).double().numpy() - reference(exact, name, 3, draws))
    if name in QUANTISED:
        assert np.mean(diff > 1e-4) < 0.002 and diff.max() <= 2 / 255 + 1e-6
    else:
        assert diff.max() < 2e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", C.ALL_CORRUPTIONS)
def test_matches_reference_at_224(name):
    x = natural(1, 224, dtype=torch.float64)
    for severity in (1, 5):
        draws = C.draw_randomness(x, name, severity, gen(severity))
        out = C.apply_corruption(x, name, severity, draws).numpy()
        np.testing.assert_allclose(out, reference(x, name, severity, draws), rtol=0, atol=EXACT.get(name, 1e-9))


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_batch_equals_per_image(name):
    x = natural(3, 32, seed=4)
    batch = C.corrupt(x, name, 4)
    singles = torch.cat([C.corrupt(x[i:i + 1], name, 4) for i in range(3)])
    assert torch.allclose(batch, singles, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["gaussian_noise", "motion_blur", "snow", "fog", "elastic_transform"])
def test_explicit_cpu_device_and_float64(name):
    x = natural(2, 32, seed=5)
    on_cpu = C.corrupt(x.to("cpu"), name, 2, gen(9))
    assert on_cpu.device.type == "cpu"
    wide = C.corrupt(x.double(), name, 2, gen(9))
    assert wide.dtype == torch.float64 and torch.allclose(wide.float(), on_cpu, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", C.ALL_CORRUPTIONS)
def test_cuda_matches_cpu(name):
    x = natural(2, 32, seed=6)
    cpu = C.corrupt(x, name, 3, gen(4))
    cuda = C.corrupt(x.cuda(), name, 3, gen(4))
    assert cuda.device.type == "cuda"
    diff = (cuda.cpu() - cpu).abs()
    assert float(diff.mean()) < 1e-5 and float((diff > 1e-3).float().mean()) < 0.002


# ------------------------------------------------------------------------------------------ noise statistics

@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_gaussian_noise_residual_scale(severity):
    c = C.corruption_params("gaussian_noise", severity, "imagenet")
    x = torch.full((4, 3, 64, 64), 0.5)
    r = (C.corrupt(x, "gaussian_noise", severity, gen(severity), table="imagenet") - x).flatten()
    assert float(r.abs().median()) / 0.6745 == pytest.approx(c, rel=0.04)   # median |r| is below the clip
    assert abs(float(r.mean())) < 0.01


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_shot_noise_variance_proportional_to_intensity(severity):
    c = C.corruption_params("shot_noise", severity, "cifar")
    levels = torch.tensor([0.1, 0.2, 0.4]).view(3, 1, 1, 1)
    x = levels.expand(3, 3, 64, 64).contiguous()
    out = C.corrupt(x, "shot_noise", severity, gen(severity), table="cifar")
    var = out.flatten(1).var(dim=1)
    assert torch.allclose(var, levels.flatten() / c, rtol=0.08)            # Var(Poisson(x c) / c) = x / c
    assert torch.allclose(out.flatten(1).mean(dim=1), levels.flatten(), rtol=0.02)


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_impulse_fraction(severity):
    c = C.corruption_params("impulse_noise", severity, "imagenet")
    x = torch.full((4, 3, 64, 64), 0.5)
    out = C.corrupt(x, "impulse_noise", severity, gen(severity), table="imagenet")
    assert float((out != x).float().mean()) == pytest.approx(c, rel=0.05, abs=0.003)
    assert float((out == 1).float().mean()) == pytest.approx(c / 2, rel=0.08, abs=0.003)


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_speckle_noise_scales_with_intensity(severity):
    c = C.corruption_params("speckle_noise", severity, "cifar")
    levels = torch.tensor([0.2, 0.4]).view(2, 1, 1, 1)
    x = levels.expand(2, 3, 64, 64).contiguous()
    r = (C.corrupt(x, "speckle_noise", severity, gen(severity), table="cifar") - x).flatten(1)
    assert torch.allclose(r.std(dim=1), levels.flatten() * c, rtol=0.05)   # x + x N(0, c^2)


# ------------------------------------------------------------------------------------------ structure

MONOTONE_PSNR = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur", "gaussian_blur",
                 "zoom_blur", "motion_blur", "brightness", "contrast", "jpeg_compression", "spatter")


@pytest.mark.parametrize("name", MONOTONE_PSNR)
def test_damage_grows_with_severity(name):
    x = natural(6, 32, seed=7)
    scores = [psnr(x, C.corrupt(x, name, s, gen(7))) for s in C.SEVERITIES]
    # non-increasing (motion: 2 equal)
    assert all(a > b - 0.05 for a, b in zip(scores, scores[1:], strict=False)), scores
    assert scores[0] > scores[-1] + 1


@pytest.mark.parametrize("name", ["defocus_blur", "gaussian_blur", "zoom_blur", "motion_blur"])
def test_blur_removes_high_frequencies_monotonically(name):
    x = natural(6, 32, seed=8)
    energy = [gradient_energy(x)] + [gradient_energy(C.corrupt(x, name, s, gen(8))) for s in C.SEVERITIES]
    assert all(a >= b * 0.999 for a, b in zip(energy, energy[1:], strict=False)), energy
    assert energy[-1] < 0.8 * energy[0]


def test_glass_blur_at_224_blurs_more_with_severity():
    x = natural(2, 224, seed=9)
    energy = [gradient_energy(C.corrupt(x, "glass_blur", s, gen(9))) for s in C.SEVERITIES]
    assert all(a > b for a, b in zip(energy, energy[1:], strict=False)) and energy[0] < gradient_energy(x)


def _glass_loop(coords: np.ndarray, dy: np.ndarray, dx: np.ndarray, delta: int) -> np.ndarray:
    """One pass of the reference's loop on an (H, W, 3) array, statement for statement."""
    x = coords.copy()
    height, width = x.shape[:2]
    for h in range(height - delta, delta, -1):
        for w in range(width - delta, delta, -1):
            h_prime, w_prime = h + int(dy[h - delta - 1, w - delta - 1]), w + int(dx[h - delta - 1, w - delta - 1])
            x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return x


@pytest.mark.parametrize("height, width, delta", [(32, 32, 1), (32, 32, 2), (40, 33, 3), (64, 64, 4)])
def test_glass_sources_equal_the_reference_loop(height, width, delta):
    """Every pass's source map equals the sequential loop's (which copies, never swaps: values are lost)."""
    g = gen(delta)
    shape = (2, height - 2 * delta, width - 2 * delta)
    dy, dx = torch.randint(-delta, delta, shape, generator=g), torch.randint(-delta, delta, shape, generator=g)
    sources = C.glass_sources(height, width, delta, dy, dx)
    for b in range(2):
        coords = np.arange(height * width).reshape(height, width, 1).repeat(3, axis=2)
        loop = _glass_loop(coords, dy[b].numpy(), dx[b].numpy(), delta)[..., 0].ravel()
        np.testing.assert_array_equal(sources[b].numpy(), loop)
        assert len(np.unique(loop)) < 0.9 * height * width          # a copy loop, not a permutation


def test_glass_blur_copies_like_the_reference_at_32px():
    """Mean change at CIFAR severities 1-3 equals the copy loop's (the swap was 33-44 % harsher)."""
    x = natural(4, 32, seed=13, dtype=torch.float64)
    for severity in (1, 2, 3):
        draws = C.draw_randomness(x, "glass_blur", severity, gen(severity))
        ours = C.apply_corruption(x, "glass_blur", severity, draws)
        ref = torch.from_numpy(reference(x, "glass_blur", severity, draws))
        assert float((ours - x).abs().mean()) == pytest.approx(float((ref - x).abs().mean()), rel=1e-9)


def test_motion_blur_direction_and_weights():
    """ImageMagick semantics: angle 0 reads pixels to the right, so a point spreads to the left."""
    x = torch.zeros(1, 1, 9, 21, dtype=torch.float64)
    x[0, 0, 4, 15] = 1
    out = ops.motion_blur(x, 5, 2, torch.tensor([0.0]))[0, 0]
    taps = ops.motion_blur_taps(5, 2)
    assert torch.allclose(out[4, 15 - 10:16].flip(0), torch.from_numpy(taps))
    assert float(out.sum()) == pytest.approx(1.0) and float(out[[0, 1, 2, 3, 5, 6, 7, 8]].abs().max()) < 1e-12
    dy, dx = ops.motion_blur_offsets(11, torch.tensor([90.0, -45.0]))
    assert dy[0].tolist() == list(range(11)) and dx[0].abs().sum() == 0
    assert (dx[1] == -dy[1]).all() and int(dx[1, -1]) == round(10 * math.cos(math.pi / 4))


def test_weather_changes_brightness_in_the_expected_direction():
    x = natural(4, 32, seed=10)
    dark, bright = x * 0.3, x * 0.3 + 0.7
    dark[..., 0, 0] = 1                                  # natural images reach white: fog scales by 1 / (1 + a)
    means = {n: [float(C.corrupt(x, n, s, gen(s)).mean()) for s in C.SEVERITIES] for n in ("snow", "frost")}
    assert all(m > float(x.mean()) + 0.02 for m in means["snow"] + means["frost"])
    assert means["snow"][-1] > means["snow"][0]
    for s in C.SEVERITIES:                               # fog pulls towards the plasma's grey
        assert float(C.corrupt(dark, "fog", s, gen(s)).mean()) > float(dark.mean()) + 0.05
        assert float(C.corrupt(bright, "fog", s, gen(s)).mean()) < float(bright.mean()) - 0.05
    water = [float(C.corrupt(x, "spatter", s, gen(s)).mean()) for s in (1, 2, 3)]
    mud = [float(C.corrupt(x, "spatter", s, gen(s)).mean()) for s in (4, 5)]
    assert min(water) > float(x.mean()) and max(mud) < float(x.mean())


def test_brightness_contrast_saturate_closed_forms():
    x = natural(4, 32, seed=11)
    means = [float(C.corrupt(x, "brightness", s).mean()) for s in C.SEVERITIES]
    stds = [float(C.corrupt(x, "contrast", s).std()) for s in C.SEVERITIES]
    assert (all(a < b for a, b in zip(means, means[1:], strict=False))
            and all(a > b for a, b in zip(stds, stds[1:], strict=False)))
    grey = torch.full((1, 3, 4, 4), 0.5)
    sat = C.corrupt(grey, "saturate", 5, table="imagenet")                 # skimage: grey has hue 0 (red)
    assert torch.allclose(sat[0, :, 0, 0], torch.tensor([0.5, 0.4, 0.4]))


@pytest.mark.parametrize("side, table", [(32, "cifar"), (64, "tiny"), (224, "imagenet")])
def test_frost_crops_the_reference_photographs(side, table):
    """Every photograph the reference draws, resized per table (cv2's 8-bit linear resize) and cropped at the
    drawn offsets; the frost layer alone (image weight 0) is the crop itself."""
    x = natural(24, side, seed=side, dtype=torch.float64)
    for severity in (1, 5):
        draws = C.draw_randomness(x, "frost", severity, gen(severity), table=table)
        assert set(draws["index"].tolist()) == set(range(5))            # frost6.jpg is never drawn
        out = C.apply_corruption(x, "frost", severity, draws, table=table).numpy()
        np.testing.assert_allclose(out, reference(x, "frost", severity, draws, table), rtol=0, atol=1e-12)
    crops = C.frost_crops(draws, side, side, C.FROST_SCALE[table])
    index, factor, top, left = crops[0]
    photo = R.frost_photograph(index, table)
    expected = photo[top:top + side, left:left + side].transpose(2, 0, 1)
    np.testing.assert_array_equal(C.frost_image(index, factor)[:, top:top + side, left:left + side].numpy(), expected)


def test_frost_resize_equals_opencv_arithmetic_and_larger_images_get_a_crop():
    photo = C.frost_image(0, 1.0)
    assert tuple(photo.shape) == (3, 600, 900)
    assert tuple(C.frost_image(1, 0.3).shape) == (3, 94, 168) and tuple(C.frost_image(1, 0.2).shape) == (3, 63, 112)
    for f in (0.2, 0.3):
        ours = ops.resize_linear_8bit(photo, f, f).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(ours, R.cv2_resize_linear(photo.permute(1, 2, 0).numpy(), f))
    draws = {"index": torch.tensor([1]), "offset": torch.tensor([[0.999, 0.0]], dtype=torch.float64)}
    big = C.apply_corruption(natural(1, 320), "frost", 2, draws)           # frost2 has 315 rows: resized to fit
    index, factor, top, left = C.frost_crops(draws, 320, 320, 1.0)[0]
    assert factor > 1 and C.frost_image(1, factor).shape[1] > 320 and top == C.frost_image(1, factor).shape[1] - 321
    assert big.shape == (1, 3, 320, 320) and float(big.std()) > 0.05


def test_jpeg_matches_pillow_and_loses_more_at_lower_quality():
    x = natural(2, 32, seed=12)
    out = C.corrupt(x, "jpeg_compression", 5)
    assert np.abs(out.double().numpy() - reference(x, "jpeg_compression", 5, {})).max() <= 1 / 255 + 1e-6


# ------------------------------------------------------------------------------------------ image_ops vs scipy

def test_image_ops_follow_scipy_ndimage():
    ndi = pytest.importorskip("scipy.ndimage")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 1, 19, 23, generator=g, dtype=torch.float64)
    for mode, sigma, truncate in (("nearest", 1.3, 4.0), ("reflect", 9.0, 3.0), ("mirror", 0.7, 4.0)):
        ours = ops.gaussian_filter(a, sigma, mode, truncate)[0, 0].numpy()
        theirs = ndi.gaussian_filter(a[0, 0].numpy(), sigma, mode=mode, truncate=truncate)
        np.testing.assert_allclose(ours, theirs, atol=1e-12)
    sq = torch.rand(1, 1, 21, 21, generator=g, dtype=torch.float64)
    for factor in (1.06, 1.3, 2.25):
        crop = int(np.ceil(21 / factor))
        top = (21 - crop) // 2
        z = ndi.zoom(sq[0, 0, top:top + crop, top:top + crop].numpy(), factor, order=1)
        trim = (z.shape[0] - 21) // 2
        np.testing.assert_allclose(ops.clipped_zoom(sq, factor)[0, 0].numpy(), z[trim:trim + 21, trim:trim + 21],
                                   atol=1e-12)
    rows = torch.rand(1, 8, 8, generator=g, dtype=torch.float64) * 30 - 5
    cols = torch.rand(1, 8, 8, generator=g, dtype=torch.float64) * 34 - 5
    for mode, scipy_mode in (("reflect", "reflect"), ("nearest", "nearest"), ("constant", "grid-constant")):
        ours = ops.sample_bilinear(sq, rows, cols, mode)[0, 0].numpy()
        theirs = ndi.map_coordinates(sq[0, 0].numpy(), [rows[0].numpy(), cols[0].numpy()], order=1, mode=scipy_mode)
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


# ------------------------------------------------------------------------------------------ release save step

def test_release_save_by_resolution():
    assert [C.release_save_for(s, s) for s in (224, 64, 32, 28, 384)] == ["jpeg85", "jpeg85", "uint8", "none", "none"]
    assert C.release_save_for(224, 200) == "none"
    with pytest.raises(ConfigError, match="release save 'jpeg'"):
        C.save_like_release(torch.rand(1, 3, 8, 8), "jpeg")


def _pillow_save(img: np.ndarray, jpeg: bool) -> np.ndarray:
    """The generators' save: Image.fromarray(np.uint8(img)).save(path, quality=85, optimize=True), read back."""
    levels = np.uint8(img.transpose(1, 2, 0) * 255)
    if not jpeg:
        return levels.transpose(2, 0, 1) / 255
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, "JPEG", quality=85, optimize=True)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255


@pytest.mark.parametrize("mode", ["uint8", "jpeg85"])
def test_save_like_release_equals_the_generators_save(mode):
    x = natural(3, 224, seed=14, dtype=torch.float64)
    noisy = C.corrupt(x, "gaussian_noise", 3, gen(14))
    saved = C.save_like_release(noisy, mode)
    expected = np.stack([_pillow_save(img, mode == "jpeg85") for img in noisy.numpy()])
    np.testing.assert_array_equal(saved.numpy(), expected)
    inplace = noisy.float().clone()                                      # float32, written in place
    assert C.save_like_release(inplace, mode, out=inplace) is inplace
    np.testing.assert_array_equal(torch.round(inplace.double() * 255).numpy(), np.round(expected * 255))


def test_the_jpeg_save_softens_the_noises_as_in_the_released_sets():
    """Gaussian noise at severity 5: the JPEG q85 save removes much of the noise (the issue measured a mean
    change of 58.4 -> 42.5 on the 0..255 scale); 8 bits alone change it by under half a level."""
    x = natural(4, 224, seed=15)
    noisy = C.corrupt(x, "gaussian_noise", 5, gen(15))
    change = {m: float((C.save_like_release(noisy, m) - x).abs().mean()) * 255 for m in C.RELEASE_SAVES}
    assert abs(change["uint8"] - change["none"]) < 0.5
    assert change["jpeg85"] < 0.85 * change["none"]


def test_suite_applies_the_release_save_and_keys_it(tiny_zoo):
    """Generated corruptions get the save of the set released at their size (32 px: 8 bits), recorded in the
    evaluation key; a bad value and a save asked of released files are refused."""
    from vitbench.data import open_dataset
    from vitbench.engine import Engine, Options, SuiteRun
    from vitbench.store import open_store
    from vitbench.suites.base import Chunk
    from vitbench.suites.corruptions import CorruptionsConfig, CorruptionsSuite
    from vitbench.zoo.schema import load_zoo

    x = natural(2, 32, seed=16)
    chunk = Chunk(0, 0, 2, x, torch.tensor([0, 1]), 7, ["a", "b"])
    configs = {m: CorruptionsConfig(corruptions=("gaussian_noise",), release_save=m)
               for m in ("auto", "none", "jpeg85")}
    images = {m: CorruptionsSuite()._images(None, chunk, c, None, "gaussian_noise", 3) for m, c in configs.items()}
    assert torch.equal(torch.round(images["auto"] * 255) / 255, images["auto"])         # 8-bit values
    assert not torch.equal(torch.round(images["none"] * 255) / 255, images["none"])
    assert torch.equal(images["auto"], torch.floor(images["none"] * 255) / 255)         # the same draws, truncated
    assert not torch.equal(images["jpeg85"], images["auto"])
    entry, data = load_zoo(tiny_zoo).get("tiny-vit.test"), open_dataset("digits")
    engine = Engine(open_store(), Options(n_examples=10, chunk_size=10, device="cpu"))
    keys = {m: engine.key(entry, data, SuiteRun("corruptions", c))[0] for m, c in configs.items()}
    assert len(set(keys.values())) == 3
    assert CorruptionsConfig().release_save == "auto"
    with pytest.raises(ValueError, match="release_save 'jpeg' is not one of auto, none, uint8, jpeg85"):
        CorruptionsConfig(release_save="jpeg")
    with pytest.raises(ValueError, match="saved already"):
        CorruptionsConfig(source="released", root="/x", release_save="uint8")
    assert CorruptionsConfig(source="released", root="/x").release_save == "none"


def test_a_bad_release_save_is_one_line(cli, tiny_zoo, tmp_path):
    preset = tmp_path / "c.yaml"
    preset.write_text("suites:\n  - suite: corruptions\n    corruptions: [contrast]\n    release_save: jpeg\n")
    res = cli("bench", "tiny-vit.test", "--zoo", tiny_zoo, "--data", "digits", "--preset", preset, "--n-examples", "4")
    assert res.code == 2 and "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1
    assert "release_save 'jpeg' is not one of auto, none, uint8, jpeg85" in res.err
