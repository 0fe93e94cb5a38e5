"""The evaluation splits, by name: "embedded" (the held-out embedded photos or clips) or a folder on disk."""
from __future__ import annotations

from shared.data import EmbeddedClips, EmbeddedPhotos, ImageFolder, VideoFolder


def image_split(source: str, split: str | None, resolution: int) -> ImageFolder | EmbeddedPhotos:
    """Centre-cropped images: the embedded validation photos, or `source[/<split>]` (ImageNet or plain layout)."""
    if source == "embedded":
        return EmbeddedPhotos("val", resolution)
    return ImageFolder(source, split, resolution)


def video_split(source: str, layout: str, split: str | None, frames: int, fps: float | None,
                resolution: int) -> VideoFolder | EmbeddedClips:
    """Centre clips: the embedded validation clips, or a video folder (ucf101 | classes | plain layout)."""
    if source == "embedded":
        return EmbeddedClips("val", resolution, num_frames=frames)
    return VideoFolder(source, layout, split=split, num_frames=frames, fps=fps, resolution=resolution)
