"""Can the data path feed a GPU? Items per second of one loader worker, with the project's own datasets and
training transforms (random crop and flip) at the paper's resolution and frame intervals, on folders in the usual
layouts made from the embedded data:

- an ImageNet-style folder of JPEGs at ImageNet's usual 500 x 375 (`ImageFolder`);
- a UCF-101-style tree of MPEG-4 AVIs at 320 x 240 with ucfTrainTestlist/ (`VideoFolder`, layout ucf101; decord,
  only the clip's frames decoded, in one batched read), at the tokenizer's interval 1 and Latte's interval 3;
- a Kinetics-style tree of H.264 MP4s at 340 x 256 (`VideoFolder`, layout classes: the same reader).

A worker reads items one after another, so the rate of one process reading alone is the rate per worker.

    python -m bench.data_throughput --out bench/out/data_throughput.json
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.flops import machine_name
from shared.atomic import atomic_write_json
from shared.data import ImageFolder, SampleKey, VideoFolder
from shared.data.embedded import load_photo, load_video
from shared.media import write_video

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def imagenet_folder(root: Path, per_class: int = 12) -> Path:
    """train/<wnid>/*.JPEG at 500 x 375 (quality 90), crops of the embedded photos."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(PHOTOS):
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True)
        photo = Image.fromarray(load_photo(name).permute(1, 2, 0).numpy())
        for i in range(per_class):
            w, h = photo.size
            scale = rng.uniform(0.6, 1.0)
            cw, ch = int(w * scale), int(h * scale)
            x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            photo.crop((x, y, x + cw, y + ch)).resize((500, 375)).save(folder / f"img_{i:03d}.JPEG", quality=90)
    return root


def video_tree(root: Path, layout: str, size: tuple[int, int], per_class: int = 3, frames: int = 120) -> Path:
    """UCF-101 (AVI, MPEG-4 part 2, with its split lists) or Kinetics-style (MP4, H.264) clips of the embedded videos."""
    classes = ("Biking", "Skiing")
    lists = []
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        video = load_video(("bikes", "bigbuckbunny")[c], size[1]).permute(1, 2, 3, 0).numpy()  # (N, H, W, 3)
        for g in range(per_class):
            clip = video[g * 5 : g * 5 + frames, :, : size[0]]
            clip = np.ascontiguousarray(clip[:, : size[1] // 2 * 2, : size[0] // 2 * 2])
            if layout == "ucf101":
                name = f"{cls}/v_{cls}_g{g + 1:02d}_c01.avi"
                write_video(clip, root / name, fps=25, codec="mpeg4", pix_fmt="yuv420p", options={})
                lists.append(f"{name} {c + 1}\n")
            else:
                write_video(clip, root / cls / f"{cls}_{g:03d}.mp4", fps=25, codec="libx264", pix_fmt="yuv420p",
                            options={"crf": "23"})
    if layout == "ucf101":
        (root / "ucfTrainTestlist").mkdir()
        (root / "ucfTrainTestlist" / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
        (root / "ucfTrainTestlist" / "trainlist01.txt").write_text("".join(lists))
        (root / "ucfTrainTestlist" / "testlist01.txt").write_text("".join(line.split()[0] + "\n" for line in lists))
    return root


def items_per_second(dataset, resolution: int, items: int, rounds: int = 2) -> float:
    """Training items (random crop and flip, SampleKey) read one after another: the best of `rounds` passes."""
    best = float("inf")
    for r in range(rounds):
        start = time.perf_counter()
        for i in range(items):
            dataset[SampleKey(i, 1000 * r + i, resolution, resolution)]
        best = min(best, time.perf_counter() - start)
    return items / best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--items", type=int, default=24, help="items read per measurement")
    ap.add_argument("--out", default="bench/out/data_throughput.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # a loader worker is one thread
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = ImageFolder(imagenet_folder(tmp / "imagenet"), "train", args.resolution)
        cases["imagenet_jpeg_500x375"] = {"dataset": "ImageNet layout, JPEG 500 x 375", "kind": "image",
                                          "items_per_second": items_per_second(images, args.resolution, args.items)}
        ucf = video_tree(tmp / "ucf101", "ucf101", (320, 240))
        kinetics = video_tree(tmp / "kinetics", "classes", (340, 256))
        for name, root, layout, stride, what in (
                ("ucf101_avi_320x240_interval1", ucf, "ucf101", 1, "UCF-101 layout, MPEG-4 AVI 320 x 240, interval 1"),
                ("ucf101_avi_320x240_interval3", ucf, "ucf101", 3, "UCF-101 layout, MPEG-4 AVI 320 x 240, interval 3"),
                ("kinetics_mp4_340x256_interval1", kinetics, "classes", 1, "class folders, H.264 MP4 340 x 256")):
            videos = VideoFolder(root, layout, split="train", num_frames=args.frames, frame_stride=stride,
                                 resolution=args.resolution)
            cases[name] = {"dataset": what, "kind": "video", "frames": args.frames, "frame_interval": stride,
                           "items_per_second": items_per_second(videos, args.resolution, max(4, args.items // 4))}
    report = {"machine": machine_name(), "threads_per_worker": 1, "resolution": args.resolution, "cases": cases}
    atomic_write_json(args.out, report)
    for name, c in cases.items():
        print(f"{name}: {c['items_per_second']:.1f} items/s per worker")
    return report


if __name__ == "__main__":
    main()
