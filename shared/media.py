"""Files people look at and evaluation reads: samples in the project's layout, PNG grids and animated GIF grids.

    <samples>/<class:04d>/<index:05d>.png    an image (class = integer label; 0 when unconditional)
    <samples>/<class:04d>/<index:05d>.mp4    a clip: lossless RGB H.264 (libx264rgb, crf 0), which decord reads
                                             back bit-exactly, so that metrics see what was generated

Every file is written atomically.
"""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from .atomic import atomic_write
from .data.transforms import to_uint8


def sample_path(folder: str | Path, label: int, index: int, video: bool) -> Path:
    return Path(folder) / f"{label:04d}" / f"{index:05d}{'.mp4' if video else '.png'}"


def write_video(frames: np.ndarray, path: str | Path, fps: int = 8, codec: str = "libx264rgb",
                pix_fmt: str = "rgb24", options: dict | None = None) -> Path:
    """(T, H, W, 3) uint8 -> a video file, its container named by the file's suffix (.mp4, .avi ...). The defaults
    are the samples' lossless RGB H.264 (options None: crf 0)."""
    import av

    options = {"crf": "0"} if options is None else options

    def write(tmp: str) -> None:
        with av.open(tmp, "w", format=Path(path).suffix.lstrip(".")) as container:
            stream = container.add_stream(codec, rate=fps, options=options)
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = pix_fmt
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    return atomic_write(path, write)


def write_sample(pixels: torch.Tensor, path: str | Path) -> Path:
    """One sample (3, T, H, W) in [-1, 1]: a PNG when T = 1, else an MP4."""
    frames = to_uint8(pixels.cpu()).permute(1, 2, 3, 0).numpy()  # (T, H, W, 3)
    if frames.shape[0] == 1:
        return atomic_write(path, lambda tmp: imageio.imwrite(tmp, frames[0], format="png"))
    return write_video(frames, path)


def read_sample(path: str | Path) -> torch.Tensor:
    """A written sample back as (3, T, H, W) in [-1, 1]."""
    path = Path(path)
    if path.suffix == ".png":
        frames = imageio.imread(path)[None]
    else:
        import decord

        reader = decord.VideoReader(str(path), num_threads=1)
        frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    return torch.from_numpy(np.ascontiguousarray(frames[..., :3])).permute(3, 0, 1, 2).float() / 127.5 - 1


def _tile(frames: torch.Tensor, per_row: int) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (3, rows*H, per_row*W), missing cells black."""
    n, c, h, w = frames.shape
    rows = -(-n // per_row)
    canvas = torch.zeros(c, rows * h, per_row * w, dtype=frames.dtype)
    for i, f in enumerate(frames):
        r, k = divmod(i, per_row)
        canvas[:, r * h : (r + 1) * h, k * w : (k + 1) * w] = f
    return canvas


def grid(pixels: torch.Tensor, path: str | Path, per_row: int = 8, fps: int = 8) -> Path:
    """(N, 3, T, H, W) in [-1, 1], `per_row` to a row -> `path` with .png (T = 1) or an animated .gif."""
    frames = to_uint8(pixels.cpu())
    tiles = [np.ascontiguousarray(_tile(frames[:, :, k], per_row).permute(1, 2, 0).numpy())
             for k in range(frames.shape[2])]
    path = Path(path).with_suffix(".png" if len(tiles) == 1 else ".gif")
    if len(tiles) == 1:
        return atomic_write(path, lambda tmp: imageio.imwrite(tmp, tiles[0], format="png"))
    return atomic_write(path, lambda tmp: imageio.mimsave(tmp, tiles, format="gif", duration=1000 / fps, loop=0))
