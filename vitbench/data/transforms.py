"""Preprocessing: from decoded images to (3, S, S) float tensors in [0, 1] at a model's input size.

The protocol is timm's and RobustBench's: resize the shorter side to floor(S / crop_pct) with the model's
interpolation, then center-crop S. With crop_pct = 1 and an image already at S, nothing changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

_MODES = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR,
          "bicubic": InterpolationMode.BICUBIC}


def resize_size(input_size: int, crop_pct: float) -> int:
    """Shorter-side size before the center crop (timm: floor(input_size / crop_pct))."""
    return int(math.floor(input_size / crop_pct))


def pil_to_tensor(img: Image.Image, *, input_size: int, crop_pct: float, interpolation: str,
                  resize: bool = True) -> torch.Tensor:
    """Decode-side preprocessing of one PIL image -> (3, S, S) float in [0, 1]."""
    img = img.convert("RGB")
    if resize:
        size = resize_size(input_size, crop_pct)
        if min(img.size) != size:
            img = TF.resize(img, size, interpolation=_MODES[interpolation], antialias=True)
    img = TF.center_crop(img, [input_size, input_size])
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_resize(x: torch.Tensor, *, input_size: int, crop_pct: float, interpolation: str) -> torch.Tensor:
    """The same protocol on a batch (B, 3, H, W) in [0, 1]; a no-op when H = W = input_size and crop_pct = 1."""
    h, w = x.shape[-2:]
    if (h, w) == (input_size, input_size) and crop_pct == 1.0:
        return x
    size = resize_size(input_size, crop_pct)
    if min(h, w) != size:
        scale = size / min(h, w)
        new_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
        mode = interpolation if interpolation != "nearest" else "nearest-exact"
        kwargs = {"align_corners": False, "antialias": True} if mode in ("bilinear", "bicubic") else {}
        x = F.interpolate(x, size=new_hw, mode=mode, **kwargs).clamp_(0.0, 1.0)
    top = (x.shape[-2] - input_size) // 2
    left = (x.shape[-1] - input_size) // 2
    return x[..., top:top + input_size, left:left + input_size]
