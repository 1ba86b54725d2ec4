"""Batched image operations in torch that follow the libraries the ImageNet-C / -P reference code calls.

The corruption and perturbation generators of Hendrycks and Dietterich (2019; github.com/hendrycks/robustness,
``ImageNet-C/create_c`` and ``ImageNet-P/create_p``) run one image at a time through scipy.ndimage,
scikit-image, OpenCV, Pillow and ImageMagick 6. Each function here reproduces, on a batch (B, C, H, W) on any
device, the arithmetic and the border rule of the library call it stands for; the docstring names that call.
Border modes use scipy's names:

    nearest   aaaa|abcd|dddd   scipy 'nearest', OpenCV BORDER_REPLICATE, ImageMagick's 'edge' virtual pixels
    reflect   dcba|abcd|dcba   scipy 'reflect' (half-sample symmetric), OpenCV BORDER_REFLECT
    mirror     dcb|abcd|cba    scipy 'mirror', OpenCV BORDER_REFLECT_101 (OpenCV's default), torch 'reflect'
    constant  0000|abcd|0000   scipy 'grid-constant' (each neighbour zero), OpenCV BORDER_CONSTANT

Weights and indices are computed in float64 on the CPU and cast to the data's dtype and device, so a float64
input gives the reference arithmetic to rounding error; float32 inputs agree to about 1e-5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from vitbench.errors import ConfigError

BORDER_MODES: tuple[str, ...] = ("nearest", "reflect", "mirror", "constant")
#: luma weights of OpenCV's COLOR_RGB2GRAY
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
#: OpenCV's 5x5 chamfer mask for DIST_L2 (distanceTransform, maskSize 5): axial, diagonal, knight-move costs
CHAMFER_5X5 = (1.0, 1.4, 2.1969)


# ---------------------------------------------------------------------------------------------------- borders

def border_index(pos: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Map integer positions (any range) onto [0, n) with a border rule ('constant' clamps; mask it yourself)."""
    if mode in ("nearest", "constant"):
        return pos.clamp(0, n - 1)
    if n == 1:
        return torch.zeros_like(pos)
    if mode == "reflect":
        p = pos.remainder(2 * n)
        return torch.where(p >= n, 2 * n - 1 - p, p)
    if mode == "mirror":
        p = pos.remainder(2 * n - 2)
        return torch.where(p >= n, 2 * n - 2 - p, p)
    raise ConfigError(f"border mode {mode!r} is not one of {', '.join(BORDER_MODES)}")


def pad_axis(x: torch.Tensor, dim: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Extend ``x`` along ``dim`` by ``before`` and ``after`` samples with a border rule (any widths)."""
    n = x.shape[dim]
    pos = torch.arange(-before, n + after, device=x.device)
    out = _select(x, dim, border_index(pos, n, mode))
    if mode == "constant":
        shape = [1] * x.ndim
        shape[dim] = len(pos)
        out = out * ((pos >= 0) & (pos < n)).view(shape).to(x.dtype)
    return out


@lru_cache(maxsize=256)
def _filter_matrix(n: int, weights: tuple[float, ...], mode: str, anchor: int) -> np.ndarray:
    """(n, n) matrix M with (M @ v)[i] = sum_k w[k] v[border(i + k - anchor)] (zero outside for 'constant')."""
    matrix = np.zeros((n, n))
    rows = np.arange(n)
    for k, w in enumerate(weights):
        pos = rows + k - anchor
        src = border_index(torch.from_numpy(pos), n, mode).numpy()
        keep = (pos >= 0) & (pos < n) if mode == "constant" else np.ones(n, bool)
        np.add.at(matrix, (rows[keep], src[keep]), w)
    return matrix


def correlate1d(x: torch.Tensor, weights: Sequence[float] | np.ndarray, dim: int, mode: str,
                anchor: int | None = None) -> torch.Tensor:
    """1-D correlation along ``dim``: out[i] = sum_k w[k] x[i + k - anchor] (scipy.ndimage.correlate1d).

    Applied as one product with the (n, n) banded matrix that also holds the border rule: exact for any kernel
    length and border, and a single BLAS call (faster on CPU than padding and convolving).

    Args:
        x: any tensor.
        weights: the kernel taps (float64 values).
        dim: the axis to filter.
        mode: border rule (see the module docstring).
        anchor: the tap aligned with the output sample; default len(weights) // 2 (scipy's origin 0).
    """
    w = tuple(float(v) for v in np.asarray(weights, dtype=np.float64).ravel())
    anchor = len(w) // 2 if anchor is None else anchor
    dim = dim % x.ndim
    matrix = torch.from_numpy(_filter_matrix(x.shape[dim], w, mode, anchor)).to(x.device, x.dtype)
    if dim == x.ndim - 1:
        return x @ matrix.T
    if dim == x.ndim - 2:
        return matrix @ x
    return torch.movedim(torch.movedim(x, dim, -1) @ matrix.T, -1, dim)


# ---------------------------------------------------------------------------------------------------- gaussian

def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's Gaussian taps: radius int(truncate * sigma + 0.5), normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (float(sigma) ** 2) * taps ** 2)
    return phi / phi.sum()


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """Gaussian blur of the last two axes, rows first (scipy.ndimage.gaussian_filter; skimage.filters.gaussian
    with its defaults mode='nearest', truncate=4 and the channel axis left alone). sigma <= 0 is the identity."""
    if sigma <= 1e-15:
        return x
    taps = gaussian_kernel1d(sigma, truncate)
    return correlate1d(correlate1d(x, taps, -2, mode), taps, -1, mode)


def gaussian_filter_scipy_order(x: torch.Tensor, sigma: float, mode: str = "nearest") -> torch.Tensor:
    """:func:`gaussian_filter` with scipy's own arithmetic, to the last bit on float64 data: per axis (rows
    first) the centre tap times its weight, then each symmetric pair (x[i - j] + x[i + j]) w_j added from the
    outermost pair in (scipy.ndimage's correlate1d for symmetric kernels). For a truncation to 8 bits right
    after the blur (glass blur), where flat regions sit exactly on an integer and the order of the sums decides
    the side; the matrix products of :func:`gaussian_filter` flip such values. Cost: 2 (radius + 1) passes."""
    if sigma <= 1e-15:
        return x
    taps = gaussian_kernel1d(sigma)
    radius = len(taps) // 2
    for dim in (-2, -1):
        n = x.shape[dim]
        padded = pad_axis(x, dim, radius, radius, mode)
        out = padded.narrow(dim, radius, n) * float(taps[radius])
        for j in range(radius, 0, -1):
            out = out + (padded.narrow(dim, radius - j, n)
                         + padded.narrow(dim, radius + j, n)) * float(taps[radius + j])
        x = out
    return x


def opencv_gaussian_kernel1d(ksize: int, sigma: float) -> np.ndarray:
    """cv2.getGaussianKernel(ksize, sigma) for sigma > 0: exp(-(i - (ksize - 1) / 2)^2 / (2 sigma^2)), sum 1."""
    taps = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    phi = np.exp(-(taps ** 2) / (2.0 * sigma * sigma))
    return phi / phi.sum()


# ---------------------------------------------------------------------------------------------------- 2-D filters

def fft_size(n: int) -> int:
    """The smallest FFT length >= n with no prime factor above 5 (large prime factors are slow; on the CPU a
    240-point transform also beats the 256-point one, whose power-of-two strides thrash the cache)."""
    m = n
    while True:
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str, anchor: tuple[int, int] | None = None) -> torch.Tensor:
    """2-D correlation out(r, c) = sum_uv k[u, v] x(r + u - ay, c + v - ax), computed with FFTs.

    This is cv2.filter2D (default anchor at the kernel centre, border 'mirror' = BORDER_REFLECT_101) and, with
    one kernel per image, the sum of shifted copies that ImageMagick's motion blur takes.

    Args:
        x: (B, C, H, W).
        kernel: (kh, kw) for every image, or (B, kh, kw) one per image.
        mode: border rule for the samples outside the image.
        anchor: (ay, ax), the kernel tap aligned with the output pixel; default (kh // 2, kw // 2).

    Returns:
        (B, C, H, W) in x's dtype.
    """
    kh, kw = kernel.shape[-2:]
    ay, ax = (kh // 2, kw // 2) if anchor is None else anchor
    h, w = x.shape[-2:]
    work = x if x.dtype == torch.float64 else x.float()
    padded = pad_axis(pad_axis(work, -2, ay, kh - 1 - ay, mode), -1, ax, kw - 1 - ax, mode)
    size = (fft_size(padded.shape[-2]), fft_size(padded.shape[-1]))     # >= padded: no wrap into the crop
    flipped = kernel.to(work.device, work.dtype).flip(-1).flip(-2)
    k = flipped if flipped.ndim == 3 else flipped.unsqueeze(0)
    spectrum = torch.fft.rfft2(padded, s=size) * torch.fft.rfft2(k, s=size).unsqueeze(1)
    out = torch.fft.irfft2(spectrum, s=size)[..., kh - 1:kh - 1 + h, kw - 1:kw - 1 + w]
    return out.to(x.dtype)


def box_sum3(x: torch.Tensor, mode: str = "mirror") -> torch.Tensor:
    """3x3 sum over the last two axes as shifted adds, rows then columns (default border BORDER_REFLECT_101)."""
    h, w = x.shape[-2:]
    p = pad_axis(pad_axis(x, -2, 1, 1, mode), -1, 1, 1, mode)
    rows = p[..., 0:h, :] + p[..., 1:h + 1, :] + p[..., 2:h + 2, :]
    return rows[..., 0:w] + rows[..., 1:w + 1] + rows[..., 2:w + 2]


def box_mean3(x: torch.Tensor, mode: str = "mirror") -> torch.Tensor:
    """3x3 mean over the last two axes (cv2.blur(x, (3, 3)); border BORDER_REFLECT_101): the 9-value sum
    (exact for 8-bit values, and for float32 values summed in float64, as OpenCV sums them), / 9."""
    return box_sum3(x, mode) / 9.0


def correlate_small(x: torch.Tensor, kernel: Sequence[Sequence[float]], mode: str) -> torch.Tensor:
    """cv2.filter2D-style correlation (anchor at the centre) with a small kernel, as one shifted add per
    nonzero tap: exact on 8-bit data with an integer kernel. For the 3x3 emboss of spatter."""
    kh, kw = len(kernel), len(kernel[0])
    h, w = x.shape[-2:]
    p = pad_axis(pad_axis(x, -2, kh // 2, kh - 1 - kh // 2, mode), -1, kw // 2, kw - 1 - kw // 2, mode)
    out = torch.zeros_like(x)
    for u, row in enumerate(kernel):
        for v, tap in enumerate(row):
            if tap:
                out.add_(p[..., u:u + h, v:v + w], alpha=tap if out.is_floating_point() else int(tap))
    return out


# ---------------------------------------------------------------------------------------------------- motion blur

def motion_blur_taps(radius: float, sigma: float) -> np.ndarray:
    """ImageMagick 6 MotionBlurImage weights: width 2 ceil(radius) + 1, one-sided Gaussian exp(-i^2 / 2 s^2)."""
    width = int(2 * math.ceil(radius) + 1)
    s = max(abs(float(sigma)), 1e-12)
    taps = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2.0 * s * s))
    return taps / taps.sum()


def motion_blur_offsets(width: int, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer (row, column) offsets of the taps for each angle (degrees), as ImageMagick 6 rounds them.

    Returns:
        (dy, dx), each (N, width) int64 on the CPU: tap i reads pixel (r + dy_i, c + dx_i).
    """
    rad = math.pi * angles.to(torch.float64).cpu().view(-1, 1) / 180.0
    px, py = width * torch.sin(rad), width * torch.cos(rad)
    norm = torch.hypot(px, py)
    i = torch.arange(width, dtype=torch.float64).view(1, -1)
    dx = torch.ceil(i * py / norm - 0.5).long()
    dy = torch.ceil(i * px / norm - 0.5).long()
    return dy, dx


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick 6 ``-motion-blur radius x sigma + angle`` (MotionBlurImage), one angle per image.

    Each output pixel is sum_i w_i x(r + dy_i, c + dx_i), with the one-sided Gaussian weights of
    :func:`motion_blur_taps`, offsets from :func:`motion_blur_offsets` and edge-replicated virtual pixels.
    ImageMagick computes this in 16-bit quanta; here it is done in floating point.

    Args:
        x: (B, C, H, W).
        radius, sigma: ImageMagick's parameters (pixels).
        angles: (B,) degrees.
    """
    taps = motion_blur_taps(radius, sigma)
    dy, dx = motion_blur_offsets(len(taps), angles)
    y0, x0 = int(dy.min()), int(dx.min())
    kernel = torch.zeros(len(dy), int(dy.max()) - y0 + 1, int(dx.max()) - x0 + 1, dtype=torch.float64)
    batch = torch.arange(len(dy)).view(-1, 1).expand_as(dy)
    weights = torch.from_numpy(taps).view(1, -1).expand_as(dy)
    kernel.index_put_((batch.reshape(-1), (dy - y0).reshape(-1), (dx - x0).reshape(-1)), weights.reshape(-1),
                      accumulate=True)
    return filter2d(x, kernel, "nearest", anchor=(-y0, -x0))


def quantum_to_8bit(x: torch.Tensor) -> torch.Tensor:
    """ImageMagick 6 Q16 writing 8 bits: the 16-bit quantum floor(v 65535 + 0.5), then floor(quantum / 257)."""
    return torch.floor(torch.floor(x * 65535 + 0.5) / 257) / 255


# ---------------------------------------------------------------------------------------------------- resampling

def sample_bilinear(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
    """Bilinear samples of x at fractional pixel positions, each of the four neighbours mapped by the border rule.

    This is scipy.ndimage.map_coordinates(order=1) for 'reflect', 'nearest' and 'constant' (scipy's
    'grid-constant'), OpenCV's INTER_LINEAR with BORDER_CONSTANT for 'constant', and OpenCV's
    INTER_LINEAR remap / warpAffine with BORDER_REFLECT_101 for 'mirror' (OpenCV rounds positions to 1/32 pixel;
    this does not).

    Args:
        x: (B, C, H, W).
        rows, cols: positions in pixels (row 0 / column 0 is the first pixel centre), broadcastable to
            (B, Ho, Wo); computed in x's dtype.
        mode: border rule.

    Returns:
        (B, C, Ho, Wo).
    """
    h, w = x.shape[-2:]
    rows, cols = rows.to(x.dtype), cols.to(x.dtype)
    if mode == "reflect":   # reflect about the outer pixel edges, then clamp: scipy's half-sample symmetric rule
        gy, gx = (2 * rows + 1) / h - 1, (2 * cols + 1) / w - 1
        padding, corners = "reflection", False
    else:                   # about the outer pixel centres (mirror), clamp (nearest), or zeros (constant)
        gy, gx = 2 * rows / max(h - 1, 1) - 1, 2 * cols / max(w - 1, 1) - 1
        padding, corners = {"mirror": "reflection", "nearest": "border", "constant": "zeros"}[mode], True
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=corners)


def _zoom_axis(n: int, factor: float) -> np.ndarray:
    """Source positions of scipy's clipped zoom along one axis (crop ceil(n / f) centred, zoom, trim to n)."""
    crop = int(math.ceil(n / factor))
    top = (n - crop) // 2
    out_len = int(round(crop * factor))
    trim = (out_len - n) // 2
    scale = (crop - 1) / (out_len - 1) if out_len > 1 else 0.0
    return top + (np.arange(trim, trim + n, dtype=np.float64) * scale)


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The reference's ``clipped_zoom``: centre crop of ceil(n / factor), scipy.ndimage.zoom(order=1) by
    ``factor`` (grid_mode False: output sample o reads input position o (in - 1) / (out - 1)), centre trim to n.

    Args:
        x: (B, C, H, W); each axis is zoomed on its own (the reference assumes square images).
    """
    b, _, h, w = x.shape
    rows = torch.from_numpy(_zoom_axis(h, factor)).view(1, h, 1).expand(b, h, w)
    cols = torch.from_numpy(_zoom_axis(w, factor)).view(1, 1, w).expand(b, h, w)
    return sample_bilinear(x, rows.to(x.device), cols.to(x.device), "nearest")


@lru_cache(maxsize=64)
def _pil_box_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of Pillow's BOX resampling along one axis (ImagingResample's precompute_coeffs)."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        taps = (np.arange(lo, hi) - center + 0.5) / filterscale
        weights = ((taps > -0.5) & (taps <= 0.5)).astype(np.float64)
        if weights.sum() > 0:
            matrix[i, lo:hi] = weights / weights.sum()
    return matrix


@lru_cache(maxsize=64)
def _pil_box_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The nonzero taps of :func:`_pil_box_weights` as (n_out, K) source indices and weights (K = the widest
    window; shorter windows pad with weight 0). Downscaling averages consecutive pixels, upscaling copies one."""
    matrix = _pil_box_weights(n_in, n_out)
    width = max(1, int((matrix > 0).sum(axis=1).max()))
    index, weight = np.zeros((n_out, width), np.int64), np.zeros((n_out, width))
    for i, row in enumerate(matrix):
        taps = np.flatnonzero(row)
        index[i, :len(taps)], weight[i, :len(taps)] = taps, row[taps]
        index[i, len(taps):] = taps[0] if len(taps) else 0
    return torch.from_numpy(index), torch.from_numpy(weight)


def _select(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """x.index_select(dim, index); along the last axis as a gather with an expanded index (3x faster on CPU)."""
    if dim % x.ndim != x.ndim - 1:
        return x.index_select(dim, index)
    return torch.gather(x, -1, index.expand(*x.shape[:-1], len(index)))


def _box_axis(x: torch.Tensor, dim: int, n_out: int) -> torch.Tensor:
    """Pillow's BOX resampling along one axis as K gathers of weighted taps."""
    index, weight = _pil_box_taps(x.shape[dim], n_out)
    index = index.to(x.device)
    shape = [1] * x.ndim
    shape[dim] = n_out
    w = weight.to(x.device, x.dtype)
    out = _select(x, dim, index[:, 0]).mul_(w[:, 0].view(shape))
    for k in range(1, index.shape[1]):
        out.addcmul_(_select(x, dim, index[:, k]), w[:, k].view(shape))
    return out


def _copies(n_in: int, n_out: int) -> torch.Tensor | None:
    """The source of each output pixel when Pillow's BOX copies one pixel per output (upscaling), else None."""
    index, weight = _pil_box_taps(n_in, n_out)
    return index[:, 0] if index.shape[1] == 1 and bool((weight == 1).all()) else None


def resize_box(x: torch.Tensor, height: int, width: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Pillow's ``Image.resize((width, height), Image.BOX)`` on float data (no 8-bit rounding between passes).
    Pillow runs the horizontal pass first; here the pass that shrinks the data more runs first (the same sums,
    rounded in another order: within 1e-7 in float32). An upscale, where every output copies one pixel, is a
    column gather then a row copy (into ``out`` when given)."""
    h, w = x.shape[-2:]
    rows, cols = _copies(h, height), _copies(w, width)
    if rows is not None and cols is not None:
        wide = _select(x, -1, cols.to(x.device))
        if out is None:
            return wide.index_select(-2, rows.to(x.device))
        return torch.index_select(wide, -2, rows.to(x.device), out=out)
    if height * w <= width * h:
        result = _box_axis(_box_axis(x, -2, height), -1, width)
    else:
        result = _box_axis(_box_axis(x, -1, width), -2, height)
    return result if out is None else out.copy_(result)


def _opencv_linear_coefficients(n_in: int, n_out: int, scale: float) -> tuple[torch.Tensor, ...]:
    """cv2.resize INTER_LINEAR's taps along one axis for 8-bit data: the source position (o + 0.5) scale - 0.5
    in float32, floored, clamped at the borders, and its two weights in 11-bit fixed point (cvRound(w 2048))."""
    pos = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.int64)
    frac = (pos - first).astype(np.float32)
    frac[first < 0], first[first < 0] = 0, 0
    last = first >= n_in - 1
    frac[last], first[last] = 0, n_in - 1
    far = np.rint(frac * np.float32(2048)).astype(np.int64)
    near = np.rint((np.float32(1) - frac) * np.float32(2048)).astype(np.int64)
    return tuple(torch.from_numpy(a) for a in (first, np.minimum(first + 1, n_in - 1), near, far))


def resize_linear_8bit(img: torch.Tensor, fx: float, fy: float) -> torch.Tensor:
    """``cv2.resize(img, (0, 0), fx=fx, fy=fy)`` (INTER_LINEAR) on 8-bit data, to the bit.

    Output size cvRound(side f); horizontal pass sum of value x weight (integers), vertical pass as OpenCV's
    vectorised 8-bit path computes it: ((h0 >> 4) b0 >> 16) + ((h1 >> 4) b1 >> 16) + 2 >> 2 (equal to
    OpenCV 4.11's output on the frost photographs at f = 0.2 and 0.3; its scalar formula differs by 1 on some).

    Args:
        img: (C, H, W) integer values 0..255 (any integer or float dtype).

    Returns:
        (C, round(H fy), round(W fx)) uint8.
    """
    _, h, w = img.shape
    out_h, out_w = int(np.rint(h * fy)), int(np.rint(w * fx))
    c0, c1, a0, a1 = _opencv_linear_coefficients(w, out_w, 1.0 / fx)
    r0, r1, b0, b1 = _opencv_linear_coefficients(h, out_h, 1.0 / fy)
    src = img.to(torch.int64).cpu()
    horizontal = src[:, :, c0] * a0 + src[:, :, c1] * a1                         # (C, H, out_w)
    top, bottom = horizontal[:, r0] >> 4, horizontal[:, r1] >> 4
    out = ((top * b0.view(-1, 1) >> 16) + (bottom * b1.view(-1, 1) >> 16) + 2) >> 2
    return out.clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------------- colour

def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) with OpenCV's COLOR_RGB2GRAY weights."""
    r, g, b = GRAY_WEIGHTS
    return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]


def shift_value(x: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """skimage rgb2hsv -> V = clip(V + delta, 0, 1) -> hsv2rgb, in closed form.

    With hue and saturation fixed every channel is proportional to V, so the round trip scales the pixel by
    V' / V (a black pixel becomes grey V').
    """
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + delta).clamp(0.0, 1.0)
    return torch.where(v > 0, x * (v_new / v.clamp_min(1e-30)), v_new.expand_as(x))


def scale_saturation(x: torch.Tensor, factor: float, offset: float) -> torch.Tensor:
    """skimage rgb2hsv -> S = clip(S factor + offset, 0, 1) -> hsv2rgb, in closed form.

    A channel equals V (1 - S w) with w = (V - channel) / (V - min) fixed by the hue, so the new channel is
    V - S' V (V - channel) / (V - min). A grey pixel has hue 0 (red) in skimage, so it becomes (V, V(1-S'), V(1-S')).
    """
    v = x.amax(dim=1, keepdim=True)
    chroma = v - x.amin(dim=1, keepdim=True)
    s = torch.where(chroma > 0, chroma / v.clamp_min(1e-30), torch.zeros_like(v))
    s_new = (s * factor + offset).clamp(0.0, 1.0)
    coloured = v - s_new * v * (v - x) / chroma.clamp_min(1e-30)
    grey = torch.cat([v, v * (1 - s_new), v * (1 - s_new)], dim=1)
    return torch.where(chroma > 0, coloured, grey)


# ---------------------------------------------------------------------------------------------------- plasma

def plasma_draw_shapes(mapsize: int) -> list[int]:
    """Side lengths of the uniform draws of :func:`plasma_fractal`, in the order it consumes them."""
    sides, step = [], mapsize
    while step >= 2:
        sides += [mapsize // step] * 3   # squares, then the two diamond sets
        step //= 2
    return sides


def plasma_fractal(uniforms: Sequence[torch.Tensor], mapsize: int, decay: float) -> torch.Tensor:
    """Diamond-square height map in [0, 1] (the reference's ``plasma_fractal``, after FLHerne/mapgen).

    Args:
        uniforms: U[0, 1) tensors (B, n, n) with the sides of :func:`plasma_draw_shapes`, in order.
        mapsize: a power of two.
        decay: the reference's ``wibbledecay``.

    Returns:
        (B, mapsize, mapsize), min-max normalised per map.
    """
    b = uniforms[0].shape[0]
    grid = torch.zeros(b, mapsize, mapsize, dtype=uniforms[0].dtype, device=uniforms[0].device)
    step, wibble, draws = mapsize, 100.0, iter(uniforms)

    def wibbled(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * (wibble * (2 * next(draws) - 1))

    while step >= 2:
        half = step // 2
        corners = grid[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, 1)
        squares = squares + squares.roll(-1, 2)
        grid[:, half::step, half::step] = wibbled(squares)
        centres, corners = grid[:, half::step, half::step], grid[:, 0::step, 0::step]
        grid[:, 0::step, half::step] = wibbled(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        grid[:, half::step, 0::step] = wibbled(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step, wibble = half, wibble / decay
    grid = grid - grid.amin(dim=(1, 2), keepdim=True)
    return grid / grid.amax(dim=(1, 2), keepdim=True)


# ---------------------------------------------------------------------------------------------------- 8-bit ops

def shift(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """out[..., r, c] = x[..., r + dy, c + dx], ``fill`` outside."""
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    out[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        x[..., max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


def canny(img: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """cv2.Canny(img, low, high) with aperture 3 and the L1 gradient, for 8-bit images held as floats.

    Sobel gradients with replicated borders; non-maximum suppression in OpenCV's four directions (tan 22.5
    in 15-bit fixed point, the same strict and non-strict comparisons); hysteresis keeps the 8-connected
    components of the candidates (magnitude > low) that contain a magnitude > high. Integer arithmetic
    (exact); the selections are boolean algebra (torch.where on masks is several times slower).

    Args:
        img: (B, H, W) integer values 0..255.

    Returns:
        (B, H, W) bool edge map.
    """
    p = pad_axis(pad_axis(img.to(torch.int16), -2, 1, 1, "nearest"), -1, 1, 1, "nearest")
    h, w = img.shape[-2:]
    dx = p[..., 2:w + 2] - p[..., 0:w]                                  # (B, H + 2, W): separable Sobel
    dy = p[..., 2:h + 2, :] - p[..., 0:h, :]                            # (B, H, W + 2)
    gx = dx[..., 0:h, :] + dx[..., 1:h + 1, :] * 2 + dx[..., 2:h + 2, :]
    gy = dy[..., 0:w] + dy[..., 1:w + 1] * 2 + dy[..., 2:w + 2]
    ax, ay = gx.abs(), gy.abs()
    mag = ax + ay                                                       # <= 2040: int16
    ax32, ay32 = ax.to(torch.int32), ay.to(torch.int32) * 32768
    tg22 = ax32 * 13573                     # int(tan(22.5 deg) * 2^15 + 0.5)
    horizontal, vertical = ay32 < tg22, ay32 > tg22 + ax32 * 65536
    same_sign = (gx ^ gy) >= 0              # OpenCV: s = (xs ^ ys) < 0 ? -1 : 1
    padded = F.pad(mag, (1, 1, 1, 1))       # magnitude 0 outside the image

    def m(dy: int, dx: int) -> torch.Tensor:
        return padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    keep_h = (mag > m(0, -1)) & (mag >= m(0, 1))
    keep_v = (mag > m(-1, 0)) & (mag >= m(1, 0))
    keep_d = (same_sign & (mag > m(-1, -1)) & (mag > m(1, 1))) | (~same_sign & (mag > m(-1, 1)) & (mag > m(1, -1)))
    peak = (horizontal & keep_h) | (vertical & keep_v) | (~(horizontal | vertical) & keep_d)
    candidate = peak & (mag > low)
    edges = candidate & (mag > high)
    count = int(edges.sum())
    while True:                                 # edges only grow: an unchanged count is a fixed point
        edges = dilate3(edges) & candidate
        grown = int(edges.sum())
        if grown == count:
            return edges
        count = grown


def dilate3(mask: torch.Tensor) -> torch.Tensor:
    """8-connected dilation of a (B, H, W) bool mask (3x3 maximum, outside the image False): rows then columns."""
    h, w = mask.shape[-2:]
    p = F.pad(mask, (1, 1, 1, 1))
    rows = p[:, 0:h] | p[:, 1:h + 1] | p[:, 2:h + 2]
    return rows[:, :, 0:w] | rows[:, :, 1:w + 1] | rows[:, :, 2:w + 2]


def chamfer_distance(zeros: torch.Tensor, cap: float) -> torch.Tensor:
    """cv2.distanceTransform(src, DIST_L2, 5) capped at ``cap``: the 5x5 chamfer distance (OpenCV's costs
    1, 1.4, 2.1969 in float32) to the nearest zero pixel of src (True in ``zeros``).

    OpenCV's two raster passes, vectorised over the batch and the columns: each row first takes its
    candidates from the rows already swept, then one sweep along the row (d[x] = min_k d[k] + |x - k|, a
    running minimum). Pixels outside the image are never sources.

    Args:
        zeros: (B, H, W) bool.

    Returns:
        (B, H, W) float32, min(distance, cap); cap where an image has no zero pixel.
    """
    a, b, c = CHAMFER_5X5          # python floats: added to float32 tensors in float32, as OpenCV does
    n, h, w = zeros.shape
    dev = zeros.device
    padded = torch.full((n, h, w + 4), 1e30, dtype=torch.float32, device=dev)
    padded[:, :, 2:w + 2] = torch.where(zeros, 0.0, 1e30)
    cols = torch.arange(w, dtype=torch.float32, device=dev)
    for sweep, rows in ((1, range(h)), (-1, range(h - 1, -1, -1))):
        for r in rows:
            best = padded[:, r, 2:w + 2]
            if 0 <= r - sweep < h:          # the row just swept; min(u, v) + k == min(u + k, v + k) in floats
                one = padded[:, r - sweep]
                best = torch.minimum(best, one[:, 2:w + 2] + a)
                best = torch.minimum(best, torch.minimum(one[:, 1:w + 1], one[:, 3:w + 3]) + b)
                best = torch.minimum(best, torch.minimum(one[:, 0:w], one[:, 4:w + 4]) + c)
            if 0 <= r - 2 * sweep < h:      # two rows back: the knight moves
                two = padded[:, r - 2 * sweep]
                best = torch.minimum(best, torch.minimum(two[:, 1:w + 1], two[:, 3:w + 3]) + c)
            if sweep == 1:
                best = torch.minimum(best, torch.cummin(best - cols, dim=-1).values + cols)
            else:
                best = torch.minimum(best, torch.cummin((best + cols).flip(-1), dim=-1).values.flip(-1) - cols)
            padded[:, r, 2:w + 2] = best
    return padded[:, :, 2:w + 2].clamp_max(cap)


def equalize_hist(img: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist per image: LUT round(cumulative count * 255 / (N - count of the lowest level)) in float32.

    Args:
        img: (B, H, W) integer values 0..255.
    """
    b = img.shape[0]
    flat = img.reshape(b, -1).long()
    hist = torch.zeros(b, 256, dtype=torch.long, device=img.device).scatter_add_(1, flat, torch.ones_like(flat))
    first = (hist > 0).long().argmax(dim=1, keepdim=True)                # lowest occupied level
    total = flat.shape[1]
    above = torch.arange(256, device=img.device).view(1, -1) > first
    counts = torch.where(above, hist, torch.zeros_like(hist)).cumsum(dim=1)
    scale = (torch.tensor(255.0, dtype=torch.float32) / (total - hist.gather(1, first)).to(torch.float32))
    lut = torch.round(counts.to(torch.float32) * scale.to(img.device)).clamp(0, 255)
    flat_out = lut.gather(1, flat)
    uniform = (hist.gather(1, first) == total)                          # one level only: cv2 fills with it
    flat_out = torch.where(uniform, first.to(flat_out.dtype).expand_as(flat_out), flat_out)
    return flat_out.view_as(img).to(img.dtype)
