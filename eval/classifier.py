"""A small classifier of the real training data: the judge of the class-consistency score.

    net, record = load_or_train(RealData("image", "embedded", resolution=64), PRESETS["small"]["image"],
                                "results/small/classifiers")

The network is trained on the TRAINING split of the data the generator learnt from, at the samples'
resolution (and clip length), from the project's step-indexed batches (random crops and flips drawn from
each `SampleKey`'s seed), for a fixed number of steps and from a fixed seed, so the same settings give the
same network (on one machine and thread count: the CPU's float sums depend on the threads). A random blur on half the training inputs keeps a blurry generated sample from being read as
a blurry class.

Images: 2-D convolutions. Videos: the same on the middle frame (what is shown), plus the camera's motion
estimated between consecutive frames (how it moves). The embedded clips' classes are a real video or a
camera motion (pan, zoom, rotate) over any photo: the motions differ in nothing but how content moves from
frame to frame, which a network that looks at single frames or their average cannot see.

Its accuracy is measured on held-out data, and the score is only worth reading when that accuracy is far
above chance:
- embedded photos: the validation photos are other photos (other classes), so held-out accuracy is measured
  on fresh random crops of the TRAINING photos, with seeds training never draws (>= 2**31 - 1; the step
  schedule's seeds are reduced modulo 2**31 - 1);
- embedded clips: the fixed validation clips plus random clips of the validation split (the last 20 % of
  each real video, motions over the held-out photos); training and held-out clips are class-balanced (as
  many of each real video as of each motion);
- folders: the validation split (ImageNet `val`, UCF-101 `test`), centre crops; a folder with no such split
  falls back to fresh random crops of the training items, as for the photos.

A trained network is kept in `<cache>/<kind>_<data>_<res>px[_<frames>f]_<hash>/` (classifier.safetensors +
classifier.json); the hash covers the data (a folder's file list), resolution, frames, training settings and
the source of this module and of the dataset class, so changing any of them trains a new one, and a file
whose weights no longer match their record is retrained.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from shared.atomic import atomic_write, atomic_write_json
from shared.data import EmbeddedClips, EmbeddedPhotos, ImageFolder, SampleKey, VideoFolder, open_dataset
from shared.data.collate import collate
from shared.data.embedded import REAL_VIDEOS
from shared.data.sampling import StepSchedule, step_loader
from shared.provenance import file_sha256
from shared.training import lr_at, set_lr
from shared.training.precision import autocast as precision_autocast, choose_precision

HELD_OUT_SEED = 2**31 - 1  # StepSchedule seeds are taken modulo 2**31 - 1: seeds from here on are never trained on


# --------------------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 32  # channels of the first stage; each later stage doubles them
    steps: int = 400
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 20
    weight_decay: float = 0.05
    blur_prob: float = 0.5  # share of training inputs blurred (down- and up-sampled by 2-4x)
    held_out: int = 256  # held-out items measured (at most)
    seed: int = 0
    num_workers: int = 0  # data-loading processes (folders of JPEGs or videos at the paper scale)


PRESETS = {
    "tiny": {"image": ClassifierConfig(width=8, steps=30, batch_size=16, held_out=64),
             "video": ClassifierConfig(width=8, steps=30, batch_size=8, held_out=32)},
    "small": {"image": ClassifierConfig(steps=400, batch_size=32),
              "video": ClassifierConfig(width=16, steps=300, batch_size=16, held_out=128)},
    "paper": {"image": ClassifierConfig(width=64, steps=20000, batch_size=128, lr=1e-3, warmup_steps=500,
                                        held_out=10000, num_workers=8),
              "video": ClassifierConfig(width=32, steps=20000, batch_size=32, lr=1e-3, warmup_steps=500,
                                        held_out=3783, num_workers=8)},
}


# --------------------------------------------------------------------------------------------------------------
# The real data: training split, held-out items, which classes exist
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RealData:
    """The real data a generator learnt from: "embedded" (photos or clips) or a folder."""

    kind: str  # "image" | "video"
    source: str = "embedded"
    resolution: int = 64
    frames: int = 1  # 1 for images
    video_layout: str = "ucf101"  # folders of videos: ucf101 | classes | plain

    def __post_init__(self):
        if self.kind not in ("image", "video"):
            raise ValueError(f"kind must be 'image' or 'video', got {self.kind!r}")
        if self.kind == "image" and self.frames != 1:
            raise ValueError(f"images have 1 frame, got frames={self.frames}")

    @property
    def name(self) -> str:
        if self.source == "embedded":
            return "embedded"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.source).resolve().name) or "data"

    def identity(self) -> dict:
        """What makes this data this data (the cache key): source, layout, size, and a folder's file list."""
        out = {"kind": self.kind, "resolution": self.resolution, "frames": self.frames}
        if self.source == "embedded":
            return {**out, "source": "embedded"}
        train = self.train
        files = "\n".join(f"{Path(p).relative_to(self.source)}\t{label}" for p, label in train.samples)
        listing = hashlib.sha256(files.encode()).hexdigest()
        return {**out, "source": str(Path(self.source).resolve()), "video_layout": self.video_layout,
                "train_items": len(train), "train_files_sha256": listing}

    def describe(self) -> str:
        what = "photos" if self.kind == "image" else "clips"
        return f"embedded {what}" if self.source == "embedded" else self.source

    @cached_property
    def train(self) -> Dataset:
        """The training split (random crops and flips for `SampleKey`s with a seed)."""
        # embedded clips class-balanced: as many clips of each real video as of each camera motion
        balance = ({"real_fraction": len(REAL_VIDEOS) / len(EmbeddedClips.classes)}
                   if self.kind == "video" and self.source == "embedded" else {})
        return open_dataset(self.kind, self.source, "train", self.resolution, self.frames,
                            video_layout=self.video_layout, **balance)

    def class_names(self) -> list[str]:
        return list(self.train.classes)

    def known_classes(self) -> list[int]:
        """The labels that occur in the training split (the embedded photos' validation photos do not)."""
        train = self.train
        if isinstance(train, EmbeddedPhotos):
            return sorted(EmbeddedPhotos.classes.index(n) for n in train.names)
        if isinstance(train, EmbeddedClips):
            return list(range(len(train.classes)))
        return sorted({label for _, label in train.samples})

    def held_out(self, limit: int) -> tuple[Dataset, list[SampleKey], str]:
        """(dataset, keys, description) of the held-out items the accuracy is measured on."""
        size = (self.resolution, self.resolution)
        fresh = [SampleKey(i, HELD_OUT_SEED + i, *size) for i in range(limit)]
        if self.source == "embedded" and self.kind == "image":
            return (EmbeddedPhotos("train", self.resolution), fresh,
                    "fresh random crops of the training photos, seeds never used in training (the validation "
                    "photos are other classes)")
        if self.source == "embedded":
            val = EmbeddedClips("val", self.resolution, num_frames=self.frames, real_fraction=self.train.real_fraction)
            fixed = [SampleKey(i, None, *size) for i in range(len(val))]
            return (val, (fixed + fresh)[:limit],
                    f"the {len(val)} fixed validation clips, then random clips of the validation split (last 20 % "
                    "of each real video, motions over the held-out photos), as many of each class")
        split = {"image": "val", "video": "test" if self.video_layout == "ucf101" else "val"}[self.kind]
        val = self._folder_split(split)
        if val is None:
            return (self.train, fresh,
                    f"no '{split}' split in {self.source}: fresh random crops of the training items, seeds "
                    "never used in training")
        order = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:limit].tolist()
        return val, [SampleKey(i, None, *size) for i in order], f"the '{split}' split of {self.source}, centre crops"

    def _folder_split(self, split: str) -> Dataset | None:
        root = Path(self.source)
        if self.kind == "image":
            return ImageFolder(root, split, self.resolution) if (root / split).is_dir() else None
        if self.video_layout == "ucf101":
            return VideoFolder(root, "ucf101", split=split, num_frames=self.frames, resolution=self.resolution)
        if self.video_layout == "classes" and (root / split).is_dir():
            return VideoFolder(root, "classes", split=split, num_frames=self.frames, resolution=self.resolution)
        return None


# --------------------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------------------

MOTION_SIZES = (32, 16, 8)  # frame sizes at which the camera motion is estimated (coarse sizes see fast motion)


def camera_motion(x: torch.Tensor, sizes: tuple[int, ...] = MOTION_SIZES) -> torch.Tensor:
    """How the camera moves: (B, 3, T, H, W) -> (B, 12 * len(sizes)), for T >= 2.

    Between each pair of consecutive frames, the affine flow (pan x, pan y, zoom, rotation) that best explains
    the change in brightness, by least squares on the brightness-constancy equation (Lucas-Kanade with a global
    motion model): It = -(u Ix + v Iy + z (X Ix + Y Iy) + r (X Iy - Y Ix)). Estimated on the grey frames resized
    to each of `sizes`, then summarised over time: mean, standard deviation, and the mean's direction (its
    size divided out: generated clips often move slower than the data, and the class is the kind of motion).
    No parameters: the network learns what to make of it.
    """
    with torch.autocast(x.device.type, enabled=False):
        grey = x.float().mean(1)  # (B, T, H, W)
        out = []
        for size in sizes:
            g = F.interpolate(grey, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            a, b = g[:, :-1], g[:, 1:]  # frame t, frame t + 1: (B, T-1, s, s)
            m = (a + b) / 2
            it = (b - a)[..., 1:-1, 1:-1]
            ix = (m[..., 1:-1, 2:] - m[..., 1:-1, :-2]) / 2
            iy = (m[..., 2:, 1:-1] - m[..., :-2, 1:-1]) / 2
            coords = torch.linspace(-1, 1, size - 2, device=x.device)
            yy, xx = torch.meshgrid(coords, coords, indexing="ij")
            phi = torch.stack([ix, iy, xx * ix + yy * iy, xx * iy - yy * ix], -1).flatten(2, 3)  # (B, T-1, N, 4)
            lhs = phi.transpose(-1, -2) @ phi  # (B, T-1, 4, 4)
            rhs = -(phi * it.flatten(2)[..., None]).sum(2)  # (B, T-1, 4)
            ridge = 1e-3 * lhs.diagonal(dim1=-2, dim2=-1).mean(-1) + 1e-8
            flow = torch.linalg.solve(lhs + ridge[..., None, None] * torch.eye(4, device=x.device), rhs)
            mean = flow.mean(1)  # the four parameters share a unit: pixels (at this size) at the frame's edge
            direction = mean / (mean.norm(dim=-1, keepdim=True) + 0.1)  # what kind of motion, whatever its speed
            out += [mean, flow.std(1, correction=0), direction]
        return torch.cat(out, -1)


class ConvClassifier(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> class logits (B, classes).

    What is in the picture: 2-D convolutions on the frame (images) or the middle frame (videos), four stages
    that halve the size (64 px -> 4 px), global average pooling (any size works). Videos add how the camera
    moves (`camera_motion`, through a small layer): the embedded clips' motion classes (pan, zoom, rotate over
    any photo) differ in nothing else. A 3-D network was tried first: in the 2-minute budget it learnt the
    real videos but not the motions (below 35 % per motion class, 8 motion classes).
    """

    def __init__(self, kind: str, num_classes: int, width: int = 32):
        super().__init__()
        self.kind = kind
        layers, cin = [], 3
        for i in range(4):
            cout = width * 2**i
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i > 0:  # a second convolution in every stage but the first (the most expensive one)
                layers += [nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        if kind == "video":
            n = 12 * len(MOTION_SIZES)
            self.motion = nn.Sequential(nn.BatchNorm1d(n), nn.Linear(n, 4 * width), nn.ReLU(inplace=True))
            cin += 4 * width
        self.head = nn.Linear(cin, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the last layer reads: (B, width) (the judge's own feature space)."""
        frame = x[:, :, x.shape[2] // 2]  # (B, 3, H, W)
        feats = self.features(frame).flatten(2).mean(-1)
        if self.kind == "video":
            feats = torch.cat([feats, self.motion(camera_motion(x))], -1)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def random_blur(x: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Blur a random `prob` share of the batch (B, 3, T, H, W): down-sample by 2-4x and back (bilinear)."""
    out = x.clone()
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        if torch.rand((), generator=generator).item() < prob:
            f = 2 + 2 * torch.rand((), generator=generator).item()
            frames = x[i].transpose(0, 1)  # (T, 3, H, W)
            small = F.interpolate(frames, size=(max(1, round(h / f)), max(1, round(w / f))), mode="bilinear",
                                  antialias=True, align_corners=False)
            out[i] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).transpose(0, 1)
    return out


# --------------------------------------------------------------------------------------------------------------
# Training and held-out accuracy
# --------------------------------------------------------------------------------------------------------------

def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast(dev: str):
    """The unset precision of every trainer here: bf16 autocast on CUDA, nothing (fp32) on the CPU."""
    return precision_autocast(choose_precision(None, dev)[0], dev)


def train_classifier(data: RealData, cfg: ClassifierConfig, progress: bool = True) -> ConvClassifier:
    """A `ConvClassifier` trained on `data`'s training split for `cfg.steps` step-indexed batches."""
    dev, train = device(), data.train
    torch.manual_seed(cfg.seed)
    net = ConvClassifier(data.kind, len(data.class_names()), cfg.width).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    letter = {"image": "i", "video": "v"}[data.kind]
    schedule = StepSchedule({data.kind: len(train)}, {data.kind: cfg.batch_size}, pattern=letter,
                            resolutions=[data.resolution], seed=cfg.seed)
    net.train()
    loader = step_loader({data.kind: train}, schedule, 0, cfg.steps, num_workers=cfg.num_workers)
    bar = tqdm(loader, total=cfg.steps, desc=f"classifier ({data.kind})", disable=not progress, leave=False)
    for step, batch in enumerate(bar):
        set_lr(opt, lr_at(step, cfg.lr, cfg.lr / 20, cfg.warmup_steps, cfg.steps))
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        x = random_blur(batch["pixels"], cfg.blur_prob, g).to(dev)
        with autocast(dev):
            loss = F.cross_entropy(net(x).float(), batch["label"].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return net.eval()


@torch.no_grad()
def judge(net: ConvClassifier, pixels: torch.Tensor, known: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass: class probabilities (B, classes) over the known classes only (the others get 0), and the pooled
    features (B, width) the last layer read (the judge's own feature space)."""
    dev = next(net.parameters()).device
    with autocast(dev.type):
        features = net.embed(pixels.to(dev))
        logits = net.head(features).float().cpu()
    mask = torch.full((logits.shape[1],), float("-inf"))
    mask[known] = 0.0
    return (logits + mask).softmax(-1), features.float().cpu()


@torch.no_grad()
def predict(net: ConvClassifier, pixels: torch.Tensor, known: list[int]) -> torch.Tensor:
    """Class probabilities (B, classes) over the known classes only (the others get 0)."""
    return judge(net, pixels, known)[0]


def held_out_accuracy(net: ConvClassifier, data: RealData, limit: int, batch_size: int = 32) -> dict:
    """Accuracy on `data`'s held-out items, overall and per class, with what those items are."""
    dataset, keys, description = data.held_out(limit)
    known = data.known_classes()
    labels, predicted = [], []
    for i in range(0, len(keys), batch_size):
        batch = collate([dataset[k] for k in keys[i : i + batch_size]])
        predicted.append(predict(net, batch["pixels"], known).argmax(-1))
        labels.append(batch["label"])
    labels, predicted = torch.cat(labels), torch.cat(predicted)
    names = data.class_names()
    per_class = {names[c]: round((predicted[labels == c] == c).float().mean().item(), 4)
                 for c in known if (labels == c).any()}
    return {"accuracy": (predicted == labels).float().mean().item(), "n": len(keys), "per_class": per_class,
            "items": description}


# --------------------------------------------------------------------------------------------------------------
# Cache: train once per (data, resolution, frames, settings)
# --------------------------------------------------------------------------------------------------------------

def cache_folder(data: RealData, cfg: ClassifierConfig, cache_root: str | Path) -> tuple[Path, dict]:
    # the code that defines the network and the data: an edited network or data set is another classifier
    code = hashlib.sha256(b"".join(Path(inspect.getsourcefile(obj)).read_bytes()
                                   for obj in (ConvClassifier, type(data.train)))).hexdigest()
    key = {"data": data.identity(), "config": dataclasses.asdict(cfg), "code_sha256": code}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    frames = f"_{data.frames}f" if data.kind == "video" else ""
    return Path(cache_root) / f"{data.kind}_{data.name}_{data.resolution}px{frames}_{digest}", key


def load_or_train(data: RealData, cfg: ClassifierConfig, cache_root: str | Path,
                  progress: bool = True) -> tuple[ConvClassifier, dict]:
    """The cached classifier for (data, cfg), trained and stored first if there is none (or it is damaged).

    Returns the network (eval mode) and its record: key, classes, known classes, chance, held-out accuracy,
    training seconds, weights file and its sha256, and whether it was trained by this call."""
    folder, key = cache_folder(data, cfg, cache_root)
    weights, record_file = folder / "classifier.safetensors", folder / "classifier.json"
    names = data.class_names()
    net = ConvClassifier(data.kind, len(names), cfg.width)
    if record_file.is_file() and weights.is_file():
        record = json.loads(record_file.read_text())
        if record.get("key") == json.loads(json.dumps(key)) and record.get("weights_sha256") == file_sha256(weights):
            net.load_state_dict(load_file(str(weights)))
            return net.to(device()).eval(), {**record, "trained_now": False}
        print(f"{folder}: cached classifier does not match its record; training again")
    start = time.perf_counter()
    net = train_classifier(data, cfg, progress)
    train_seconds = time.perf_counter() - start
    held_out = held_out_accuracy(net, data, cfg.held_out)
    atomic_write(weights, lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in
                                                 net.state_dict().items()}, tmp))
    known = data.known_classes()
    record = {"key": json.loads(json.dumps(key)), "data": data.describe(), "kind": data.kind,
              "resolution": data.resolution, "frames": data.frames, "steps": cfg.steps,
              "classes": names, "known_classes": known, "chance": 1.0 / len(known),
              "held_out_accuracy": held_out["accuracy"], "held_out": held_out,
              "train_seconds": round(train_seconds, 1), "threads": torch.get_num_threads(),
              "device": device(), "weights": str(weights), "weights_sha256": file_sha256(weights)}
    atomic_write_json(record_file, record)  # written last: a record means the weights beside it are complete
    return net, {**record, "trained_now": True}
