"""The evaluation splits, by name: "embedded" (the held-out embedded photos or clips) or a folder on disk."""
from __future__ import annotations

from torch.utils.data import Dataset

from shared.data import open_dataset


def image_split(source: str, split: str | None, resolution: int) -> Dataset:
    """Centre-cropped images: the embedded validation photos, or `source[/<split>]` (ImageNet or plain layout)."""
    return open_dataset("image", source, "val" if source == "embedded" else split, resolution)


def video_split(source: str, layout: str, split: str | None, frames: int, fps: float | None,
                resolution: int) -> Dataset:
    """Centre clips: the embedded validation clips, or a video folder (ucf101 | classes | plain layout)."""
    return open_dataset("video", source, "val" if source == "embedded" else split, resolution, frames, fps=fps,
                        video_layout=layout)
