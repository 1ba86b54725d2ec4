"""ImageNet-P style perturbation sequences, batched in torch on any device.

Each perturbation turns an image into a short video whose frames change a little at a time; the FP / T5D
metrics count prediction flips between consecutive frames (noise perturbations: between each frame and the
first). Definitions and per-frame schedules follow Hendrycks and Dietterich (ICLR 2019) and the authors'
generators in github.com/hendrycks/robustness: ``ImageNet-P/create_p/make_imagenet_p.py`` (table "imagenet",
224 px crops of 256 px images) and ``make_cifar_p.py`` (table "cifar", 32 px). Table choice: "cifar" when
sqrt(H W) < sqrt(32 x 224) (about 85 px), else "imagenet"; pass ``table=`` to choose.

Sequence lengths are the reference's: 31 frames, translate 41 (ImageNet-P); CIFAR-P has 21 motion-blur frames
and 16 translate frames. Frame 0 is the reference's first frame: the clean image for the noise perturbations
and zoom blur, the first setting of the schedule otherwise (e.g. brightness -0.3, translate -20 px).

Deviations from the reference generators:

- Frames are floats in [0, 1]; the reference stored 8-bit frames in H.264 MP4 videos (CIFAR-P: uint8 arrays).
- Geometric perturbations (translate, rotate, scale, shear, zoom blur's zooms, tilt) fill the area that enters
  from outside the image with black. ImageNet-P transformed the 256 px image before the 224 crop, so content
  came from outside the crop; pass the larger image and ``crop_size=224`` to reproduce that (noise, blur,
  brightness, snow and spatter are applied to the centre crop, as in the reference).
- Affine frames use Pillow's bilinear affine sampling with torchvision 0.2's rotation/scale/shear matrix around
  the image centre; the centre convention may differ from the reference's by half a pixel. Tilt follows
  cv2.warpPerspective (bilinear, black border) without OpenCV's 1/32-pixel rounding.
- Motion blur and snow reproduce ImageMagick 6's motion blur (see :mod:`vitbench.data.corruptions`).
- The CIFAR-P evaluation script of the authors tests spatter instead of snow; the lists below follow the paper.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vitbench.data import corruptions as C
from vitbench.data import image_ops as ops
from vitbench.errors import ConfigError, did_you_mean

log = logging.getLogger(__name__)

TEST_PERTURBATIONS: tuple[str, ...] = ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
                                       "brightness", "translate", "rotate", "tilt", "scale")
VALIDATION_PERTURBATIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "shear")
NOISE_PERTURBATIONS: tuple[str, ...] = ("gaussian_noise", "shot_noise", "speckle_noise")
ALL_PERTURBATIONS: tuple[str, ...] = TEST_PERTURBATIONS + VALIDATION_PERTURBATIONS
SEQUENCE_TABLES: tuple[str, ...] = ("cifar", "imagenet")
_CIFAR_BOUND = math.sqrt(C.TABLE_SIZES["cifar"] * C.TABLE_SIZES["imagenet"])
DEFAULT_FRAMES = 31
#: frame index of the unperturbed setting for the schedules centred on 15 (brightness, rotate, tilt, shear)
_CENTRE = 15


@dataclass(frozen=True)
class PerturbationInfo:
    """A registered perturbation: validation or test set, and whether frames are compared with the first."""

    name: str
    validation: bool
    noise: bool


PERTURBATIONS: dict[str, PerturbationInfo] = {
    n: PerturbationInfo(n, n in VALIDATION_PERTURBATIONS, n in NOISE_PERTURBATIONS) for n in ALL_PERTURBATIONS}

# ------------------------------------------------------------------------------------------ schedules
# Constants of each table, transcribed from the reference generators (uncommented first settings; the
# "_2" / "_3" variants in the reference are harder versions that were not released as the benchmark).

SCHEDULES: dict[str, dict[str, dict[str, Any]]] = {
    "imagenet": {
        "gaussian_noise": {"sigma": 0.03},
        "shot_noise": {"rate": 300},
        "speckle_noise": {"sigma": 0.05},
        "motion_blur": {"radius": 10, "sigma": 3, "frames": 31, "angle_step": 4, "angle_offset": -30},
        "zoom_blur": {"scale_step": 0.004},
        "snow": {"loc": 0.05, "scale": 0.3, "zoom": 3, "threshold": 0.5, "radius": 14, "sigma": 4,
                 "angle_step": 4, "angle_start": -150, "weight": 0.85},
        "brightness": {"percent_step": 2},
        "translate": {"frames": 41, "shift_offset": -20},
        "rotate": {"degree_step": 1},
        "tilt": {"degree_step": 1},
        "scale": {"percent_start": 40, "percent_step": 2.5},
        "gaussian_blur": {"sigma_start": 0.25, "sigma_step": 0.035, "truncate": 6.0},
        "spatter": {"loc": 0.65, "scale": 0.27, "sigma": 3.7, "threshold": 0.69, "intensity": 0.6,
                    "drip": (0.05, 0.1, 0.15, 0.7)},
        "shear": {"degree_step": 1},
    },
    "cifar": {
        "gaussian_noise": {"sigma": 0.02},
        "shot_noise": {"rate": 700},
        "speckle_noise": {"sigma": 0.05},
        "motion_blur": {"radius": 6, "sigma": 1.8, "frames": 21, "angle_step": 9, "angle_offset": -20},
        "zoom_blur": {"scale_step": 0.004},
        "snow": {"loc": 0.05, "scale": 0.3, "zoom": 2, "threshold": 0.5, "radius": 10, "sigma": 2,
                 "angle_step": 4, "angle_start": -150, "weight": 0.85},
        "brightness": {"percent_step": 1.5},
        "translate": {"frames": 16, "shift_offset": -7},
        "rotate": {"degree_step": 1},
        "tilt": {"degree_step": 0.75},
        "scale": {"percent_start": 70, "percent_step": 2},
        "gaussian_blur": {"sigma_start": 0.3, "sigma_step": 0.015, "truncate": 7.0},
        "spatter": {"loc": 0.6, "scale": 0.265, "sigma": 1.75, "threshold": 0.7, "intensity": 0.6,
                    "drip": (0.2, 0.8)},
        "shear": {"degree_step": 1},
    },
}


def sequence_table_for(height: int, width: int) -> str:
    """"cifar" for images nearer 32 px than 224 px on a log scale, else "imagenet"."""
    return "cifar" if math.sqrt(height * width) < _CIFAR_BOUND else "imagenet"


def sequence_length(name: str, table: str) -> int:
    """The reference number of frames of a perturbation in a table."""
    _check_name(name)
    return int(SCHEDULES[table][name].get("frames", DEFAULT_FRAMES))


def frame_parameters(name: str, table: str, n_frames: int | None = None) -> list[float]:
    """The per-frame setting of a scheduled perturbation (angle, shift, scale, sigma, brightness change).

    Noise perturbations return their constant level for every frame, zoom blur the zoom of the newest frame
    and spatter the number of drip steps the liquid layer has taken.
    """
    s = SCHEDULES[table][name]
    frames = range(n_frames or sequence_length(name, table))
    formulas: dict[str, Callable[[int], float]] = {
        "motion_blur": lambda i: (i + s["angle_offset"]) * s["angle_step"],
        "snow": lambda i: i * s["angle_step"] + s["angle_start"],
        "zoom_blur": lambda i: 1 + s["scale_step"] * i,
        "brightness": lambda i: (i - _CENTRE) * s["percent_step"] / 100.0,
        "translate": lambda i: float(i + s["shift_offset"]),
        "rotate": lambda i: (i - _CENTRE) * s["degree_step"],
        "tilt": lambda i: (i - _CENTRE) * s["degree_step"],
        "shear": lambda i: (i - _CENTRE) * s["degree_step"],
        "scale": lambda i: (i * s["percent_step"] + s["percent_start"]) / 100.0,
        "gaussian_blur": lambda i: s["sigma_start"] + s["sigma_step"] * i,
        "spatter": lambda i: float(i),                                   # drip steps applied to the layer
    }
    if name in formulas:
        return [float(formulas[name](i)) for i in frames]
    return [float(s.get("sigma", s.get("rate")))] * len(frames)   # noise: the constant level


def _check_name(name: str) -> None:
    if name not in PERTURBATIONS:
        raise ConfigError(f"unknown perturbation {name!r}{did_you_mean(name, PERTURBATIONS)}")

# ------------------------------------------------------------------------------------------ geometry


def _pil_affine(x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Pillow's Image.transform(AFFINE, BILINEAR): output pixel centre (c + .5, r + .5) maps through the 2x3
    inverse matrix to an input point; points outside the image rectangle are black, others are bilinear with
    clamped neighbours."""
    b, _, h, w = x.shape
    a = inverse.to(x.device, torch.float64)
    rr = torch.arange(h, dtype=torch.float64, device=x.device).view(-1, 1) + 0.5
    cc = torch.arange(w, dtype=torch.float64, device=x.device).view(1, -1) + 0.5
    u = a[0, 0] * cc + a[0, 1] * rr + a[0, 2]
    v = a[1, 0] * cc + a[1, 1] * rr + a[1, 2]
    inside = ((u >= 0) & (u < w) & (v >= 0) & (v < h)).to(x.dtype)
    out = ops.sample_bilinear(x, (v - 0.5).expand(b, h, w), (u - 0.5).expand(b, h, w), "nearest")
    return out * inside


def affine_inverse(h: int, w: int, angle: float = 0.0, scale: float = 1.0, shear: float = 0.0) -> torch.Tensor:
    """The output -> input 2x3 matrix of torchvision 0.2's functional.affine (rotation a, shear s, scale k
    about the centre): forward RSS = k [[cos a, -sin(a + s)], [sin a, cos(a + s)]]."""
    a, s = math.radians(angle), math.radians(shear)
    rss = torch.tensor([[math.cos(a), -math.sin(a + s)], [math.sin(a), math.cos(a + s)]], dtype=torch.float64)
    inv = torch.linalg.inv(rss * scale)
    centre = torch.tensor([w * 0.5, h * 0.5], dtype=torch.float64)
    return torch.cat([inv, (centre - inv @ centre).view(2, 1)], dim=1)


def _translate(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Shift right by ``shift`` pixels (left if negative), black fill (torchvision affine translate (shift, 0))."""
    if abs(shift) >= x.shape[-1]:
        return torch.zeros_like(x)
    return ops.shift(x, 0, -shift, 0.0)


def tilt_homography(h: int, w: int, degrees: float) -> torch.Tensor:
    """The reference's tilt: 3-D rotation about x and y by the same angle, camera at f = sqrt(w^2 + h^2);
    returns the dst -> src 3x3 matrix (the inverse of the one passed to cv2.warpPerspective)."""
    t = math.radians(degrees)
    f = math.sqrt(w ** 2 + h ** 2)
    p1 = torch.tensor([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]], dtype=torch.float64)
    rx = torch.tensor([[1, 0, 0, 0], [0, math.cos(t), -math.sin(t), 0], [0, math.sin(t), math.cos(t), 0],
                       [0, 0, 0, 1]], dtype=torch.float64)
    ry = torch.tensor([[math.cos(t), 0, -math.sin(t), 0], [0, 1, 0, 0], [math.sin(t), 0, math.cos(t), 0],
                       [0, 0, 0, 1]], dtype=torch.float64)
    tz = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]], dtype=torch.float64)
    p2 = torch.tensor([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]], dtype=torch.float64)
    return torch.linalg.inv(p2 @ tz @ rx @ ry @ p1)


def _tilt(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """cv2.warpPerspective(x, forward, (w, h)): bilinear, black outside."""
    b, _, h, w = x.shape
    m = tilt_homography(h, w, degrees).to(x.device)
    rr = torch.arange(h, dtype=torch.float64, device=x.device).view(-1, 1)
    cc = torch.arange(w, dtype=torch.float64, device=x.device).view(1, -1)
    den = m[2, 0] * cc + m[2, 1] * rr + m[2, 2]
    u = (m[0, 0] * cc + m[0, 1] * rr + m[0, 2]) / den
    v = (m[1, 0] * cc + m[1, 1] * rr + m[1, 2]) / den
    return ops.sample_bilinear(x, v.expand(b, h, w), u.expand(b, h, w), "constant")


def _centre_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None:
        return x
    h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]

# ------------------------------------------------------------------------------------------ sequences


def _noise_frames(x: torch.Tensor, name: str, s: dict, n: int, gen: torch.Generator | None) -> list[torch.Tensor]:
    frames = [x]
    rates = x.detach().to("cpu", torch.float64).clamp(0, 1) * s["rate"] if name == "shot_noise" else None
    for _ in range(1, n):
        if rates is not None:
            frames.append(torch.poisson(rates, generator=gen).to(x) / s["rate"])
        else:
            z = torch.randn(tuple(x.shape), generator=gen).to(x)
            frames.append(x + s["sigma"] * z * (x if name == "speckle_noise" else 1.0))
    return frames


def _zoom_frames(x: torch.Tensor, scales: list[float], crop: int | None) -> list[torch.Tensor]:
    h, w = x.shape[-2:]
    total = _centre_crop(x, crop).clone()
    frames = [total.clone()]
    for i in range(1, len(scales)):
        zoomed = _pil_affine(x, affine_inverse(h, w, scale=scales[i]))
        total = total + _centre_crop(zoomed, crop)
        frames.append(total / (i + 1))
    return frames


def _snow_frames(x: torch.Tensor, s: dict, params: list[float], gen: torch.Generator | None) -> list[torch.Tensor]:
    b, _, h, w = x.shape
    noise = torch.randn((b, 1, h, w), generator=gen).to(x)
    layer = C.snow_layer(noise, s["loc"], s["scale"], s["zoom"], s["threshold"])
    return [C.add_snow(x, layer, s["radius"], s["sigma"], torch.full((b,), angle, dtype=torch.float64), s["weight"])
            for angle in params]


def _spatter_frames(x: torch.Tensor, s: dict, n: int, gen: torch.Generator | None) -> list[torch.Tensor]:
    b, _, h, w = x.shape
    liquid = ops.gaussian_filter(s["loc"] + s["scale"] * torch.randn((b, 1, h, w), generator=gen).to(
        torch.float64).to(x.device), s["sigma"])
    liquid = torch.where(liquid < s["threshold"], torch.zeros_like(liquid), liquid)
    drip = tuple(reversed(s["drip"]))                # numpy.convolve(..., 'same') down each column
    colour = torch.tensor(C.WATER_RGB, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    layers = [liquid]
    for _ in range(1, n):
        layers.append(ops.correlate1d(layers[-1], drip, -2, "constant", anchor=len(drip) // 2))
    stacked = torch.floor(torch.stack(layers, dim=1) * 255).clamp(0, 255)          # (B, T, 1, H, W)
    masks = C.water_mask(stacked.flatten(0, 1)).view(b, n, 1, h, w).to(x.dtype) * s["intensity"]
    return list((x.unsqueeze(1) + masks * colour.unsqueeze(1)).unbind(dim=1))


def _frames(x: torch.Tensor, name: str, table: str, n: int, gen: torch.Generator | None,
            crop: int | None) -> list[torch.Tensor]:
    """The frames of one perturbation, each (B, 3, H', W') before clamping."""
    s = SCHEDULES[table][name]
    params = frame_parameters(name, table, n)
    h, w = x.shape[-2:]
    geometric: dict[str, Callable[[float], torch.Tensor]] = {
        "translate": lambda p: _translate(x, int(p)),
        "rotate": lambda p: _pil_affine(x, affine_inverse(h, w, angle=p)),
        "scale": lambda p: _pil_affine(x, affine_inverse(h, w, scale=p)),
        "shear": lambda p: _pil_affine(x, affine_inverse(h, w, shear=p)),
        "tilt": lambda p: _tilt(x, p),
    }
    if name in geometric:
        return [_centre_crop(geometric[name](p), crop) for p in params]
    if name == "zoom_blur":
        return _zoom_frames(x, params, crop)
    x = _centre_crop(x, crop)
    if name in NOISE_PERTURBATIONS:
        return _noise_frames(x, name, s, n, gen)
    if name == "motion_blur":
        return [ops.motion_blur(x, s["radius"], s["sigma"], torch.full((x.shape[0],), p, dtype=torch.float64))
                for p in params]
    if name == "brightness":
        return [ops.shift_value(x, p) for p in params]
    if name == "gaussian_blur":
        return [ops.gaussian_filter(x, p, "nearest", s["truncate"]) for p in params]
    if name == "snow":
        return _snow_frames(x, s, params, gen)
    return _spatter_frames(x, s, n, gen)


def perturbation_sequence(x: torch.Tensor, name: str, generator: torch.Generator | None = None,
                          n_frames: int | None = None, *, table: str | None = None,
                          crop_size: int | None = None) -> torch.Tensor:
    """An ImageNet-P perturbation sequence for every image of a batch.

    Args:
        x: (B, 3, H, W) float images in [0, 1], on any device.
        name: one of :data:`ALL_PERTURBATIONS`.
        generator: CPU generator for the random ones (noise frames, the snow layer, the spatter layer); draws
            are made on the CPU so every device gives the same frames.
        n_frames: how many leading frames of the reference schedule to return (default all of them, see
            :func:`sequence_length`); at most the reference length.
        table: "imagenet" or "cifar"; default from the (cropped) image size (:func:`sequence_table_for`).
        crop_size: if given, x is larger than the model input and frames are centre-cropped to this size, the
            geometric ones after the transformation (ImageNet-P: 256 px images, 224 px crops).

    Returns:
        (B, T, 3, S, S) (S = crop_size) or (B, T, 3, H, W), same device and dtype as x, in [0, 1].

    Raises:
        ConfigError: unknown perturbation or table, bad n_frames or crop_size, or a batch of the wrong shape.
    """
    _check_name(name)
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ConfigError(f"perturbations take a float batch (B, 3, H, W) in [0, 1]; got {tuple(x.shape)} {x.dtype}")
    h, w = x.shape[-2:]
    if crop_size is not None and not 0 < crop_size <= min(h, w):
        raise ConfigError(f"crop_size {crop_size} must be between 1 and the image side {min(h, w)}")
    table = table or (sequence_table_for(crop_size, crop_size) if crop_size else sequence_table_for(h, w))
    if table not in SCHEDULES:
        raise ConfigError(f"unknown perturbation table {table!r}{did_you_mean(table, SEQUENCE_TABLES)}")
    full = sequence_length(name, table)
    n = full if n_frames is None else n_frames
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= full:
        raise ConfigError(f"n_frames for {name} ({table}) must be an integer from 1 to {full}, got {n_frames!r}")
    work = x if x.dtype == torch.float64 else x.to(torch.float32)
    log.debug("%s: %d frames of %s images on %s (table %s)", name, n, tuple(x.shape), x.device, table)
    frames = _frames(work, name, table, n, generator, crop_size)
    return torch.stack(frames, dim=1).clamp(0.0, 1.0).to(x.dtype)
