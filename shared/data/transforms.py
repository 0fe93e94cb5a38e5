"""Pixel-level helpers shared by every dataset: decoding to RGB, aspect-preserving resize and crop, flips.

Every dataset returns frames as float tensors in [-1, 1] shaped (3, T, H, W); an image has T = 1.
Random choices come from a `random.Random` seeded per sample, so a batch is a pure function of the
training step and a run resumes exactly.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}


def as_size(resolution: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(H, W) from an int (square) or a pair."""
    if isinstance(resolution, int):
        return resolution, resolution
    h, w = resolution
    return int(h), int(w)


def load_image_rgb(path: str | Path) -> torch.Tensor:
    """Decode any PIL-readable image (L, RGB, RGBA, CMYK, P, I;16, ...) to uint8 (3, H, W) RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit samples (PNG's "I;16", or "I" holding 16-bit values): scaled by the bit depth, never by
                # the image's own maximum, so a dark 16-bit image stays dark
                arr = np.asarray(im, dtype=np.float64)
                arr = np.clip(arr, 0, 65535) / 65535.0 * 255.0
                im = Image.fromarray(np.round(arr).astype(np.uint8), mode="L")
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise DataError(path, f"image too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, f"cannot decode image ({exc.__class__.__name__}: {exc})") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def to_unit_range(frames_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [-1, 1]."""
    return frames_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 in [0, 255]."""
    return frames.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def resize_and_crop(
    frames: torch.Tensor, size: tuple[int, int], rng: random.Random | None, flip: bool = False
) -> torch.Tensor:
    """Crop (C, T, H0, W0) to the largest box of `size`'s aspect ratio, then resize the box to `size`.

    rng None: centre box, no flip (evaluation). Otherwise a random box position and, with `flip`, a random
    horizontal flip (training). Never squashes: the aspect ratio of the content is kept (to within half a source
    pixel). The box is cut before resizing, so the work and memory follow the output size, never the source's
    (a 1 x 5000 image costs as little as any other).
    """
    out_h, out_w = size
    _, _, h0, w0 = frames.shape
    scale = max(out_h / h0, out_w / w0)  # the source scale at which the output just fits
    box_h, box_w = min(h0, max(1, round(out_h / scale))), min(w0, max(1, round(out_w / scale)))
    if rng is None:
        top, left = (h0 - box_h) // 2, (w0 - box_w) // 2
    else:
        top, left = rng.randint(0, h0 - box_h), rng.randint(0, w0 - box_w)
    x = frames[:, :, top : top + box_h, left : left + box_w].float()
    if (box_h, box_w) != (out_h, out_w):
        x = F.interpolate(x.permute(1, 0, 2, 3), size=(out_h, out_w), mode="bilinear", antialias=True,
                          align_corners=False).permute(1, 0, 2, 3)
    if rng is not None and flip and rng.random() < 0.5:
        x = x.flip(-1)
    return x.clamp_(0, 255)


def list_files(folder: Path, suffixes: set[str]) -> list[Path]:
    """Files below `folder` (recursively) whose suffix is in `suffixes`, sorted for determinism."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
