"""Class consistency of generated samples: the share a classifier of the real data assigns to the class asked for.

    python -m eval.class_consistency --kind image --scale small \
        --samples runs/small/lm_imagenet/samples/cfg1 --guidance 1 \
        --samples runs/small/lm_imagenet/samples/cfg4 --guidance 4 --out results/small/lm_imagenet_classes.json
    python -m eval.class_consistency --kind image --scale small --record runs/small/dit_imagenet/samples \
        --tokenizer runs/small/tokenizer/kl/final --out results/small/eval/dit_imagenet/class_consistency.json
    python -m eval.class_consistency --kind video --videos /data/ucf101 --video-layout ucf101 --scale paper \
        --samples samples/latte_cfg1 --samples samples/latte_cfg7 --guidance 1 --guidance 7 --out ...

Each `--samples` folder holds `<class:04d>/<index:05d>.png` (images) or `.mp4` / `.gif` (videos), class = the
integer label asked for; `--guidance` (given once per `--samples`, in the same order) labels each folder's row
with its guidance scale (`guidance_scale`). One result file holds every folder's share, so the rise with guidance reads from one
table; a generator whose conditioning works gets a higher share at a higher guidance scale. With `--record` each
folder is read inside the record (wherever it was sampled), every file checked against the sha256 samples.json
records, and each row names the samples it scored (`samples_sha256`).

The classifier (eval/classifier.py) is trained once on the real training split of the generator's data at
the samples' resolution and clip length, and kept under `results/<scale>/classifiers/`. Its held-out accuracy
and the chance level are in the result: the share only means something when that accuracy is far above chance.
Beside the shares, the result holds the reference points of eval/judge_references.py, scored by the same
judge on as many items per class as the samples have (flat colour, class average, still clip, real items and,
with `--tokenizer FOLDER`, the generator's tokenizer's reconstructions of them), and each folder's Fréchet
distance and precision / recall in the judge's own features, with real against real as the floor.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence
from tqdm.auto import tqdm

from shared.data.collate import collate
from shared.data.errors import DataError
from shared.data.transforms import IMAGE_SUFFIXES, VIDEO_SUFFIXES, load_image_rgb, resize_and_crop, to_unit_range
from shared.guidance import guidance_key
from shared.sample_folders import checked_folder, read_samples_record

from .classifier import PRESETS, ConvClassifier, RealData, device, judge, load_or_train
from .judge_references import FeatureSpace, class_shares, reference_points
from .results import write_result

SAMPLE_SUFFIXES = {"image": IMAGE_SUFFIXES - {".gif"}, "video": VIDEO_SUFFIXES | {".gif"}}


# --------------------------------------------------------------------------------------------------------------
# Sample folders
# --------------------------------------------------------------------------------------------------------------

def list_samples(folder: str | Path, kind: str) -> list[tuple[Path, int]]:
    """(file, class) of every sample in `folder/<class>/`; a clear DataError for a folder not in that layout."""
    folder = Path(folder)
    layout = f"<samples>/<class:04d>/<index:05d>{'.png' if kind == 'image' else '.mp4 or .gif'}"
    if not folder.is_dir():
        raise DataError(folder, "samples folder does not exist")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not class_dirs:
        raise DataError(folder, f"no class folders in the samples folder (expected {layout})")
    out = []
    for d in class_dirs:
        if not d.name.isdigit():
            raise DataError(d, f"class folder name is not an integer class (expected {layout})")
        files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES[kind])
        if not files:
            raise DataError(d, f"class folder holds no {kind} samples (looked for "
                               f"{', '.join(sorted(SAMPLE_SUFFIXES[kind]))})")
        out += [(f, int(d.name)) for f in files]
    return out


def read_frames(path: Path) -> torch.Tensor:
    """A sample file as uint8 (3, T, H, W): an image (T = 1), a GIF, or a video decord reads."""
    if path.suffix.lower() in IMAGE_SUFFIXES - {".gif"}:
        return load_image_rgb(path).unsqueeze(1)
    try:
        if path.suffix.lower() == ".gif":
            with Image.open(path) as im:
                frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
        else:
            import decord

            vr = decord.VideoReader(str(path), num_threads=1)
            frames = vr.get_batch(list(range(len(vr)))).asnumpy()
    except Exception as exc:  # PIL and decord raise many unrelated types for a broken file
        raise DataError(path, f"cannot read video ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") \
            from None
    return torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous()


def load_sample(path: Path, resolution: int, frames: int) -> torch.Tensor:
    """(3, T, R, R) in [-1, 1]; a sample of another size is centre-cropped to R (aspect kept)."""
    x = read_frames(path)
    if x.shape[1] != frames:
        raise DataError(path, f"sample has {x.shape[1]} frames, the classifier takes {frames}")
    if tuple(x.shape[2:]) != (resolution, resolution):
        x = resize_and_crop(x, (resolution, resolution), None)
    return to_unit_range(x)


# --------------------------------------------------------------------------------------------------------------
# Score
# --------------------------------------------------------------------------------------------------------------

def check_classes(samples: list[tuple[Path, int]], folder: str | Path, known: list[int], data: str) -> None:
    """A DataError naming the first class folder whose class the classifier was not trained on."""
    unknown = sorted({c for _, c in samples} - set(known))
    if unknown:
        raise DataError(Path(folder) / f"{unknown[0]:04d}",
                        f"class {unknown[0]} is not a class of the classifier's training data ({data}: "
                        f"{len(known)} classes, {known[0]}..{known[-1]}"
                        f"{'' if len(known) == known[-1] - known[0] + 1 else ', not all present'}); "
                        f"classes asked for but unknown: {unknown[:10]}")


@torch.no_grad()
def score_folder(net: ConvClassifier, folder: str | Path, kind: str, resolution: int, frames: int,
                 known: list[int], names: list[str], data: str, batch_size: int = 32,
                 space: FeatureSpace | None = None) -> dict:
    """Share of the folder's samples the classifier assigns to their folder's class, overall and per class; with
    a feature space, also the samples' Fréchet distance and precision / recall in it."""
    samples = list_samples(folder, kind)
    check_classes(samples, folder, known, data)
    asked = torch.tensor([c for _, c in samples])
    predicted, probability, features = [], [], []
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        probs, feats = judge(net, torch.stack([load_sample(p, resolution, frames) for p, _ in chunk]), known)
        predicted.append(probs.argmax(-1))
        probability.append(probs[torch.arange(len(chunk)), asked[i : i + len(chunk)]])
        features.append(feats)
    predicted, probability = torch.cat(predicted), torch.cat(probability)
    distance = ({"feature_distance": space.distance(torch.cat(features).numpy().astype(np.float64))}
                if space is not None else {})
    hit = predicted == asked
    return {"samples": str(folder), "n": len(samples), "share": int(hit.sum()) / len(samples),
            "mean_probability": probability.mean().item(), "per_class": class_shares(hit, asked, names), **distance}


def rises_with_guidance(rows: list[dict]) -> bool | None:
    """Whether the share never falls as guidance grows (None without two labelled scales)."""
    labelled = sorted((r for r in rows if r["guidance_scale"] is not None), key=lambda r: r["guidance_scale"])
    if len(labelled) < 2:
        return None
    return all(a["share"] <= b["share"] for a, b in zip(labelled, labelled[1:]))


def sample_shape(folder: str | Path, kind: str) -> tuple[int, int]:
    """(resolution, frames) of a folder's first sample: the shorter side and the frame count."""
    first = list_samples(folder, kind)[0][0]
    x = read_frames(first)
    return min(x.shape[2:]), x.shape[1]


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------

def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", required=True, choices=["image", "video"])
    ap.add_argument("--samples", action="append", help="samples folder (repeatable)")
    ap.add_argument("--record", default=None, help="a generator's samples folder (shared.sample_folders' samples.json): "
                                                   "every folder in it, labelled with its guidance scale")
    ap.add_argument("--guidance", type=float, action="append",
                    help="guidance scale of each --samples folder, in the same order (repeatable)")
    ap.add_argument("--out", required=True, help="result JSON")
    ap.add_argument("--scale", default="small", choices=sorted(PRESETS),
                    help="classifier training preset, and the cache folder results/<scale>/classifiers")
    ap.add_argument("--images", default=None, help="image data the generator learnt from: a folder "
                                                   "(ImageNet layout); default: the embedded photos")
    ap.add_argument("--videos", default=None, help="video data the generator learnt from: a folder; default: "
                                                   "the embedded clips")
    ap.add_argument("--video-layout", default="ucf101", choices=["ucf101", "classes", "plain"])
    ap.add_argument("--resolution", type=int, default=None, help="default: the samples' own (shorter side)")
    ap.add_argument("--frames", type=int, default=None, help="clip length (videos); default: the samples' own")
    ap.add_argument("--steps", type=int, default=None, help="classifier training steps (default: the preset's)")
    ap.add_argument("--cache", default=None, help="classifier folder (default results/<scale>/classifiers)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tokenizer", default=None,
                    help="the generator's tokenizer (a save_pretrained folder): also score its reconstructions of "
                         "real items, the share a generator that copied its data would get through it")
    ap.add_argument("--references", type=int, default=None,
                    help="real items per class behind the reference points and the feature-space distance "
                         "(default: the first folder's samples per class; 0: none)")
    args = ap.parse_args(argv)
    if (args.record is None) == (args.samples is None):
        ap.error("give --record, or --samples folders")
    if args.record is not None:
        if args.guidance is not None:
            ap.error("--guidance is read from --record's samples.json")
        try:
            entries = list(read_samples_record(args.record)["folders"].values())
            args.samples = [str(checked_folder(args.record, entry)) for entry in entries]
        except (FileNotFoundError, ValueError) as exc:
            ap.error(f"--record: {exc}")
        args.guidance = [entry["guidance_scale"] for entry in entries]
    if args.guidance is not None and len(args.guidance) != len(args.samples):
        ap.error(f"--guidance given {len(args.guidance)} times for {len(args.samples)} --samples folders: give one "
                 "per folder, in the same order")
    other = args.videos if args.kind == "image" else args.images
    if other is not None:
        ap.error(f"--{'videos' if args.kind == 'image' else 'images'} is for --kind "
                 f"{'video' if args.kind == 'image' else 'image'}")
    if args.kind == "image" and args.frames not in (None, 1):
        ap.error("--frames is for --kind video")
    start = time.perf_counter()
    try:
        resolution, frames = sample_shape(args.samples[0], args.kind)
        resolution, frames = args.resolution or resolution, args.frames or frames
        source = (args.images if args.kind == "image" else args.videos) or "embedded"
        data = RealData(args.kind, source, resolution, frames, args.video_layout)
        cfg = PRESETS[args.scale][args.kind]
        if args.steps is not None:
            cfg = dataclasses.replace(cfg, steps=args.steps)
        net, record = load_or_train(data, cfg, args.cache or f"results/{args.scale}/classifiers")
        known, names = record["known_classes"], record["classes"]
        guidance = args.guidance or [None] * len(args.samples)
        per_class = args.references
        if per_class is None:  # as many real items per class as the first folder has samples of its first class
            first = list_samples(args.samples[0], args.kind)
            per_class = sum(c == first[0][1] for _, c in first)
        references, space = (reference_points(net, data, known, names, per_class, args.tokenizer)
                             if per_class else (None, None))
        hashes = [entry["sha256"] for entry in entries] if args.record is not None else [None] * len(args.samples)
        rows = [{"guidance_scale": g, "samples_sha256": sha, **score_folder(net, folder, args.kind, resolution, frames, known,
                                                                      names, data.describe(), args.batch_size, space)}
                for folder, g, sha in zip(args.samples, guidance, hashes)]
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None
    dev = device()
    metrics = {"class_consistency": rows, "rises_with_guidance": rises_with_guidance(rows),
               "classifier_accuracy": record["held_out_accuracy"], "chance": record["chance"],
               "classifier_held_out": record["held_out"]["items"], "classifier_held_out_n": record["held_out"]["n"],
               "references": references, "references_per_class": per_class,
               "feature_space": space and {"network": f"the judge ({record['weights']}), pooled features",
                                           "dim": space.dim, "against": "a second draw of real training items"}}
    write_result(args.out, metrics, kind=args.kind, scale=args.scale, data=data.describe(), resolution=resolution,
                 frames=frames, classes=len(known), classifier=record["weights"],
                 classifier_sha256=record["weights_sha256"], classifier_steps=record["steps"],
                 classifier_train_seconds=record["train_seconds"], classifier_trained_now=record["trained_now"],
                 eval_seconds=time.perf_counter() - start, threads=torch.get_num_threads(), device=dev,
                 precision="bf16" if dev == "cuda" else "fp32", precision_reason="CUDA" if dev == "cuda" else "CPU default")
    summary = {guidance_key(r["guidance_scale"]) if r["guidance_scale"] is not None else r["samples"]: round(r["share"], 4)
               for r in rows}
    print(json.dumps({"share": summary, "classifier_accuracy": round(record["held_out_accuracy"], 4),
                      "chance": round(record["chance"], 4),
                      "references": references and {k: round(v["share"], 4) for k, v in references.items()}},
                     indent=1))


if __name__ == "__main__":
    main()
