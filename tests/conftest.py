import os

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from PIL import Image

from shared.data.embedded import load_photo, load_video
from shared.media import write_video

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_accelerator_state_per_test():
    """accelerate keeps one mixed-precision state per process and refuses an Accelerator of another precision
    (a trainer makes one per process); the tests train in fp32 and bf16 in one process, so each test ends by
    dropping that state (the distributed set-up, PartialState, is kept)."""
    yield
    AcceleratorState._reset_state()


def photo(name, size):
    """A real embedded photo as a PIL image of `size` (w, h)."""
    arr = load_photo(name).permute(1, 2, 0).numpy()
    return Image.fromarray(arr).resize(size)


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    modes = [("L", "JPEG"), ("RGBA", "png"), ("CMYK", "JPEG"), ("P", "png"), ("RGB", "JPEG")]
    for split in ("train", "val"):
        for label, cls in enumerate(["n01_cat", "n02_astronaut"]):
            d = root / split / cls
            d.mkdir(parents=True)
            src = photo(["chelsea", "astronaut"][label], (90, 60))
            for i, (mode, ext) in enumerate(modes):
                src.convert(mode).save(d / f"img{i}.{ext}")
    # a 16-bit greyscale PNG
    grey = (np.asarray(photo("coffee", (90, 60)).convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(grey).save(root / "train" / "n01_cat" / "img16.png")
    return root


def write_avi(path, frames):
    """A UCF-101-like file: MPEG-4 part 2 in AVI, yuv420p (lossy)."""
    write_video(frames, path, fps=25, codec="mpeg4", pix_fmt="yuv420p", options={})


@pytest.fixture(scope="module")
def ucf_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf101")
    real = load_video("carphone", 48).permute(1, 2, 3, 0).numpy()  # (N, 48, 58, 3) real video
    real = real[:, :, : real.shape[2] // 2 * 2]
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Biking\n")
    train, test = [], []
    for c, cls in enumerate(["ApplyEyeMakeup", "Biking"]):
        (root / cls).mkdir()
        for g in range(2):
            name = f"{cls}/v_{cls}_g0{g + 1}_c01.avi"
            write_avi(root / name, real[c * 40 + g * 10 : c * 40 + g * 10 + 30])
            (train if g == 0 else test).append(name)
    (lists / "trainlist01.txt").write_text("".join(f"{n} {i // 1 + 1}\n" for i, n in enumerate(train)))
    (lists / "testlist01.txt").write_text("".join(f"{n}\n" for n in test))
    return root
