"""Samples a person can look at: a PNG grid of images, an animated GIF grid of clips."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from shared.data.transforms import to_uint8


def _tile(frames: torch.Tensor, per_row: int) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (3, rows*H, per_row*W), missing cells black."""
    n, c, h, w = frames.shape
    rows = -(-n // per_row)
    canvas = torch.zeros(c, rows * h, per_row * w, dtype=frames.dtype)
    for i, f in enumerate(frames):
        r, k = divmod(i, per_row)
        canvas[:, r * h : (r + 1) * h, k * w : (k + 1) * w] = f
    return canvas


def image_grid(images: torch.Tensor, path: str | Path, per_row: int = 8) -> Path:
    """images (N, 3, H, W) in [-1, 1] -> a PNG grid, `per_row` to a row."""
    grid = _tile(to_uint8(images.cpu()), per_row).permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, grid)
    return path


def video_grid(videos: torch.Tensor, path: str | Path, per_row: int = 4, fps: int = 8) -> Path:
    """videos (N, 3, T, H, W) in [-1, 1] -> an animated GIF of the grid, frame by frame."""
    frames = to_uint8(videos.cpu())  # (N, 3, T, H, W)
    tiles = [np.ascontiguousarray(_tile(frames[:, :, k], per_row).permute(1, 2, 0).numpy())
             for k in range(frames.shape[2])]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, tiles, duration=1000 / fps, loop=0)
    return path
