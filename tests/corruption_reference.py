"""Per-image numpy reference implementations of the 19 ImageNet-C corruptions, for tests and benchmarks.

Written from the definitions in Hendrycks and Dietterich (2019) and their generators
(github.com/hendrycks/robustness, ``ImageNet-C/create_c``), one image at a time, in float64, in the plainest
numpy that states each library call's arithmetic (scipy.ndimage filters and interpolation, scikit-image HSV
and noise, OpenCV filters / Canny / chamfer distance / histogram equalisation, ImageMagick 6 motion blur).
Pillow is called directly where Pillow is the reference (BOX resizing, JPEG). Nothing here imports torch or
vitbench's implementation, so the tests compare two independent statements of the same definitions.

Every function takes one image (3, H, W) float64 in [0, 1], the severity's parameter tuple and the image's
random draws (numpy arrays, the same numbers vitbench.data.corruptions draws, indexed for this image), and
returns (3, H, W) in [0, 1]. Frost reads the reference's photographs from vitbench/data/files/frost (data, not
code) and states OpenCV's 8-bit resize itself.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

# ------------------------------------------------------------------------------------------------ borders


def border_index(pos: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Indices for positions outside [0, n): nearest/constant clamp, reflect = dcba|abcd, mirror = dcb|abcd."""
    pos = np.asarray(pos)
    if mode in ("nearest", "constant") or n == 1:
        return np.clip(pos, 0, n - 1)
    period = 2 * n if mode == "reflect" else 2 * n - 2
    p = np.mod(pos, period)
    return np.where(p >= n, period - 1 - p if mode == "reflect" else period - p, p)


def correlate1d(a: np.ndarray, weights, axis: int, mode: str, anchor: int | None = None) -> np.ndarray:
    """out[i] = sum_k w[k] a[border(i + k - anchor)] along ``axis`` (scipy.ndimage.correlate1d)."""
    weights = np.asarray(weights, dtype=np.float64)
    anchor = len(weights) // 2 if anchor is None else anchor
    n = a.shape[axis]
    out = np.zeros(a.shape)
    idx = np.arange(n)
    for k, w in enumerate(weights):
        src = idx + k - anchor
        term = np.take(a, border_index(src, n, mode), axis=axis)
        if mode == "constant":
            shape = [1] * a.ndim
            shape[axis] = n
            term = term * ((src >= 0) & (src < n)).reshape(shape)
        out += w * term
    return out


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x * x / (sigma * sigma))
    return phi / phi.sum()


def gaussian_filter(a: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian / scipy.ndimage.gaussian_filter over the last two axes."""
    if sigma <= 1e-15:
        return np.array(a, dtype=np.float64)
    w = gaussian_kernel1d(sigma, truncate)
    return correlate1d(correlate1d(a, w, a.ndim - 2, mode), w, a.ndim - 1, mode)


def gaussian_filter_scipy_order(a: np.ndarray, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter (mode 'nearest') with scipy's own sums, over the last two axes: per axis the
    centre tap, then the symmetric pairs (a[i - j] + a[i + j]) w_j from the outermost in (bitwise equal to
    scipy 1.17 on float64). Glass blur truncates right after it, where the order of the sums decides."""
    w = gaussian_kernel1d(sigma)
    r = len(w) // 2
    out = np.asarray(a, dtype=np.float64)
    for axis in (a.ndim - 2, a.ndim - 1):
        idx = np.arange(out.shape[axis])
        acc = np.take(out, idx, axis=axis) * w[r]
        for j in range(r, 0, -1):
            acc = acc + (np.take(out, border_index(idx - j, len(idx), "nearest"), axis=axis)
                         + np.take(out, border_index(idx + j, len(idx), "nearest"), axis=axis)) * w[r + j]
        out = acc
    return out


def correlate2d(a: np.ndarray, kernel: np.ndarray, mode: str, anchor: tuple[int, int] | None = None) -> np.ndarray:
    """cv2.filter2D-style correlation over the last two axes, one shifted copy per kernel tap."""
    kh, kw = kernel.shape
    ay, ax = (kh // 2, kw // 2) if anchor is None else anchor
    h, w = a.shape[-2:]
    out = np.zeros(a.shape)
    rows, cols = np.arange(h), np.arange(w)
    for u in range(kh):
        ri = border_index(rows + u - ay, h, mode)
        shifted_rows = a[..., ri, :]
        for v in range(kw):
            if kernel[u, v] != 0:
                out += kernel[u, v] * shifted_rows[..., border_index(cols + v - ax, w, mode)]
    return out


def bilinear(a: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """scipy.ndimage.map_coordinates(order=1) / cv2 INTER_LINEAR: four neighbours, each mapped by the border."""
    h, w = a.shape[-2:]
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = rows - r0, cols - c0
    out = np.zeros(a.shape[:-2] + rows.shape)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            rr, cc = r0 + dr, c0 + dc
            value = a[..., border_index(rr, h, mode), border_index(cc, w, mode)]
            if mode == "constant":
                value = value * ((rr >= 0) & (rr < h) & (cc >= 0) & (cc < w))
            out += wr * wc * value
    return out

# ------------------------------------------------------------------------------------------------ resampling


def zoom_axis_linear(a: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """scipy.ndimage.zoom(order=1) along one axis: round(n f) samples at o (n - 1) / (out - 1)."""
    n = a.shape[axis]
    out_len = int(round(n * factor))
    pos = np.arange(out_len) * ((n - 1) / (out_len - 1)) if out_len > 1 else np.zeros(1)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
    i1 = np.clip(i0 + 1, 0, n - 1)
    f = pos - i0
    shape = [1] * a.ndim
    shape[axis] = out_len
    return np.take(a, i0, axis=axis) * (1 - f).reshape(shape) + np.take(a, i1, axis=axis) * f.reshape(shape)


def clipped_zoom(a: np.ndarray, factor: float) -> np.ndarray:
    """Centre crop ceil(n / f), zoom by f (order 1), centre trim back to n, along the last two axes."""
    out = a
    for axis in (a.ndim - 2, a.ndim - 1):
        n = a.shape[axis]
        crop = int(np.ceil(n / factor))
        top = (n - crop) // 2
        zoomed = zoom_axis_linear(np.take(out, np.arange(top, top + crop), axis=axis), axis, factor)
        trim = (zoomed.shape[axis] - n) // 2
        out = np.take(zoomed, np.arange(trim, trim + n), axis=axis)
    return out


def pil_box_resize(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow's BOX resize of each channel as a float ('F' mode) image."""
    return np.stack([np.asarray(Image.fromarray(ch.astype(np.float32), mode="F").resize((width, height),
                                                                                          Image.BOX))
                     for ch in a]).astype(np.float64)

# ------------------------------------------------------------------------------------------------ motion blur


def motion_blur(a: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick 6 MotionBlurImage: sum_i k_i a(r + oy_i, c + ox_i), one-sided Gaussian k, edge pixels."""
    width = int(2 * math.ceil(radius) + 1)
    k = np.exp(-np.arange(width) ** 2 / (2.0 * sigma * sigma))
    k /= k.sum()
    px = width * math.sin(math.pi * angle / 180.0)
    py = width * math.cos(math.pi * angle / 180.0)
    norm = math.hypot(px, py)
    h, w = a.shape[-2:]
    rows, cols = np.arange(h), np.arange(w)
    out = np.zeros(a.shape)
    for i in range(width):
        ox, oy = math.ceil(i * py / norm - 0.5), math.ceil(i * px / norm - 0.5)
        out += k[i] * a[..., np.clip(rows + oy, 0, h - 1), :][..., np.clip(cols + ox, 0, w - 1)]
    return out

# ------------------------------------------------------------------------------------------------ colour


def rgb2hsv(rgb: np.ndarray) -> np.ndarray:
    """skimage.color.rgb2hsv on a (3, H, W) image (ties: the later channel's formula wins, as in skimage)."""
    r, g, b = rgb
    v = rgb.max(axis=0)
    delta = v - rgb.min(axis=0)
    safe = np.where(delta == 0, 1.0, delta)
    h = np.zeros_like(v)
    h = np.where(r == v, (g - b) / safe, h)
    h = np.where(g == v, 2.0 + (b - r) / safe, h)
    h = np.where(b == v, 4.0 + (r - g) / safe, h)
    h = np.mod(h / 6.0, 1.0)
    h[delta == 0] = 0.0
    s = np.where(delta == 0, 0.0, delta / np.where(v == 0, 1.0, v))
    return np.stack([h, s, v])


def hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    """skimage.color.hsv2rgb on a (3, H, W) image."""
    h, s, v = hsv
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    hi = hi.astype(np.int64) % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(hi, [c[k] for c in choices]) for k in range(3)])

# ------------------------------------------------------------------------------------------------ plasma


def plasma_fractal(uniforms: list[np.ndarray], mapsize: int, decay: float) -> np.ndarray:
    """Diamond-square height map (the reference's plasma_fractal) from U[0, 1) draws consumed in order."""
    grid = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0
    draws = iter(uniforms)

    def wibbled(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * (-wibble + 2 * wibble * next(draws))

    while step >= 2:
        half = step // 2
        corners = grid[0:mapsize:step, 0:mapsize:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares = squares + np.roll(squares, -1, axis=1)
        grid[half:mapsize:step, half:mapsize:step] = wibbled(squares)
        centres = grid[half:mapsize:step, half:mapsize:step]
        corners = grid[0:mapsize:step, 0:mapsize:step]
        grid[0:mapsize:step, half:mapsize:step] = wibbled(
            (centres + np.roll(centres, 1, axis=0)) + (corners + np.roll(corners, -1, axis=1)))
        grid[half:mapsize:step, 0:mapsize:step] = wibbled(
            (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=0)))
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def plasma_sides(mapsize: int) -> list[int]:
    sides, step = [], mapsize
    while step >= 2:
        sides += [mapsize // step] * 3
        step //= 2
    return sides

# ------------------------------------------------------------------------------------------------ OpenCV 8-bit


def canny(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """cv2.Canny(img, low, high) (aperture 3, L1 gradient) on an (H, W) 8-bit image held as floats."""
    p = np.pad(img.astype(np.float64), 1, mode="edge")
    h, w = img.shape

    def at(dy, dx):
        return p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    mag = np.abs(gx) + np.abs(gy)
    m = np.pad(mag, 1)                                   # zero magnitude outside the image
    state = np.zeros((h, w), np.int8)                    # 0: not an edge, 1: candidate, 2: edge
    stack = []
    for r in range(h):
        for c in range(w):
            v = mag[r, c]
            if v <= low:
                continue
            xs, ys = int(gx[r, c]), int(gy[r, c])
            x, y = abs(xs), abs(ys) << 15
            tg22x = x * 13573
            if y < tg22x:
                ok = v > m[r + 1, c] and v >= m[r + 1, c + 2]
            elif y > tg22x + (x << 16):
                ok = v > m[r, c + 1] and v >= m[r + 2, c + 1]
            else:
                s = -1 if (xs ^ ys) < 0 else 1
                ok = v > m[r, c + 1 - s] and v > m[r + 2, c + 1 + s]
            if ok:
                state[r, c] = 1
                if v > high:
                    state[r, c] = 2
                    stack.append((r, c))
    while stack:
        r, c = stack.pop()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w and state[rr, cc] == 1:
                    state[rr, cc] = 2
                    stack.append((rr, cc))
    return state == 2


def chamfer_distance(zeros: np.ndarray) -> np.ndarray:
    """cv2.distanceTransform(DIST_L2, 5): two raster passes of the 5x5 chamfer mask (1, 1.4, 2.1969); float32
    sums, outside the image never a source. Each row: candidates from the rows already done, then one sweep
    along the row (min over k of d[k] + |x - k|, a running minimum)."""
    a, b, c = np.float32(1.0), np.float32(1.4), np.float32(2.1969)
    h, w = zeros.shape
    inf = np.float32(1e30)
    d = np.where(zeros, np.float32(0), inf).astype(np.float32)
    forward = ((-1, -1, b), (-1, 0, a), (-1, 1, b), (-2, -1, c), (-2, 1, c), (-1, -2, c), (-1, 2, c))
    cols = np.arange(w, dtype=np.float32)
    for sweep, rows in ((1, range(h)), (-1, range(h - 1, -1, -1))):
        for r in rows:
            best = d[r].copy()
            for dy, dx, cost in forward:
                rr, dx = r + sweep * dy, sweep * dx
                if 0 <= rr < h:
                    shifted = np.full(w, inf, np.float32)
                    lo, hi = max(0, -dx), min(w, w - dx)
                    shifted[lo:hi] = d[rr, lo + dx:hi + dx]
                    best = np.minimum(best, shifted + cost)
            if sweep == 1:
                best = np.minimum(best, np.minimum.accumulate(best - cols) + cols)
            else:
                best = np.minimum(best, (np.minimum.accumulate((best + cols)[::-1]))[::-1] - cols)
            d[r] = best
    return d


def equalize_hist(img: np.ndarray) -> np.ndarray:
    """cv2.equalizeHist on an (H, W) 8-bit image held as floats."""
    values = img.astype(np.int64).ravel()
    hist = np.bincount(values, minlength=256)
    first = int(np.nonzero(hist)[0][0])
    if hist[first] == values.size:
        return np.full(img.shape, float(first))
    scale = np.float32(255.0) / np.float32(values.size - hist[first])
    lut = np.zeros(256)
    running = 0
    for level in range(first + 1, 256):
        running += hist[level]
        lut[level] = min(max(np.round(np.float32(running) * scale), 0), 255)
    return lut[values].reshape(img.shape)


def box3(a: np.ndarray) -> np.ndarray:
    """cv2.blur(a, (3, 3)) on float data (BORDER_REFLECT_101)."""
    return correlate2d(a, np.ones((3, 3)), "mirror") / 9.0

# ------------------------------------------------------------------------------------------------ corruptions


def gaussian_noise(img, c, d):
    return np.clip(img + c * d["noise"].astype(np.float64), 0, 1)


def shot_noise(img, c, d):
    return np.clip(d["counts"].astype(np.float64) / c, 0, 1)


def impulse_noise(img, c, d):
    """skimage 's&p': flipped with probability c, salt or pepper with probability 1/2, from one uniform u."""
    flipped = d["u"] <= c
    salted = d["u"] <= c / 2
    out = img.copy()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def speckle_noise(img, c, d):
    return np.clip(img + img * c * d["noise"], 0, 1)


def gaussian_blur(img, sigma, d):
    return np.clip(gaussian_filter(img, sigma), 0, 1)


def glass_blur(img, p, d):
    """The reference's loop statement for statement, on an (H, W, 3) uint8 array as in the generators.

    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` assigns numpy views: x[h', w'] is copied into x[h, w], then
    x[h', w'] gets the view x[h, w], which now holds x[h', w']'s own values; so it is a copy, not a swap."""
    sigma, delta, iterations = p
    x = np.uint8(gaussian_filter_scipy_order(img, sigma).transpose(1, 2, 0) * 255)
    height, width = x.shape[:2]
    for it in range(iterations):
        for h in range(height - delta, delta, -1):
            for w in range(width - delta, delta, -1):
                dy = int(d["dy"][it, h - delta - 1, w - delta - 1])
                dx = int(d["dx"][it, h - delta - 1, w - delta - 1])
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(gaussian_filter(x.transpose(2, 0, 1) / 255., sigma), 0, 1)


def disk(radius: float, alias_blur: float) -> np.ndarray:
    """The defocus kernel: normalised disk, cv2.GaussianBlur (ksize 3, or 5 above radius 8), float32."""
    if radius <= 8:
        span, ksize = np.arange(-8, 8 + 1), 3
    else:
        span, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(span, span)
    aliased = np.array((xx ** 2 + yy ** 2) <= radius ** 2, dtype=np.float32)
    aliased /= np.sum(aliased)
    g = np.exp(-((np.arange(ksize) - (ksize - 1) / 2) ** 2) / (2 * alias_blur ** 2))
    g /= g.sum()
    return correlate2d(aliased.astype(np.float64), np.outer(g, g), "mirror").astype(np.float32)


def defocus_blur(img, p, d):
    return np.clip(correlate2d(img, disk(*p).astype(np.float64), "mirror"), 0, 1)


def motion_blur_corruption(img, p, d):
    """ImageMagick's motion blur, written as an 8-bit PNG: the Q16 quantum (rounded) truncated to 8 bits."""
    quantum = np.floor(motion_blur(img, p[0], p[1], float(d["angle"])) * 65535 + 0.5)
    return np.clip(np.floor(quantum / 257) / 255, 0, 1)


def zoom_blur(img, p, d):
    start, stop, step = p
    factors = np.arange(start, stop, step)
    out = np.zeros_like(img)
    for f in factors:
        out += clipped_zoom(img, f)
    return np.clip((img + out) / (len(factors) + 1), 0, 1)


def snow(img, p, d):
    loc, scale, zoom, threshold, radius, sigma, weight = p
    layer = clipped_zoom(loc + scale * d["layer"][0].astype(np.float64), zoom)
    layer[layer < threshold] = 0
    layer = np.floor(np.clip(layer, 0, 1) * 255) / 255
    quantum = np.floor(motion_blur(layer, radius, sigma, float(d["angle"])) * 65535 + 0.5)   # ImageMagick Q16
    layer = np.floor(quantum / 257) / 255                                                      # 8-bit PNG out
    gray = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    x = weight * img + (1 - weight) * np.maximum(img, gray * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1)


FROST_DIR = Path(__file__).resolve().parents[1] / "vitbench" / "data" / "files" / "frost"
FROST_FILES = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
#: make_cifar_c.py: cv2.resize(frost, (0, 0), fx=0.2, fy=0.2); make_tinyimagenet_c.py: 0.3; make_imagenet_c.py: none
FROST_RESIZE = {"cifar": 0.2, "tiny": 0.3, "imagenet": None}


def cv2_linear_taps(n_in: int, n_out: int, scale: float):
    """cv2.resize INTER_LINEAR along one axis for 8-bit images: float32 source positions, border clamps, weights
    cvRound(w * 2048) (INTER_RESIZE_COEF_BITS 11)."""
    first, second, near, far = [], [], [], []
    for o in range(n_out):
        pos = np.float32((o + 0.5) * scale - 0.5)
        i = int(np.floor(pos))
        frac = np.float32(pos - np.float32(i))
        if i < 0:
            i, frac = 0, np.float32(0)
        if i >= n_in - 1:
            i, frac = n_in - 1, np.float32(0)
        first.append(i)
        second.append(min(i + 1, n_in - 1))
        near.append(int(np.rint((np.float32(1) - frac) * np.float32(2048))))
        far.append(int(np.rint(frac * np.float32(2048))))
    return np.array(first), np.array(second), np.array(near), np.array(far)


def cv2_resize_linear(img: np.ndarray, f: float) -> np.ndarray:
    """cv2.resize(img, (0, 0), fx=f, fy=f) on an (H, W, 3) uint8 image: integer horizontal sums, then the vertical
    step of OpenCV's SSE2 / universal-intrinsics path, ((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16) + 2 >> 2."""
    h, w = img.shape[:2]
    c0, c1, a0, a1 = cv2_linear_taps(w, int(np.rint(w * f)), 1.0 / f)
    r0, r1, b0, b1 = cv2_linear_taps(h, int(np.rint(h * f)), 1.0 / f)
    src = img.astype(np.int64)
    horizontal = src[:, c0] * a0[None, :, None] + src[:, c1] * a1[None, :, None]
    top, bottom = horizontal[r0] >> 4, horizontal[r1] >> 4
    out = ((top * b0[:, None, None] >> 16) + (bottom * b1[:, None, None] >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def frost_photograph(index: int, table: str) -> np.ndarray:
    """cv2.imread of the photograph (BGR, here read as RGB: the resize is per channel), resized per table."""
    img = np.asarray(Image.open(FROST_DIR / FROST_FILES[index]).convert("RGB"))
    return img if FROST_RESIZE[table] is None else cv2_resize_linear(img, FROST_RESIZE[table])


def frost(img, p, d, table):
    """idx = randint(5); x_start = randint(0, H_frost - h); y_start = randint(0, W_frost - w) (each from U[0, 1)
    as floor(u n)); clip(c0 x + c1 crop, 0, 255) on the 0..255 scale."""
    h, w = img.shape[-2:]
    photo = frost_photograph(int(d["index"]), table)
    x_start = int(np.floor(d["offset"][0] * (photo.shape[0] - h)))
    y_start = int(np.floor(d["offset"][1] * (photo.shape[1] - w)))
    crop = photo[x_start:x_start + h, y_start:y_start + w].transpose(2, 0, 1).astype(np.float64)
    return np.clip(p[0] * img * 255 + p[1] * crop, 0, 255) / 255


def fog(img, p, d):
    amount, decay = p
    h, w = img.shape[-2:]
    mapsize = 1 << max(1, math.ceil(math.log2(max(h, w))))
    flat, parts, start = d["plasma"], [], 0
    for side in plasma_sides(mapsize):
        parts.append(flat[start:start + side * side].reshape(side, side))
        start += side * side
    top = img.max()
    x = img + amount * plasma_fractal(parts, mapsize, decay)[:h, :w]
    return np.clip(x * top / (top + amount), 0, 1)


def spatter(img, p, d):
    loc, scale, sigma, threshold, intensity, mud = p
    liquid = gaussian_filter(loc + scale * d["liquid"][0].astype(np.float64), sigma)
    liquid[liquid < threshold] = 0
    if mud == 0:
        liquid8 = np.clip(np.floor(liquid * 255), 0, 255)
        dist = chamfer_distance(canny(liquid8, 50, 150))
        dist = np.minimum(dist, np.float32(20))
        dist = np.floor(box3(dist.astype(np.float64)).astype(np.float32))
        dist = equalize_hist(dist)
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        dist = np.clip(np.round(correlate2d(dist, emboss, "mirror")), 0, 255)
        dist = np.round(box3(dist))
        m = liquid8 * dist
        m = m / max(m.max(), 1e-12) * intensity
        color = np.array([175.0, 238.0, 238.0])[:, None, None] / 255
        return np.clip(img + m * color, 0, 1)
    m = gaussian_filter((liquid > threshold).astype(np.float64), intensity)
    m[m < 0.8] = 0
    color = np.array([63.0, 42.0, 20.0])[:, None, None] / 255
    return np.clip(img * (1 - m) + color * m, 0, 1)


def brightness(img, c, d):
    hsv = rgb2hsv(img)
    hsv[2] = np.clip(hsv[2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1)


def saturate(img, p, d):
    hsv = rgb2hsv(img)
    hsv[1] = np.clip(hsv[1] * p[0] + p[1], 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1)


def contrast(img, c, d):
    means = img.mean(axis=(1, 2), keepdims=True)
    return np.clip((img - means) * c + means, 0, 1)


def pixelate(img, c, d):
    h, w = img.shape[-2:]
    return np.clip(pil_box_resize(pil_box_resize(img, int(h * c), int(w * c)), h, w), 0, 1)


def jpeg_compression(img, quality, d):
    pil = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0))
    buffer = io.BytesIO()
    pil.save(buffer, "JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255


def affine_points(h: int, w: int, jitter: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's affine anchor points (float32 (x, y) pairs) and their jittered copies."""
    center = np.float32((h, w)) // 2
    size = min(h, w) // 3
    src = np.float32([center + size, [center[0] + size, center[1] - size], center - size])
    return src, src + jitter.astype(np.float32)


def get_affine_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """cv2.getAffineTransform: the 2x3 M with M [x, y, 1] = [x', y'], from the 6x6 linear system in float64."""
    a, b = np.zeros((6, 6)), np.zeros(6)
    for i in range(3):
        a[2 * i, 0:3] = a[2 * i + 1, 3:6] = (src[i, 0], src[i, 1], 1.0)
        b[2 * i], b[2 * i + 1] = dst[i]
    return np.linalg.solve(a, b).reshape(2, 3)


def elastic_transform(img, p, d):
    alpha, sigma, jitter_scale = p
    h, w = img.shape[-2:]
    src, dst = affine_points(h, w, jitter_scale * (2 * d["affine"] - 1))
    forward = np.vstack([get_affine_transform(src, dst), [0, 0, 1]])
    inv = np.linalg.inv(forward)
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    warped = bilinear(img, inv[1, 0] * cols + inv[1, 1] * rows + inv[1, 2],
                      inv[0, 0] * cols + inv[0, 1] * rows + inv[0, 2], "mirror")
    dx = (gaussian_filter(2 * d["dx"][0].astype(np.float64) - 1, sigma, "reflect", 3.0) * alpha).astype(np.float32)
    dy = (gaussian_filter(2 * d["dy"][0].astype(np.float64) - 1, sigma, "reflect", 3.0) * alpha).astype(np.float32)
    return np.clip(bilinear(warped, rows + dy, cols + dx, "reflect"), 0, 1)


REFERENCE = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur, "glass_blur": glass_blur,
    "defocus_blur": defocus_blur, "motion_blur": motion_blur_corruption, "zoom_blur": zoom_blur, "snow": snow,
    "frost": frost, "fog": fog, "spatter": spatter, "brightness": brightness, "contrast": contrast,
    "saturate": saturate, "pixelate": pixelate, "jpeg_compression": jpeg_compression,
    "elastic_transform": elastic_transform,
}


def corrupt_image(img: np.ndarray, name: str, params, draws: dict[str, np.ndarray], table: str = "imagenet"
                  ) -> np.ndarray:
    """Reference corruption of one (3, H, W) float64 image with its parameter tuple and random draws (frost also
    needs the generator: ``table`` "imagenet", "tiny" or "cifar")."""
    if name == "frost":
        return frost(np.asarray(img, dtype=np.float64), params, draws, table)
    return REFERENCE[name](np.asarray(img, dtype=np.float64), params, draws)


def natural_images(b: int, size: int, seed: int = 0) -> np.ndarray:
    """Test images (b, 3, size, size) in [0, 1]: smooth colour fields (a bicubic 6 x 6 grid) with four flat
    rectangles (sharp edges), rounded to 8 bits."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((b, 3, 6, 6)).astype(np.float32)
    x = np.stack([[np.asarray(Image.fromarray(ch, mode="F").resize((size, size), Image.BICUBIC)) for ch in img]
                  for img in coarse]).astype(np.float64)
    for _ in range(4):
        r0, c0 = rng.integers(0, size // 2, 2)
        hh, ww = rng.integers(size // 6, size // 2, 2)
        x[:, :, r0:r0 + hh, c0:c0 + ww] = rng.random((b, 3, 1, 1))
    return np.round(np.clip(x, 0, 1) * 255) / 255
