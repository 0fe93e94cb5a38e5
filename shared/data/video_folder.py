"""Video datasets read from disk with decord: UCF-101 (official splits), class folders (Kinetics), plain folders.

Only the frames of the requested clip are decoded, never the whole video. A clip has `num_frames`
frames taken every `frame_stride` frames, or, when `fps` is set, at that frame rate (the stride is
derived from each video's own rate); the same rule holds for training and evaluation. Training takes
a random start, evaluation the centre clip. Videos shorter than a clip follow `short_policy`:
"loop" (documented default: frame indices wrap around) or "error" (a DataError naming the file).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DataError
from .keys import SampleKey
from .transforms import VIDEO_SUFFIXES, as_size, list_files, resize_and_crop, to_unit_range

log = logging.getLogger(__name__)
SHORT_POLICIES = ("loop", "error")


def _open_video(path: Path):
    import decord

    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except (decord.DECORDError, RuntimeError, ValueError) as exc:
        raise DataError(path, f"cannot open video ({str(exc).splitlines()[0][:200]})") from None


def clip_indices(num_available: int, num_frames: int, stride: int, start: int | None, policy: str,
                 path: Path) -> np.ndarray:
    """Frame indices of one clip. `start` None: the centre clip."""
    if num_available <= 0:
        raise DataError(path, "video has no frames")
    span = (num_frames - 1) * stride + 1
    if span > num_available:
        if policy == "error":
            raise DataError(path, f"video has {num_available} frames, a clip needs {span} "
                                  f"({num_frames} frames, stride {stride})")
        return (np.arange(num_frames) * stride) % num_available
    last_start = num_available - span
    s = last_start // 2 if start is None else min(start, last_start)
    return s + np.arange(num_frames) * stride


class VideoFolder(Dataset):
    """Clips as (3, T, H, W) in [-1, 1] with an integer label.

    layout "ucf101": `root/<Class>/*.avi` with `classInd.txt` and `trainlist0N.txt` / `testlist0N.txt`
    (found in `split_dir`, default `root/ucfTrainTestlist` or `root`); split is "train" or "test",
    fold 1-3. layout "classes": `root[/<split>]/<class>/*` (Kinetics style). layout "plain": every
    video below `root`, label 0.
    """

    def __init__(self, root: str | Path, layout: str = "classes", split: str | None = None, fold: int = 1,
                 split_dir: str | Path | None = None, num_frames: int = 17, frame_stride: int = 1,
                 fps: float | None = None, resolution: int | tuple[int, int] = 256, flip: bool = True,
                 short_policy: str = "loop"):
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "video folder does not exist")
        if short_policy not in SHORT_POLICIES:
            raise ValueError(f"short_policy must be one of {SHORT_POLICIES}, got {short_policy!r}")
        if layout == "ucf101":
            self.samples, self.classes = _ucf101_samples(root, split or "train", fold, split_dir)
        elif layout == "classes":
            folder = root / split if split and (root / split).is_dir() else root
            class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
            if not class_dirs:
                raise DataError(folder, "no class folders found")
            self.classes = [d.name for d in class_dirs]
            self.samples = [(f, i) for i, d in enumerate(class_dirs) for f in list_files(d, VIDEO_SUFFIXES)]
        elif layout == "plain":
            self.classes = [root.name]
            self.samples = [(f, 0) for f in list_files(root, VIDEO_SUFFIXES)]
        else:
            raise ValueError(f"layout must be 'ucf101', 'classes' or 'plain', got {layout!r}")
        if not self.samples:
            raise DataError(root, f"no videos found (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
        self.num_frames, self.frame_stride, self.fps = num_frames, frame_stride, fps
        self.size, self.flip, self.short_policy = as_size(resolution), flip, short_policy
        self.looped: set[Path] = set()  # videos shorter than a clip whose frames were looped (short_policy "loop")

    def __len__(self) -> int:
        return len(self.samples)

    def stride_for(self, native_fps: float) -> int:
        if self.fps is None or not native_fps or native_fps <= 0:
            return self.frame_stride
        return max(1, round(native_fps / self.fps))

    def __getitem__(self, key: int | SampleKey) -> dict:
        if not isinstance(key, SampleKey):
            key = SampleKey(int(key), None, *self.size)
        path, label = self.samples[key.index % len(self.samples)]
        vr = _open_video(path)
        n = len(vr)
        stride = self.stride_for(vr.get_avg_fps())
        rng = key.rng()
        span = (self.num_frames - 1) * stride + 1
        start = None if rng is None else rng.randint(0, max(0, n - span))
        idx = clip_indices(n, self.num_frames, stride, start, self.short_policy, path)
        if n < span and path not in self.looped:  # said once per file; the trainer reports the count
            self.looped.add(path)
            log.warning("%s: %d frames, shorter than a clip (%d); its frames are looped", path, n, span)
        try:
            frames = vr.get_batch(list(map(int, idx))).asnumpy()  # (T, H, W, 3) uint8
        except Exception as exc:  # decord raises several unrelated types for broken streams
            raise DataError(path, f"cannot decode frames {idx[0]}..{idx[-1]} "
                                  f"({str(exc).splitlines()[0][:200]})") from None
        frames = torch.from_numpy(frames).permute(3, 0, 1, 2)  # (3, T, H, W)
        pixels = to_unit_range(resize_and_crop(frames, (key.height, key.width), rng, self.flip))
        return {"pixels": pixels, "label": torch.tensor(label), "path": str(path)}


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(path, "split file not found")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def _ucf101_samples(root: Path, split: str, fold: int, split_dir: str | Path | None):
    candidates = [Path(split_dir)] if split_dir else [root / "ucfTrainTestlist", root]
    base = next((d for d in candidates if (d / "classInd.txt").is_file()), None)
    if base is None:
        raise DataError(candidates[0] / "classInd.txt", "UCF-101 split file not found; for Kinetics-style class "
                                                         "folders or a plain folder of videos, set the video layout "
                                                         "to 'classes' or 'plain' (--video-layout)")
    classes = []
    for ln in _read_lines(base / "classInd.txt"):
        parts = ln.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(base / "classInd.txt", f"malformed line {ln!r} (expected '<index> <ClassName>')")
        classes.append(parts[1])
    index_of = {c.lower(): i for i, c in enumerate(classes)}
    name = {"train": "trainlist", "test": "testlist", "val": "testlist"}.get(split)
    if name is None:
        raise ValueError(f"UCF-101 split must be 'train' or 'test', got {split!r}")
    list_file = base / f"{name}0{fold}.txt"
    samples = []
    for ln in _read_lines(list_file):
        rel = ln.split()[0]
        cls = rel.split("/")[0].lower()
        if cls not in index_of:
            raise DataError(list_file, f"class of {rel!r} is not in classInd.txt")
        samples.append((root / rel, index_of[cls]))
    missing = [p for p, _ in samples if not p.is_file()]
    if missing:
        raise DataError(missing[0], f"listed in {list_file.name} but not found "
                                    f"({len(missing)} of {len(samples)} listed videos are missing)")
    return samples, classes
