"""Pictures a person can look at: an image reconstruction grid (PNG) and side-by-side videos (GIF)."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from shared.data.transforms import to_uint8


def image_grid(originals: torch.Tensor, reconstructions: torch.Tensor, path: str | Path) -> Path:
    """Two rows: inputs above, reconstructions below. Tensors (N, 3, H, W) in [-1, 1]."""
    top = torch.cat(list(to_uint8(originals)), -1)
    bottom = torch.cat(list(to_uint8(reconstructions)), -1)
    grid = torch.cat([top, bottom], -2).permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, grid)
    return path


def side_by_side_video(original: torch.Tensor, reconstruction: torch.Tensor, path: str | Path, fps: int = 8) -> Path:
    """Input | reconstruction, frame by frame. Tensors (3, T, H, W) in [-1, 1]; written as an animated GIF."""
    frames = torch.cat([to_uint8(original), to_uint8(reconstruction)], -1)  # (3, T, H, 2W)
    frames = [np.ascontiguousarray(f) for f in frames.permute(1, 2, 3, 0).numpy()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    return path
