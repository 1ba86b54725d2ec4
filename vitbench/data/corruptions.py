"""The 19 ImageNet-C corruptions at 5 severities, batched in torch on any device.

Definitions and parameter tables follow Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations" (ICLR 2019) and the authors' generators in github.com/hendrycks/robustness:
``ImageNet-C/create_c/make_imagenet_c.py`` (table "imagenet", 224 px), ``make_tinyimagenet_c.py`` ("tiny",
64 px) and ``make_cifar_c.py`` ("cifar", 32 px). The library calls they make (scipy.ndimage, scikit-image,
OpenCV, Pillow, ImageMagick 6) are reproduced in :mod:`vitbench.data.image_ops`.

Table choice: the table whose nominal size is nearest to the image's on a log scale, with s = sqrt(H W):
"cifar" for s < 46, "tiny" for s < 120, else "imagenet" (the digits set and CIFAR at 32 px get "cifar", ImageNet
at 224 px "imagenet"). Pass ``table=`` to choose. Parameters in pixels are used as the table gives them.

Randomness: :func:`draw_randomness` takes every random number a corruption needs from the generator on the CPU
(so a seed gives the same images on CPU and GPU); :func:`apply_corruption` is the deterministic rest. Images of a
batch get independent draws.

On the CPU a batch is corrupted a few images at a time (:data:`CPU_CHUNK_VALUES`) so that each step stays in
cache; results do not depend on the chunking. Non-square images are handled axis by axis (the reference assumes
squares).

Deviations from the reference generators (also noted where they occur):

- Outputs are floats clamped to [0, 1]. The released sets were then saved: truncated to 8 bits (np.uint8), and
  for ImageNet-C and Tiny-ImageNet-C written as JPEG quality 85. :func:`save_like_release` is that step (the
  corruptions suite applies it by default at the released sizes); :func:`corrupt` does not. The 8-bit steps
  inside a corruption are kept (glass blur, snow, spatter).
- frost: none at the reference's sizes. The reference's photographs ship in ``vitbench/data/files/frost``
  (Apache-2.0); one of the first five is drawn (the reference's ``randint(5)`` never picks frost6.jpg),
  resized for the 64 and 32 px tables as the reference does (cv2.resize INTER_LINEAR by 0.3 / 0.2, 8-bit fixed
  point: :func:`vitbench.data.image_ops.resize_linear_8bit`) and cropped at a drawn offset. Images larger than
  the reference allows (at least one offset per axis) get the photograph resized just large enough.
- glass_blur: none in the loop. The reference's ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on numpy views
  copies x[h', w'] into x[h, w] (not a swap); :func:`glass_sources` gives each pass's copies at once, equal to
  the sequential loop. The first blur uses scipy's own order of sums, so the 8-bit truncation after it falls on
  scipy's side (given numpy's Gaussian taps: numpy versions differ in exp's last bit, which moves a few values).
- motion_blur: none. ImageMagick 6's MotionBlurImage is reproduced in floating point (weights, offset rounding,
  edge pixels), then its Q16 quantum is truncated to 8 bits as the reference's PNG output was: equal to the
  reference run with ImageMagick 6.9.11-60 Q16 through Wand, value for value.
- snow: the layer keeps the reference's 8-bit steps (truncation before the blur, ImageMagick's 16-bit quantum
  truncated to 8 bits after it), so it equals the ImageMagick pipeline to float rounding.
- shot_noise: the Poisson counts are drawn on the CPU from the image (it is copied there and back).
- elastic_transform: the affine step samples bilinearly at exact positions (OpenCV rounds them to 1/32 pixel).
- jpeg_compression: libjpeg through torchvision.io on the CPU (images are moved there and back), from the
  image rounded to 8 bits, as Pillow's JPEG save/load is; equal to Pillow on the test images.
- impulse_noise: scikit-image's current definition of 's&p' noise (each value independently flipped with
  probability c, to 1 or 0 with probability 1/2), drawn with one uniform per value instead of two.
- spatter: OpenCV's Canny, chamfer distance transform and histogram equalisation are reimplemented (the numpy
  reference in the tests matches OpenCV on random liquid layers); float32 rounding can flip a few 8-bit values.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchvision.io
from PIL import Image

from vitbench.data import image_ops as ops
from vitbench.errors import ConfigError, did_you_mean
from vitbench.paths import package_file

log = logging.getLogger(__name__)

BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
NOISE_CORRUPTIONS: tuple[str, ...] = ("gaussian_noise", "shot_noise", "impulse_noise")
ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
TABLES: tuple[str, ...] = ("cifar", "tiny", "imagenet")
#: nominal image side of each table and the geometric-mean thresholds between them
TABLE_SIZES = {"cifar": 32, "tiny": 64, "imagenet": 224}
_TABLE_BOUNDS = ((math.sqrt(TABLE_SIZES["cifar"] * TABLE_SIZES["tiny"]), "cifar"),
                 (math.sqrt(TABLE_SIZES["tiny"] * TABLE_SIZES["imagenet"]), "tiny"))

#: colours (0-255, in the image's channel order) of the reference's spatter: water and mud
WATER_RGB = (175.0, 238.0, 238.0)
MUD_RGB = (63.0, 42.0, 20.0)
#: OpenCV emboss kernel and Canny thresholds of the reference's water spatter
EMBOSS = ((-2, -1, 0), (-1, 1, 1), (0, 1, 2))
CANNY_THRESHOLDS = (50.0, 150.0)
#: the reference's frost photographs (vitbench/data/files/frost, Apache-2.0; credit in its README.md)
FROST_FILES: tuple[str, ...] = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
#: the reference picks np.random.randint(5): the first five (frost6.jpg is listed but never drawn)
FROST_CHOICES = 5
#: per table, the factor of the reference's cv2.resize of the photograph before the crop (ImageNet crops it as is)
FROST_SCALE = {"imagenet": 1.0, "tiny": 0.3, "cifar": 0.2}
#: the save step the released sets went through after the generator (:func:`save_like_release`): none; 8 bits
#: (np.uint8 of the 0..255 floats: a truncation); 8 bits then JPEG at quality 85 (Pillow)
RELEASE_SAVES: tuple[str, ...] = ("none", "uint8", "jpeg85")
#: by image side, the save of the set released at that size: ImageNet-C (224 px) and Tiny-ImageNet-C (64 px) were
#: written as Image.fromarray(np.uint8(img)).save(path, quality=85) (make_imagenet_c.py, make_tinyimagenet_c.py),
#: CIFAR-10-C / -100-C (32 px) as np.save of np.uint8 arrays (make_cifar_c.py)
RELEASED_SAVE_BY_SIDE: dict[int, str] = {224: "jpeg85", 64: "jpeg85", 32: "uint8"}
RELEASE_JPEG_QUALITY = 85
#: the reference's snow lifts the image towards grey * 1.5 + 0.5
_SNOW_LIFT = (1.5, 0.5)
#: on the CPU a batch is corrupted this many values at a time (a few images at 224 px), so that each step's
#: tensors stay in cache and under the allocator's mmap threshold; on other devices the batch goes at once
CPU_CHUNK_VALUES = 1 << 20


@dataclass(frozen=True)
class CorruptionInfo:
    """A registered corruption: its paper category, whether it draws random numbers, and if it is an extra."""

    name: str
    kind: str              # "noise" | "blur" | "weather" | "digital" (the paper's grouping)
    deterministic: bool
    extra: bool


def _info(name: str, kind: str, deterministic: bool) -> CorruptionInfo:
    return CorruptionInfo(name, kind, deterministic, name in EXTRA_CORRUPTIONS)


CORRUPTIONS: dict[str, CorruptionInfo] = {i.name: i for i in (
    _info("gaussian_noise", "noise", False), _info("shot_noise", "noise", False),
    _info("impulse_noise", "noise", False), _info("defocus_blur", "blur", True),
    _info("glass_blur", "blur", False), _info("motion_blur", "blur", False), _info("zoom_blur", "blur", True),
    _info("snow", "weather", False), _info("frost", "weather", False), _info("fog", "weather", False),
    _info("brightness", "weather", True), _info("contrast", "digital", True),
    _info("elastic_transform", "digital", False), _info("pixelate", "digital", True),
    _info("jpeg_compression", "digital", True), _info("speckle_noise", "noise", False),
    _info("gaussian_blur", "blur", True), _info("spatter", "weather", False), _info("saturate", "digital", True))}

# ------------------------------------------------------------------------------------------ parameter tables
# One tuple per severity 1..5, transcribed from the reference generators named in the module docstring.
# zoom_blur entries are numpy.arange(start, stop, step) arguments (see zoom_factors).

_IMAGENET: dict[str, tuple] = {
    "gaussian_noise": (.08, .12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (.03, .06, .09, 0.17, 0.27),
    "speckle_noise": (.15, .2, 0.35, 0.45, 0.6),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),       # sigma, delta, iters
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),                 # radius, alias blur
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),                      # radius, sigma
    "zoom_blur": ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)),
    "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),                         # amount, decay
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),               # image, frost weight
    # loc, scale, zoom, threshold, blur radius, blur sigma, image weight
    "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    # loc, scale, sigma, threshold, intensity (water) or mud blur sigma, mud?
    "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)),
    "contrast": (0.4, .3, .2, .1, .05),
    "brightness": (.1, .2, .3, .4, .5),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),                      # factor, offset
    "jpeg_compression": (25, 18, 15, 10, 7),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    # alpha (displacement scale), sigma (field smoothness), affine jitter; the reference writes 244 for 224
    "elastic_transform": ((244 * 2, 244 * 0.7, 244 * 0.1), (244 * 2, 244 * 0.08, 244 * 0.2),
                          (244 * 0.05, 244 * 0.01, 244 * 0.02), (244 * 0.07, 244 * 0.01, 244 * 0.02),
                          (244 * 0.12, 244 * 0.01, 244 * 0.02)),
}

_TINY: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.08, .12, .15, .18),
    "shot_noise": (250, 100, 50, 30, 15),
    "impulse_noise": (.01, .02, .05, .08, .14),
    "speckle_noise": (.15, .2, 0.25, 0.3, 0.35),
    "gaussian_blur": (.5, .75, 1, 1.25, 1.5),
    "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
    "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
    "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)),
    "fog": ((.4, 3), (.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
    "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)),
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.6, 0), (0.65, 0.1, 0.8, 0.7, 0.6, 0), (0.65, 0.3, 1, 0.69, 0.6, 0),
                (0.65, 0.1, 0.7, 0.68, 0.6, 1), (0.65, 0.1, 0.5, 0.67, 0.6, 1)),
    "contrast": (.4, .3, .2, .1, 0.05),
    "brightness": (.1, .2, .3, .4, .5),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
    "jpeg_compression": (65, 58, 50, 40, 25),
    "pixelate": (0.9, 0.8, 0.7, 0.6, 0.5),
    "elastic_transform": ((64 * 0, 64 * 0, 64 * 0.08), (64 * 0.05, 64 * 0.3, 64 * 0.06),
                          (64 * 0.1, 64 * 0.08, 64 * 0.06), (64 * 0.1, 64 * 0.03, 64 * 0.03),
                          (64 * 0.16, 64 * 0.03, 64 * 0.02)),
}

_CIFAR: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, .08, .09, .10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (.01, .02, .03, .05, .07),
    "speckle_noise": (.06, .1, .12, .16, .2),
    "gaussian_blur": (.4, .6, 0.7, .8, 1),
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)),
    "fog": ((.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    "contrast": (.75, .5, .4, .3, 0.15),
    "brightness": (.05, .1, .15, .2, .3),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "elastic_transform": ((32 * 0, 32 * 0, 32 * 0.08), (32 * 0.05, 32 * 0.2, 32 * 0.07),
                          (32 * 0.08, 32 * 0.06, 32 * 0.06), (32 * 0.1, 32 * 0.04, 32 * 0.05),
                          (32 * 0.1, 32 * 0.03, 32 * 0.03)),
}

PARAMETER_TABLES: dict[str, dict[str, tuple]] = {"imagenet": _IMAGENET, "tiny": _TINY, "cifar": _CIFAR}


# ------------------------------------------------------------------------------------------ public helpers

def table_for(height: int, width: int) -> str:
    """The parameter table for an image size: the nearest nominal size (32, 64, 224) on a log scale."""
    side = math.sqrt(height * width)
    for bound, table in _TABLE_BOUNDS:
        if side < bound:
            return table
    return "imagenet"


def _check(name: str, severity: int) -> None:
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}{did_you_mean(name, CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ConfigError(f"corruption severity must be an integer from 1 to 5, got {severity!r}")


def corruption_params(name: str, severity: int, table: str) -> Any:
    """The reference parameters of a corruption at a severity in a table (see :data:`PARAMETER_TABLES`).

    Raises:
        ConfigError: unknown corruption, table, or a severity outside 1..5.
    """
    _check(name, severity)
    if table not in PARAMETER_TABLES:
        raise ConfigError(f"unknown corruption parameter table {table!r}{did_you_mean(table, TABLES)}")
    return PARAMETER_TABLES[table][name][severity - 1]


def zoom_factors(start: float, stop: float, step: float) -> list[float]:
    """numpy.arange(start, stop, step) for floats, to the last bit: ceil((stop - start) / step) values
    start + i * delta with numpy's delta = (start + step) - start (the last bit decides ceil(n / factor))."""
    delta = (start + step) - start
    return [start + i * delta for i in range(int(math.ceil((stop - start) / step)))]


def _work(x: torch.Tensor) -> torch.Tensor:
    """The compute dtype: float64 stays float64, everything else runs in float32."""
    return x if x.dtype == torch.float64 else x.to(torch.float32)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None,
             dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)


# ------------------------------------------------------------------------------------------ noise

def _draw_gaussian(x: torch.Tensor, p: Any, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    return {"noise": torch.randn(tuple(x.shape), generator=gen)}


def _gaussian_noise(x: torch.Tensor, c: float, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """x + N(0, c^2) per value."""
    return torch.add(x, d["noise"].to(x), alpha=c)


def _speckle_noise(x: torch.Tensor, c: float, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """x + x N(0, c^2) per value."""
    return torch.addcmul(x, x, d["noise"].to(x), value=c)


def _draw_shot(x: torch.Tensor, c: float, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Poisson(x c) counts, a few images at a time (the sampler consumes the generator value by value, so the
    draws equal one call's), kept as float32: integers that small are exact."""
    cpu = x.detach().to("cpu")
    counts = torch.empty(x.shape, dtype=torch.float32)
    for part in _chunks(cpu):
        rates = cpu[part].to(torch.float64, copy=True).clamp_(0, 1).mul_(c)     # never x itself
        counts[part] = torch.poisson(rates, generator=gen)
    return {"counts": counts}


def _shot_noise(x: torch.Tensor, c: float, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """Poisson(x c) / c per value (the counts are drawn on the CPU from x)."""
    return d["counts"].to(x) / c


def _draw_impulse(x: torch.Tensor, p: Any, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    return {"u": torch.rand(tuple(x.shape), generator=gen)}


def _impulse_noise(x: torch.Tensor, c: float, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """Salt and pepper (skimage 's&p', salt_vs_pepper 0.5): each value independently becomes 1 with probability
    c / 2 and 0 with probability c / 2. One uniform u per value: u <= c / 2 salt, c / 2 < u <= c pepper (the law
    of skimage's two draws, flip with probability c then salt with probability 1/2, at half the draws)."""
    u = d["u"].to(x.device)
    return torch.where(u <= c, (u <= c / 2).to(x.dtype), x)


# ------------------------------------------------------------------------------------------ blur

def _gaussian_blur(x: torch.Tensor, sigma: float, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """skimage.filters.gaussian(x, sigma): nearest border, truncate 4."""
    return ops.gaussian_filter(x, sigma)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's defocus kernel: a normalised disk (17 x 17 up to radius 8) smoothed by
    cv2.GaussianBlur(ksize 3, or 5 above radius 8; sigma alias_blur; BORDER_REFLECT_101), float32 as in OpenCV."""
    if radius <= 8:
        span, ksize = torch.arange(-8, 9, dtype=torch.float64), 3
    else:
        span, ksize = torch.arange(-radius, radius + 1, dtype=torch.float64), 5
    yy, xx = torch.meshgrid(span, span, indexing="ij")
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).to(torch.float32)
    disk = (disk / disk.sum()).to(torch.float64)
    taps = ops.opencv_gaussian_kernel1d(ksize, alias_blur)
    smooth = ops.correlate1d(ops.correlate1d(disk, taps, 0, "mirror"), taps, 1, "mirror")
    return smooth.to(torch.float32)


def _defocus_blur(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """cv2.filter2D with the disk kernel, BORDER_REFLECT_101."""
    return ops.filter2d(x, disk_kernel(*p), "mirror")


def _draw_motion(x: torch.Tensor, p: Any, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    return {"angle": _uniform((x.shape[0],), -45.0, 45.0, gen)}


def _motion_blur(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """ImageMagick 6 motion blur (radius, sigma) at a uniform angle in [-45, 45) degrees per image, written out
    as the reference's 8-bit PNG (its Q16 quantum truncated to 8 bits)."""
    return ops.quantum_to_8bit(ops.motion_blur(x, p[0], p[1], d["angle"]))


def _zoom_blur(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of x and its clipped zooms by each factor of numpy.arange(*p) (1.0 included, as in the reference)."""
    factors = zoom_factors(*p)
    out = x.clone()
    for factor in factors:
        out.add_(ops.clipped_zoom(x, factor))
    return out / (len(factors) + 1)


def _draw_glass(x: torch.Tensor, p: tuple, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    _, delta, iterations = p
    b, _, h, w = x.shape
    shape = (b, iterations, max(h - 2 * delta, 0), max(w - 2 * delta, 0))
    return {"dy": torch.randint(-delta, delta, shape, generator=gen),
            "dx": torch.randint(-delta, delta, shape, generator=gen)}


def glass_sources(h: int, w: int, delta: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Where each pixel's value comes from after one pass of the reference's glass loop, as flat indices.

    The reference visits (r, c), r in [delta + 1, h - delta], c in [delta + 1, w - delta], in reverse raster
    order and runs ``x[r, c], x[r', c'] = x[r', c'], x[r, c]`` on numpy views: x[r', c'] is copied into x[r, c]
    and x[r', c'] keeps its value (not a swap). So each visited pixel is written once per pass, with its
    source's value at that moment: the source's new value if the source was visited earlier (it lies later in
    raster order and is itself visited), else its value from before the pass. Following those links from a
    pixel ends at a pixel whose source still held its old value; the links only go forward in raster order,
    so pointer doubling finds every chain's end in log2(longest chain) gathers, equal to the loop.

    Args:
        dy, dx: (B, h - 2 delta, w - 2 delta) integer offsets in [-delta, delta - 1] of the visited pixels.

    Returns:
        (B, h w) int64: the pass's output pixel p holds the input pixel sources[p].
    """
    b, dev = dy.shape[0], dy.device
    flat = torch.arange(h * w, device=dev).view(1, h, w).repeat(b, 1, 1)        # (B, H, W) identity
    inner = (slice(None), slice(delta + 1, h - delta + 1), slice(delta + 1, w - delta + 1))
    visited = torch.zeros(h, w, dtype=torch.bool, device=dev)
    visited[inner[1:]] = True
    src = flat.clone()
    src[inner] = flat[inner] + dy.to(dev) * w + dx.to(dev)
    src, visited = src.view(b, -1), visited.view(-1)
    forward = (src > flat.view(b, -1)) & visited[src]               # the source was already rewritten
    link = torch.where(forward, src, flat.view(b, -1))              # chain ends link to themselves
    while True:
        jumped = link.gather(1, link)
        if torch.equal(jumped, link):
            return src.gather(1, link)
        link = jumped


def _exact_8bit(x: torch.Tensor) -> torch.Tensor:
    """x in float64; a batch that holds 8-bit values (x == round(255 x) / 255 in its dtype, as decoded images
    do) gets them exactly (k / 255 in float64, as the reference's uint8 / 255.), so that a truncation to 8 bits
    after a blur falls on the reference's side."""
    levels = torch.round(x.double() * 255)
    if x.dtype != torch.float64 and torch.equal((levels / 255).to(x.dtype), x):
        return levels / 255
    return x.double()


def _glass_blur(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """Gaussian blur, 8-bit truncation, the reference's local pixel copies (:func:`glass_sources`, one pass per
    iteration), Gaussian blur."""
    sigma, delta, iterations = p
    b, c, h, w = x.shape
    y = (torch.floor(ops.gaussian_filter_scipy_order(_exact_8bit(x), sigma) * 255) / 255).to(x.dtype)
    if d["dy"].shape[-1] > 0 and d["dy"].shape[-2] > 0:
        index = torch.arange(h * w, device=x.device).expand(b, -1)                # (B, H W)
        for i in range(iterations):                                               # compose the passes
            index = index.gather(1, glass_sources(h, w, delta, d["dy"][:, i], d["dx"][:, i]).to(x.device))
        y = y.reshape(b, c, h * w).gather(2, index.unsqueeze(1).expand(b, c, -1)).view(b, c, h, w)
    return ops.gaussian_filter(y, sigma)


# ------------------------------------------------------------------------------------------ weather

def _draw_snow(x: torch.Tensor, p: tuple, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    b, _, h, w = x.shape
    return {"layer": torch.randn((b, 1, h, w), generator=gen), "angle": _uniform((b,), -135.0, -45.0, gen)}


def snow_layer(noise: torch.Tensor, loc: float, scale: float, zoom: float, threshold: float) -> torch.Tensor:
    """The reference's still snow: N(loc, scale) noise, clipped zoom, values below threshold zeroed, 8-bit
    (truncated, as the PIL 'L' image it becomes). (B, 1, H, W)."""
    layer = ops.clipped_zoom(loc + scale * noise, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    return torch.floor(layer.clamp(0, 1) * 255) / 255


def add_snow(x: torch.Tensor, layer: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor,
             image_weight: float) -> torch.Tensor:
    """Blur the snow layer (ImageMagick motion blur, 8-bit result), lift the image towards grey, add the layer
    and its 180-degree rotation."""
    moving = ops.quantum_to_8bit(ops.motion_blur(layer, radius, sigma, angles))
    lift_gain, lift_bias = _SNOW_LIFT
    lifted = torch.maximum(x, ops.rgb_to_gray(x) * lift_gain + lift_bias)
    x = image_weight * x + (1 - image_weight) * lifted
    return x + moving + moving.flip(-1).flip(-2)


def _snow(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """Snow: still layer, motion blur at a uniform angle in [-135, -45), blend (the reference's snow)."""
    loc, scale, zoom, threshold, radius, sigma, weight = p
    layer = snow_layer(d["layer"].to(x), loc, scale, zoom, threshold)
    return add_snow(x, layer, radius, sigma, d["angle"], weight)


def _draw_frost(x: torch.Tensor, p: Any, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Which photograph (the reference's randint(5)) and where to crop it (U[0, 1) per axis, scaled by the
    number of offsets once the photograph's size is known: floor(u n), the law of randint(0, n))."""
    b = x.shape[0]
    return {"index": torch.randint(0, FROST_CHOICES, (b,), generator=gen),
            "offset": torch.rand((b, 2), generator=gen, dtype=torch.float64)}


@functools.lru_cache(maxsize=16)
def frost_image(index: int, scale: float) -> torch.Tensor:
    """Frost photograph ``index`` (0-based in :data:`FROST_FILES`) as the reference holds it before the crop:
    decoded as RGB (alpha dropped, as cv2.imread does), resized by ``scale`` with cv2.resize INTER_LINEAR
    unless scale is 1. (3, H, W) uint8 on the CPU."""
    with Image.open(package_file("data", "files", "frost", FROST_FILES[index])) as img:
        rgb = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)
    return rgb if scale == 1.0 else ops.resize_linear_8bit(rgb, scale, scale)


def _frost_scale(index: int, scale: float, h: int, w: int) -> float:
    """The table's resize factor, or (images larger than the reference's photographs allow) the smallest factor
    that leaves at least one crop offset on each axis."""
    full = frost_image(index, 1.0)
    scaled = frost_image(index, scale)
    if scaled.shape[1] > h and scaled.shape[2] > w:
        return scale
    return max(scale, (h + 1.5) / full.shape[1], (w + 1.5) / full.shape[2])


def frost_crops(draws: dict[str, torch.Tensor], h: int, w: int, scale: float) -> list[tuple[int, float, int, int]]:
    """(photograph index, resize factor, top, left) of each image's frost crop, from its draws: the reference's
    randint(0, H_frost - h) and randint(0, W_frost - w) as floor(u n)."""
    crops = []
    for index, (u_top, u_left) in zip(draws["index"].tolist(), draws["offset"].tolist(), strict=True):
        factor = _frost_scale(index, scale, h, w)
        _, fh, fw = frost_image(index, factor).shape
        crops.append((index, factor, min(int(u_top * (fh - h)), fh - h - 1), min(int(u_left * (fw - w)), fw - w - 1)))
    return crops


def _frost(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """c_image x + c_frost frost, with an (H, W) crop of one of the reference's frost photographs (resized for the
    64 and 32 px tables, as the reference does)."""
    image_weight, frost_weight, scale = p
    h, w = x.shape[-2:]
    crops = [frost_image(i, f)[:, top:top + h, left:left + w] for i, f, top, left in frost_crops(d, h, w, scale)]
    frost = torch.stack(crops).to(x.device, x.dtype)
    return image_weight * x + frost * (frost_weight / 255)


def _mapsize(h: int, w: int) -> int:
    return 1 << max(1, math.ceil(math.log2(max(h, w))))


def _draw_fog(x: torch.Tensor, p: Any, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    b = x.shape[0]
    sides = ops.plasma_draw_shapes(_mapsize(*x.shape[-2:]))
    return {"plasma": torch.rand((b, sum(s * s for s in sides)), generator=gen, dtype=torch.float64)}


def plasma_from_draws(flat: torch.Tensor, mapsize: int, decay: float) -> torch.Tensor:
    """Split the flat (B, K) uniforms of a fog draw into the plasma fractal's steps and build the map."""
    parts, start = [], 0
    for side in ops.plasma_draw_shapes(mapsize):
        parts.append(flat[:, start:start + side * side].reshape(-1, side, side))
        start += side * side
    return ops.plasma_fractal(parts, mapsize, decay)


def _fog(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """x + amount plasma (cropped to the image), rescaled by max / (max + amount) with the image's max."""
    amount, decay = p
    h, w = x.shape[-2:]
    plasma = plasma_from_draws(d["plasma"].to(x), _mapsize(h, w), decay)[:, None, :h, :w]
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + amount * plasma) * top / (top + amount)


def _draw_spatter(x: torch.Tensor, p: Any, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    b, _, h, w = x.shape
    return {"liquid": torch.randn((b, 1, h, w), generator=gen)}


def water_mask(liquid: torch.Tensor) -> torch.Tensor:
    """The reference's water-drop shading (before scaling) from an 8-bit liquid layer (B, 1, H, W) 0..255:
    Canny edges -> chamfer distance (cap 20) -> 3x3 mean, truncation -> histogram equalisation -> emboss
    (8-bit saturation) -> 3x3 mean (8-bit rounding) -> times the liquid, normalised to max 1. The local steps
    run a few images at a time (cache), the distance transform's row sweeps once for the batch."""
    work = liquid.to(torch.float64)
    parts = _chunks(work)
    edges = torch.cat([ops.canny(work[part, 0], *CANNY_THRESHOLDS) for part in parts])
    dist = ops.chamfer_distance(edges, 20.0).unsqueeze(1)                        # (B, 1, H, W) float32
    return torch.cat([_water_shading(work[part], dist[part]) for part in parts])


def _water_shading(liquid: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """The steps of :func:`water_mask` after the distance transform (float64 liquid, float32 distances); after
    the first truncation every value is an 8-bit integer, so the rest runs in exact integer arithmetic."""
    dist = torch.floor(ops.box_mean3(dist.to(torch.float64)).to(torch.float32))                   # uint8 cast
    dist = ops.equalize_hist(dist[:, 0].to(torch.int32)).unsqueeze(1)
    dist = ops.correlate_small(dist, EMBOSS, "mirror").clamp_(0, 255)                 # cv2.filter2D to CV_8U
    dist = ops.box_sum3(dist)
    dist = torch.div(dist * 2 + 9, 18, rounding_mode="floor")          # cvRound(sum / 9): never a tie
    m = liquid * dist
    return m / m.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)


def spatter_layer(like: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """The spatter mask of a whole batch, (B, 1, H, W) in like's dtype: liquid layer N(loc, scale) smoothed
    (sigma) and thresholded, then water drops' shading x intensity (mud = 0) or the mud mask (mud = 1). It
    depends on the draws only, so it is made once per batch before the chunked blend."""
    loc, scale, sigma, threshold, intensity, mud = p
    liquid = ops.gaussian_filter(loc + scale * d["liquid"].to(like), sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mud == 0:
        return water_mask(torch.floor(liquid * 255).clamp(0, 255)).to(like.dtype) * intensity
    m = ops.gaussian_filter((liquid > threshold).to(like.dtype), intensity)
    return torch.where(m < 0.8, torch.zeros_like(m), m)


def _spatter(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """Water drops add pale turquoise (mud = 0); mud replaces the image with brown (mud = 1)."""
    m = d["layer"].to(x)
    if p[5] == 0:
        return x + m * torch.tensor(WATER_RGB, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    return x * (1 - m) + m * torch.tensor(MUD_RGB, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255


# ------------------------------------------------------------------------------------------ digital

def _brightness(x: torch.Tensor, c: float, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """HSV value + c (clipped), through skimage's HSV conversion (closed form)."""
    return ops.shift_value(x, c)


def _saturate(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """HSV saturation * factor + offset (clipped), through skimage's HSV conversion (closed form)."""
    return ops.scale_saturation(x, p[0], p[1])


def _contrast(x: torch.Tensor, c: float, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """(x - channel mean) c + channel mean."""
    return torch.lerp(x.mean(dim=(2, 3), keepdim=True), x, c)


def _pixelate(x: torch.Tensor, c: float, d: dict[str, torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """Pillow BOX resize to int(side c), then BOX resize back (each output pixel copies one small pixel, written
    into ``out``); clamped on the small image (clamping commutes with copying)."""
    h, w = x.shape[-2:]
    small = ops.resize_box(x, int(h * c), int(w * c)).clamp_(0.0, 1.0)
    return ops.resize_box(small, h, w, out=out)


#: JPEG work runs in groups of about this many values, so that the conversions around the codec stay in cache
JPEG_GROUP_VALUES = 1 << 18


def _to_8bit_hwc(x: torch.Tensor, rounding: str) -> np.ndarray:
    """(B, 3, H, W) floats -> (B, H, W, 3) uint8: x 255 clamped to [0, 255], rounded ("round") or truncated
    ("floor", np.uint8's cast). The layout changes in float (torch's channels-last kernel) and the cast runs in
    numpy: both several times faster on the CPU than torch's uint8 copies."""
    levels = x.detach().to("cpu", memory_format=torch.channels_last, copy=True).mul_(255).clamp_(0, 255)
    levels = levels.round_() if rounding == "round" else levels.floor_()
    return levels.permute(0, 2, 3, 1).numpy().astype(np.uint8)


def _jpeg_roundtrip(x: torch.Tensor, quality: int, rounding: str, out: torch.Tensor | None = None) -> torch.Tensor:
    """x to 8 bits (:func:`_to_8bit_hwc`), then libjpeg (torchvision.io) encode at ``quality`` and decode of each
    image; returns (B, 3, H, W) in [0, 1] in x's dtype, in ``out`` (x itself allowed: each group is read before
    it is written) or a new CPU tensor moved to x's device."""
    fresh = out is None
    out = torch.empty(x.shape, dtype=x.dtype) if fresh else out
    per = max(1, JPEG_GROUP_VALUES // max(1, x[0].numel()))
    for start in range(0, len(x), per):
        hwc = torch.from_numpy(_to_8bit_hwc(x[start:start + per], rounding))
        # torchvision's own operator: its Python wrapper costs a quarter of the encode on a 224 px image
        encoded = [torch.ops.image.encode_jpeg(image, int(quality)) for image in hwc.permute(0, 3, 1, 2)]
        decoded = torchvision.io.decode_jpeg(encoded, mode=torchvision.io.ImageReadMode.RGB)  # CHW views of HWC
        planar = np.stack([image.numpy() for image in decoded])                  # (G, 3, H, W) uint8, reordered
        out[start:start + per].copy_(torch.from_numpy(planar))
    out.div_(255)
    return out.to(x.device) if fresh else out


def _jpeg_compression(x: torch.Tensor, quality: int, d: dict[str, torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """JPEG at the quality, through libjpeg (torchvision.io) on the CPU, from the image rounded to 8 bits."""
    return _jpeg_roundtrip(x, quality, "round", out=out)


def _draw_elastic(x: torch.Tensor, p: Any, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    b, _, h, w = x.shape
    return {"affine": torch.rand((b, 3, 2), generator=gen, dtype=torch.float64),
            "dx": torch.rand((b, 1, h, w), generator=gen), "dy": torch.rand((b, 1, h, w), generator=gen)}


def elastic_affine(h: int, w: int, jitter: torch.Tensor) -> torch.Tensor:
    """The inverse (dst -> src) 2x3 matrices of the reference's random affine, one per image (float64).

    Reference points (in float32, as OpenCV (x, y) pairs) sit around the centre (h // 2, w // 2) at +-min // 3;
    each coordinate moves by jitter (already in pixels, float32); cv2.getAffineTransform maps the old points to
    the new ones and cv2.warpAffine samples the source through the inverse.

    Args:
        jitter: (B, 3, 2) offsets in pixels.
    """
    c0, c1, s = float(h // 2), float(w // 2), float(min(h, w) // 3)
    src = torch.tensor([[c0 + s, c1 + s], [c0 + s, c1 - s], [c0 - s, c1 - s]], dtype=torch.float32)
    dst = (src + jitter.to(torch.float32)).to(torch.float64)
    ones = torch.ones(3, 1, dtype=torch.float64)
    forward = torch.linalg.solve(torch.cat([src.to(torch.float64), ones], 1).expand(len(dst), 3, 3), dst)
    full = torch.zeros(len(dst), 3, 3, dtype=torch.float64)
    full[:, :2, :] = forward.transpose(1, 2)
    full[:, 2, 2] = 1
    return torch.linalg.inv(full)[:, :2, :]


def _elastic_transform(x: torch.Tensor, p: tuple, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """Random affine (border BORDER_REFLECT_101), then a smooth displacement field (scipy map_coordinates,
    order 1, 'reflect'): fields are alpha * gaussian(U[-1, 1), sigma, 'reflect', truncate 3), kept in float32
    as in the reference. Positions are computed in x's dtype."""
    alpha, sigma, jitter = p
    b, _, h, w = x.shape
    inverse = elastic_affine(h, w, jitter * (2 * d["affine"] - 1)).to(x.device, x.dtype)
    rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, -1, 1)
    cols = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, -1)
    src_c = inverse[:, 0, 0, None, None] * cols + inverse[:, 0, 1, None, None] * rows + inverse[:, 0, 2, None, None]
    src_r = inverse[:, 1, 0, None, None] * cols + inverse[:, 1, 1, None, None] * rows + inverse[:, 1, 2, None, None]
    warped = ops.sample_bilinear(x, src_r, src_c, "mirror")
    dx, dy = (ops.gaussian_filter(2 * d[key].to(x) - 1, sigma, "reflect", truncate=3.0)[:, 0] * alpha
              for key in ("dx", "dy"))
    return ops.sample_bilinear(warped, rows + dy.float().to(x.dtype), cols + dx.float().to(x.dtype), "reflect")


# ------------------------------------------------------------------------------------------ release save step

def release_save_for(height: int, width: int) -> str:
    """The save step of the set released at this image size (:data:`RELEASED_SAVE_BY_SIDE`); "none" for sizes
    no set was released at."""
    return RELEASED_SAVE_BY_SIDE.get(height, "none") if height == width else "none"


def save_like_release(x: torch.Tensor, mode: str, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """The save step of the released sets, applied to corrupted images in [0, 1].

    Args:
        x: (B, 3, H, W) in [0, 1] (a corruption's output).
        mode: "none", "uint8" (x 255 truncated to 8 bits, np.uint8's cast, back to [0, 1]) or "jpeg85" (the same
            8 bits, then a JPEG at quality 85 decoded again, as Pillow writes and reads it).
        out: optional tensor like x (x itself allowed) for the result.

    Returns:
        (B, 3, H, W) in x's dtype on x's device (``out`` when given).

    Raises:
        ConfigError: an unknown mode.
    """
    if mode not in RELEASE_SAVES:
        raise ConfigError(f"release save {mode!r} is not one of {', '.join(RELEASE_SAVES)}"
                          f"{did_you_mean(mode, RELEASE_SAVES)}")
    out = torch.empty_like(x) if out is None else out
    if mode == "jpeg85":
        return _jpeg_roundtrip(x, RELEASE_JPEG_QUALITY, "floor", out=out)
    if mode == "uint8":
        return torch.mul(x, 255, out=out).clamp_(0, 255).floor_().div_(255)
    return out if out is x else out.copy_(x)


# ------------------------------------------------------------------------------------------ registry and API

_Draw = Callable[[torch.Tensor, Any, "torch.Generator | None"], dict[str, torch.Tensor]]
_Apply = Callable[[torch.Tensor, Any, dict[str, torch.Tensor]], torch.Tensor]


#: corruptions whose implementation writes its (already clamped) result into the output slice it is given,
#: sparing a full-size copy: their results lie in [0, 1] by construction
_WRITES_OUT = frozenset({"pixelate", "jpeg_compression"})


def _no_draw(x: torch.Tensor, p: Any, gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    return {}


_IMPLEMENTATIONS: dict[str, tuple[_Draw, _Apply]] = {
    "gaussian_noise": (_draw_gaussian, _gaussian_noise), "shot_noise": (_draw_shot, _shot_noise),
    "impulse_noise": (_draw_impulse, _impulse_noise), "speckle_noise": (_draw_gaussian, _speckle_noise),
    "defocus_blur": (_no_draw, _defocus_blur), "glass_blur": (_draw_glass, _glass_blur),
    "motion_blur": (_draw_motion, _motion_blur), "zoom_blur": (_no_draw, _zoom_blur),
    "gaussian_blur": (_no_draw, _gaussian_blur), "snow": (_draw_snow, _snow), "frost": (_draw_frost, _frost),
    "fog": (_draw_fog, _fog), "spatter": (_draw_spatter, _spatter), "brightness": (_no_draw, _brightness),
    "contrast": (_no_draw, _contrast), "saturate": (_no_draw, _saturate), "pixelate": (_no_draw, _pixelate),
    "jpeg_compression": (_no_draw, _jpeg_compression), "elastic_transform": (_draw_elastic, _elastic_transform),
}


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ConfigError(f"corruptions take a float batch (B, 3, H, W) in [0, 1]; got {tuple(x.shape)} {x.dtype}")


def _resolve(x: torch.Tensor, name: str, severity: int, table: str | None) -> Any:
    """The severity's parameters, plus the table's own constants where a corruption has them (frost's resize)."""
    _check(name, severity)
    _check_images(x)
    table = table or table_for(*x.shape[-2:])
    params = corruption_params(name, severity, table)
    return (*params, FROST_SCALE[table]) if name == "frost" else params


def draw_randomness(x: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None, *,
                    table: str | None = None) -> dict[str, torch.Tensor]:
    """Every random number the corruption needs for this batch, drawn on the CPU from ``generator``.

    Args:
        x: (B, 3, H, W) images in [0, 1] (only shot noise reads the values: its Poisson counts depend on them).
        name, severity: the corruption (see :data:`CORRUPTIONS`) and its severity 1..5.
        generator: a CPU generator; None uses torch's default one.
        table: parameter table; default :func:`table_for` the image size.

    Returns:
        name -> CPU tensor; empty for deterministic corruptions.
    """
    params = _resolve(x, name, severity, table)
    return _IMPLEMENTATIONS[name][0](x, params, generator)


def apply_corruption(x: torch.Tensor, name: str, severity: int, draws: dict[str, torch.Tensor], *,
                     table: str | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """The corruption of ``x`` with the given random draws (from :func:`draw_randomness`).

    Args:
        out: optional tensor like x (not x itself) to write the result into; reusing one across calls spares
            the page faults of a fresh large output (a 100-image chunk at 224 px is 60 MB).

    Returns:
        (B, 3, H, W) on x's device and in x's dtype, clamped to [0, 1] (``out`` when given).
    """
    params = _resolve(x, name, severity, table)
    work, apply = _work(x), _IMPLEMENTATIONS[name][1]
    result = _output(x, work, out)
    if name == "spatter":                     # the layer's distance transform sweeps rows once for the batch
        draws = {"layer": spatter_layer(work, params, draws)}
    for part in _chunks(work):
        sub = {k: v[part] for k, v in draws.items()}
        if name in _WRITES_OUT:
            apply(work[part], params, sub, result[part])
        else:
            torch.clamp(apply(work[part], params, sub), 0.0, 1.0, out=result[part])
    if out is not None and result is not out:
        return out.copy_(result)
    return result.to(x.dtype)


def _output(x: torch.Tensor, work: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """Where a corruption writes: ``out`` when it can take the compute dtype, else a new tensor."""
    if out is None:
        return torch.empty_like(work)
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device or out.data_ptr() == x.data_ptr():
        raise ConfigError(f"corruption out= must be a separate tensor of x's shape, dtype and device "
                          f"{tuple(x.shape)} {x.dtype} {x.device}; got {tuple(out.shape)} {out.dtype} {out.device}")
    return out if out.dtype == work.dtype else torch.empty_like(work)


def _chunks(x: torch.Tensor) -> list[slice]:
    """Batch slices of at most :data:`CPU_CHUNK_VALUES` values on the CPU (whole images), else the batch."""
    if x.device.type != "cpu":
        return [slice(0, len(x))]
    per = max(1, CPU_CHUNK_VALUES // max(1, x[0].numel()))
    return [slice(i, i + per) for i in range(0, len(x), per)]


def corrupt(x: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None, *,
            table: str | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Apply an ImageNet-C corruption to a batch.

    Args:
        x: (B, 3, H, W) float images in [0, 1], on any device.
        name: one of :data:`ALL_CORRUPTIONS`.
        severity: 1..5.
        generator: CPU generator for the random corruptions (same seed, same output on every device).
        table: "cifar", "tiny" or "imagenet"; default chosen from the image size (:func:`table_for`).
        out: optional separate tensor like x that receives the result (see :func:`apply_corruption`).

    Returns:
        (B, 3, H, W), same device and dtype as x, in [0, 1].

    Raises:
        ConfigError: unknown corruption or table, severity outside 1..5, a batch of the wrong shape, or an
            ``out`` that does not match x.
    """
    draws = draw_randomness(x, name, severity, generator, table=table)
    log.debug("%s severity %d on %s images %s (table %s)", name, severity, x.device, tuple(x.shape),
              table or table_for(*x.shape[-2:]))
    return apply_corruption(x, name, severity, draws, table=table, out=out)
