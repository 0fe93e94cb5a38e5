"""The evaluation splits, by name: "embedded" (the held-out embedded photos or clips) or a folder on disk."""
from __future__ import annotations

from torch.utils.data import Dataset

from shared.data import open_dataset

from .protocols import EVERY_ITEM


def held_out_split(source: str, split: str | None) -> str | None:
    """The split to read: the embedded data's held-out "val" (evaluation never reads its training items; "test", a
    folder's held-out name, means it too), or a folder's `split`. Another split of the embedded data is an error,
    not silently "val"."""
    if source != "embedded":
        return split
    if split not in (None, "val", "test"):
        raise ValueError(f"split {split!r}: the embedded data is evaluated on its held-out split 'val' only; give "
                         f"--split val or leave it out")
    return "val"


def split_label(source: str, split: str | None) -> str:
    """The split as a protocol record names it (eval/protocols.py): a folder's split name, "embedded val" for the
    embedded data."""
    if source == "embedded":
        return f"embedded {held_out_split(source, split)}"
    return split or EVERY_ITEM


def image_split(source: str, split: str | None, resolution: int) -> Dataset:
    """Centre-cropped images: the embedded validation photos, or `source[/<split>]` (ImageNet or plain layout)."""
    return open_dataset("image", source, held_out_split(source, split), resolution)


def video_split(source: str, layout: str, split: str | None, frames: int, fps: float | None,
                resolution: int) -> Dataset:
    """Centre clips: the embedded validation clips, or a video folder (ucf101 | classes | plain layout)."""
    return open_dataset("video", source, held_out_split(source, split), resolution, frames, fps=fps,
                        video_layout=layout)
