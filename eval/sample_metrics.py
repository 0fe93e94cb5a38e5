"""Generation metrics: a folder of samples written by a generator, against a reference split.

    python -m eval.sample_metrics --kind image --samples samples/ --reference /data/imagenet --split val \
        --resolution 256 --out results/paper/gen_lm.json                      # FID, IS, KID, precision/recall
    python -m eval.sample_metrics --kind video --samples samples/ --reference /data/ucf101 --split train \
        --frames 16 --resolution 128 --out results/paper/gen_latte.json       # FVD

    python -m eval.sample_metrics --kind image --record runs/small/dit_imagenet/samples --reference embedded \
        --resolution 64 --out results/small/eval/dit_imagenet       # every folder of a samples.json: samples_cfg<s>.json

Samples are image files (PNG, JPEG) or videos anywhere below `--samples`; `--record` names a generator's samples
folder (shared.sample_folders: samples.json and one folder per guidance scale), each folder scored into
`<out>/samples_cfg<s>.json`, read inside `--record` (wherever it was sampled) after every file is checked against the
sha256 samples.json records (a file missing, changed or added is an error); the result names the samples it scored
by their sha256 (`samples_sha256`) and counts them (`n_samples`). The reference set's features are
computed once and kept in the feature cache (eval/feature_cache.py): every later generator evaluated against
the same reference, at the same resolution and with the same network, costs only its own samples.

Every figure is computed under an evaluation protocol (`--protocol`, eval/protocols.py; docs/protocols.md says which
one each paper table uses) and the result keeps the record of the run under `metrics.protocol`. Under
stylegan-v-fvd2048-16f a reference folder of frame images per video (StyleGAN-V's layout) is read as StyleGAN-V reads
it (eval/frame_folder_clips.py: the first `--reference-limit` videos, each clip from a random start of `--seed`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from shared.data import DataError, ImageFolder, VideoFolder
from shared.data.collate import collate
from shared.sample_folders import checked_folder, read_samples_record

from . import protocols
from .datasets import image_split, split_label, video_split
from .feature_cache import FeatureCache
from .frame_folder_clips import FrameFolderClips
from .image_fidelity import InceptionFeatures, image_metrics
from .results import write_result
from .video_fidelity import I3DFeatures, fvd


@torch.no_grad()
def dataset_features(dataset: Dataset, extract: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                     desc: str, cache: FeatureCache | None = None, limit: int | None = None) -> torch.Tensor:
    """Features of every item (at most `limit`), batch by batch; through `cache` when one is given."""
    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, range(limit))
    out = []
    for batch in tqdm(DataLoader(dataset, batch_size=batch_size, collate_fn=collate), desc=desc, leave=False):
        x = batch["pixels"]
        out.append(cache.features(x, extract) if cache is not None else extract(x))
    if cache is not None:
        cache.save()
    return torch.cat(out)


def image_generation_metrics(samples: Dataset, reference: Dataset, net: InceptionFeatures, batch_size: int = 32,
                             cache_folder: str | None = None, limit: int | None = None,
                             reference_limit: int | None = None) -> dict:
    """FID, IS (of the samples), KID and precision/recall of samples against reference images."""
    frames = lambda x: x[:, :, 0]  # noqa: E731  (B, 3, 1, H, W) -> (B, 3, H, W)
    pooled = dataset_features(samples, lambda x: torch.cat(net(frames(x)), dim=1), batch_size, "samples",
                              limit=limit)
    fake, fake_logits = pooled[:, :2048], pooled[:, 2048:]
    real = dataset_features(reference, lambda x: net(frames(x))[0], batch_size, "reference",
                            FeatureCache(cache_folder, "image", net.net), reference_limit)
    out = image_metrics(fake, fake_logits, real, net.protocol)
    return {**out, "network": net.weights.source, "weights_sha256": net.weights.sha256}


def video_generation_metrics(samples: Dataset, reference: Dataset, net: I3DFeatures, batch_size: int = 8,
                             cache_folder: str | None = None, limit: int | None = None,
                             reference_limit: int | None = None) -> dict:
    """FVD of sample clips against reference clips."""
    fake = dataset_features(samples, net, batch_size, "samples", limit=limit)
    real = dataset_features(reference, net, batch_size, "reference", FeatureCache(cache_folder, "video", net.net),
                            reference_limit)
    return {"fvd": fvd(fake, real, net.protocol.covariance), "network": net.source, "weights_sha256": net.sha256}


def main(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", required=True, choices=["image", "video"])
    given = ap.add_mutually_exclusive_group(required=True)
    given.add_argument("--samples", help="folder of generated images or videos")
    given.add_argument("--record", help="a generator's samples folder (samples.json): each of its folders")
    ap.add_argument("--reference", required=True, help="reference folder, or 'embedded'")
    ap.add_argument("--split", default=None, help="reference split (ImageNet: val; UCF-101: train or test)")
    ap.add_argument("--video-layout", default="ucf101", choices=["ucf101", "classes", "plain"])
    ap.add_argument("--out", required=True, help="result JSON (with --record: the folder of the result files)")
    ap.add_argument("--scale", default=None, help="label: tiny | small | paper")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--fps", type=float, default=None)
    ap.add_argument("--limit", type=int, default=None, help="at most this many samples (and reference items)")
    ap.add_argument("--reference-limit", type=int, default=None, help="at most this many reference items (default: "
                    "--limit), the first in the split's order")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--inception-weights", default=None)
    ap.add_argument("--i3d-weights", default=None)
    ap.add_argument("--protocol", default=None, help="the evaluation protocol (eval/protocols.py); default "
                    f"{protocols.DEFAULT['image']} for images, {protocols.DEFAULT['video']} for videos")
    ap.add_argument("--seed", type=int, default=0, help="seed of a protocol's random selection of reference clips")
    ap.add_argument("--feature-cache", default="results/feature_cache",
                    help="folder keeping the reference features between evaluations ('' for none)")
    ap.add_argument("--allow-random-features", action="store_true",
                    help="offline: fixed-seed random feature networks; every such number is labelled")
    args = ap.parse_args(argv)
    args.protocol = args.protocol or protocols.DEFAULT[args.kind]
    try:
        protocols.protocol(args.protocol, args.kind)
    except ValueError as exc:
        ap.error(f"--protocol: {exc}")
    if args.record is None:
        return evaluate(args, args.samples, args.out)
    try:
        entries = read_samples_record(args.record)["folders"]
        folders = {key: checked_folder(args.record, entry) for key, entry in entries.items()}
    except (FileNotFoundError, ValueError) as exc:
        ap.error(f"--record: {exc}")
    for key, folder in folders.items():
        evaluate(args, str(folder), str(result_file(args.out, key)), entries[key]["sha256"])


def result_file(out: str | Path, key: str) -> Path:
    """The result file of the samples folder of one guidance scale (its key, shared.guidance) in the folder `out`."""
    return Path(out) / f"samples_{key}.json"


def evaluate(args: argparse.Namespace, samples_folder: str, out: str, samples_sha256: str | None = None) -> dict:
    """One samples folder against the reference: the result file `out`. samples_sha256: the folder's, as its
    samples.json records it (--record)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    protocol = protocols.protocol(args.protocol, args.kind)
    reference_limit = args.limit if args.reference_limit is None else args.reference_limit
    clip = protocols.CENTRE_OURS
    if args.kind == "image":
        samples = ImageFolder(samples_folder, None, args.resolution)
        reference = image_split(args.reference, args.split, args.resolution)
    else:
        samples = VideoFolder(samples_folder, "plain", num_frames=args.frames, fps=args.fps, resolution=args.resolution)
        if protocol.clip == protocols.STYLEGAN_V_CLIPS and args.reference != "embedded":
            reference = FrameFolderClips(args.reference, reference_limit or protocol.real_count, args.frames,
                                         protocol.stride, args.seed, args.resolution)
            clip = protocol.clip
        else:
            reference = video_split(args.reference, args.video_layout, args.split, args.frames, args.fps,
                                    args.resolution)
    limits = {"samples": args.limit, "reference": reference_limit}
    for name, folder, data in (("samples", samples_folder, samples), ("reference", args.reference, reference)):
        if min(len(data), limits[name] or len(data)) < 2:  # checked before any feature is computed
            raise DataError(folder, f"the {name} set has {min(len(data), limits[name] or len(data))} item(s); "
                                    f"the Frechet distance needs at least 2")
    n_samples, n_reference = (min(len(d), limits[k] or len(d)) for k, d in (("samples", samples),
                                                                           ("reference", reference)))
    # counts as a protocol record has them: None (every item of the folder and split) unless a limit cut them
    observed = dict(items=None if args.limit is None else n_samples, real_split=split_label(args.reference, args.split),
                    real_count=None if reference_limit is None else n_reference, resolution=args.resolution)
    if args.kind == "image":
        net = InceptionFeatures(args.inception_weights, args.allow_random_features, device, protocol)
        metrics = image_generation_metrics(samples, reference, net, args.batch_size, args.feature_cache or None,
                                           args.limit, reference_limit)
        random_network, checked = net.weights.random, net.checked
    else:
        net = I3DFeatures(args.i3d_weights, args.allow_random_features, device, protocol)
        metrics = video_generation_metrics(samples, reference, net, args.batch_size, args.feature_cache or None,
                                           args.limit, reference_limit)
        random_network, checked = net.random, net.checked
        observed.update(frames=args.frames, clip=clip, seed=args.seed if clip == protocols.STYLEGAN_V_CLIPS else None)
    metrics["protocol"] = protocols.run_record(protocol, random_network, checked, **observed)
    write_result(out, metrics, eval_seconds=time.perf_counter() - start, threads=torch.get_num_threads(),
                 kind=args.kind, samples=samples_folder, samples_sha256=samples_sha256, n_samples=n_samples,
                 reference=args.reference,
                 split=args.split, n_reference=n_reference, resolution=args.resolution,
                 frames=args.frames if args.kind == "video" else 1, scale=args.scale)
    print(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    main()
