"""What people look at, and what eval/ scores: sample files in the agreed layout, PNG grids and GIFs.

    <samples>/<class:04d>/<index:05d>.png    images (class = integer label; 0 when unconditional)
    <samples>/<class:04d>/<index:05d>.mp4    videos (H.264; decord reads them back, which eval/ needs)
"""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from shared.data.transforms import to_uint8


def write_png(pixels: torch.Tensor, path: str | Path) -> Path:
    """(3, H, W) in [-1, 1] -> PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, to_uint8(pixels).permute(1, 2, 0).numpy())
    return path


def write_mp4(clip: torch.Tensor, path: str | Path, fps: int = 8) -> Path:
    """(3, T, H, W) in [-1, 1] -> H.264 MP4 (near-lossless, yuv420p; H and W must be even)."""
    import av

    frames = to_uint8(clip).permute(1, 2, 3, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_sample(pixels: torch.Tensor, folder: str | Path, label: int, index: int) -> Path:
    """One sample (3, T, H, W) into the agreed layout: a PNG when T = 1, else an MP4."""
    stem = Path(folder) / f"{label:04d}" / f"{index:05d}"
    return write_png(pixels[:, 0], stem.with_suffix(".png")) if pixels.shape[1] == 1 else \
        write_mp4(pixels, stem.with_suffix(".mp4"))


def grid(pixels: torch.Tensor, path: str | Path, fps: int = 8) -> Path:
    """(rows, cols, 3, T, H, W) in [-1, 1] -> one PNG (T = 1) or one animated GIF, 2-pixel white gaps."""
    rows, cols, _, t, h, w = pixels.shape
    canvas = torch.full((3, t, rows * (h + 2) - 2, cols * (w + 2) - 2), 255, dtype=torch.uint8)
    for r in range(rows):
        for c in range(cols):
            canvas[:, :, r * (h + 2): r * (h + 2) + h, c * (w + 2): c * (w + 2) + w] = to_uint8(pixels[r, c])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.ascontiguousarray(f) for f in canvas.permute(1, 2, 3, 0).numpy()]
    if t == 1:
        imageio.imwrite(path.with_suffix(".png"), frames[0])
        return path.with_suffix(".png")
    imageio.mimsave(path.with_suffix(".gif"), frames, duration=1000 / fps, loop=0)
    return path.with_suffix(".gif")
