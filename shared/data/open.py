"""One way from a data source to a dataset: "embedded" (the photos or clips that ship with the project's
dependencies) or a folder on disk (ImageNet layout or plain for images; ucf101 | classes | plain for videos)."""
from __future__ import annotations

from torch.utils.data import Dataset

from .embedded import EmbeddedClips, EmbeddedPhotos
from .image_folder import ImageFolder
from .video_folder import VideoFolder


def open_dataset(kind: str, source: str, split: str | None, resolution: int | tuple[int, int], frames: int = 17,
                 frame_stride: int = 1, fps: float | None = None, video_layout: str = "classes",
                 **embedded_options) -> Dataset:
    """The `split` of `source` as a dataset of `kind` ("image" or "video"). The embedded data has the splits
    "train" and "val"; a folder's split is its sub-folder (ImageNet `train`/`val`), a UCF-101 split list, or None
    for a plain folder. embedded_options go to the embedded clips (real_fraction, length)."""
    if kind not in ("image", "video"):
        raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")
    if kind == "image":
        return EmbeddedPhotos(split, resolution) if source == "embedded" else ImageFolder(source, split, resolution)
    if source == "embedded":
        return EmbeddedClips(split, resolution, num_frames=frames, frame_stride=frame_stride, **embedded_options)
    return VideoFolder(source, video_layout, split=split, num_frames=frames, frame_stride=frame_stride, fps=fps,
                       resolution=resolution)
