"""Image datasets read from disk: the ImageNet layout (`<split>/<class>/*`) or a plain folder of images."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from .errors import DataError
from .keys import SampleKey
from .transforms import IMAGE_SUFFIXES, as_size, list_files, load_image_rgb, resize_and_crop, to_unit_range


class ImageFolder(Dataset):
    """Images as (3, 1, H, W) in [-1, 1] with an integer label.

    `root/<split>/<class>/*` (ImageNet) when `split` is given and `root/<split>` exists; otherwise
    `root/<class>/*` when `root` holds sub-folders with images; otherwise every image below `root`
    with label 0. Classes are indexed by sorted folder name. Items are `SampleKey`s (training,
    random crop and flip) or plain ints (evaluation, centre crop at `resolution`).
    """

    def __init__(self, root: str | Path, split: str | None = None, resolution: int | tuple[int, int] = 256,
                 flip: bool = True):
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "image folder does not exist")
        folder = root / split if split and (root / split).is_dir() else root
        if split and folder == root and any(p.is_dir() for p in root.iterdir() if p.name in ("train", "val")):
            raise DataError(root / split, f"split folder '{split}' not found")
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
        self.samples: list[tuple[Path, int]] = []
        if class_dirs:
            self.classes = [p.name for p in class_dirs]
            for label, d in enumerate(class_dirs):
                self.samples += [(f, label) for f in list_files(d, IMAGE_SUFFIXES)]
        else:
            self.classes = [folder.name]
            self.samples = [(f, 0) for f in list_files(folder, IMAGE_SUFFIXES)]
        if not self.samples:
            raise DataError(folder, f"no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        self.size = as_size(resolution)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | SampleKey) -> dict:
        if not isinstance(key, SampleKey):
            key = SampleKey(int(key), None, *self.size)
        path, label = self.samples[key.index % len(self.samples)]
        frames = load_image_rgb(path).unsqueeze(1)  # (3, 1, H, W)
        pixels = to_unit_range(resize_and_crop(frames, (key.height, key.width), key.rng(), self.flip))
        return {"pixels": pixels, "label": torch.tensor(label), "path": str(path)}
