"""Clips of a dataset stored as one folder of frame images per video (StyleGAN-V's layout, which Latte's FVD reads),
selected as StyleGAN-V's fvd2048_16f selects them (eval/protocols.py, protocol stylegan-v-fvd2048-16f).

    root/<video>/<frame>.png ...      videos in name order, frames in name order within a video

Selection: videos with fewer than frames x stride frames are left out; of the rest, the first `count` in name order,
each a clip of `frames` frames every `stride` frames from a start drawn uniformly with random.Random(seed), one draw per
video in order (seed None: every clip from the video's first frame, as StyleGAN-V reads generated videos). Frames are
read at their stored size, which must be the resolution asked for (StyleGAN-V's datasets are prepared at it).
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from shared.data import DataError
from shared.data.transforms import to_unit_range


def frame_files(folder: Path) -> list[Path]:
    Image.init()
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in Image.EXTENSION),
                  key=lambda p: p.name)


def select_clips(lengths: list[int], count: int, frames: int, stride: int, seed: int | None) -> list[tuple[int, int]]:
    """(video index, first frame) of each clip; see the module docstring."""
    rng = random.Random(seed) if seed is not None else None
    kept = [i for i, n in enumerate(lengths) if n >= frames * stride][:count]
    span = (frames - 1) * stride + 1
    return [(i, rng.randint(0, lengths[i] - span) if rng else 0) for i in kept]


class FrameFolderClips(Dataset):
    """Clips as (3, T, H, W) in [-1, 1], selected from `root` as the module docstring says."""

    def __init__(self, root: str | Path, count: int, frames: int, stride: int = 1, seed: int | None = 0,
                 resolution: int | None = None):
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "frame folder dataset does not exist")
        videos = [(d, frame_files(d)) for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)]
        videos = [(d, f) for d, f in videos if f]
        if not videos:
            raise DataError(root, "no video folders of frame images found (expected <root>/<video>/<frame>.png)")
        self.videos, self.frames, self.stride = videos, frames, stride
        self.clips = select_clips([len(f) for _, f in videos], count, frames, stride, seed)
        if not self.clips:
            raise DataError(root, f"no video has {frames * stride} frames or more")
        first = videos[self.clips[0][0]][1][0]
        size = Image.open(first).size
        if resolution is not None and size != (resolution, resolution):
            raise DataError(first, f"frames are {size[0]}x{size[1]}, not {resolution}x{resolution}: frames are read at "
                                   f"their stored size; prepare the folder at the resolution evaluated")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        video, start = self.clips[i]
        folder, files = self.videos[video]
        chosen = files[start:start + (self.frames - 1) * self.stride + 1:self.stride]
        pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in chosen])  # (T, H, W, 3) uint8
        return {"pixels": to_unit_range(torch.from_numpy(pixels).permute(3, 0, 1, 2)), "label": torch.tensor(0),
                "path": str(folder)}
