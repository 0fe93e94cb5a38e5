"""Evaluate a trained tokenizer on a validation split: PSNR, SSIM, LPIPS, rFID (images), rFVD (videos).

    python -m eval.tokenizer_eval --model runs/small/tokenizer/joint/final --out results/small/eval_joint.json
        [--images DIR|embedded] [--videos DIR|embedded] [--resolution 64] [--frames 17]
        [--inception-weights F] [--i3d-weights F] [--lpips-weights F] [--allow-random-features]
        [--image-protocol project-image] [--video-protocol project-video]

rFID compares Inception features of reconstructions with those of the inputs; rFVD does the same with I3D, each
under an evaluation protocol of eval/protocols.py (the OmniTokenizer release's: omnitokenizer-rfid /
omnitokenizer-rfvd), whose record of the run the result file keeps beside the figure (docs/protocols.md).
Without the networks' weights nothing is computed unless --allow-random-features, and then every such
number is labelled RANDOM-INIT in the result file.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

from shared.provenance import file_sha256
from tokenizer import OmniTokenizer
from tokenizer.evaluate import evaluate
from shared.metrics.lpips import PerceptualLoss

from . import protocols
from .datasets import image_split, split_label, video_split
from .feature_cache import FeatureCache
from .frechet import frechet_from_features
from .image_fidelity import InceptionFeatures
from .results import write_result
from .video_fidelity import I3DFeatures


def _datasets(args) -> dict:
    out = {}
    if args.images:
        out["image"] = image_split(args.images, args.image_split, args.resolution)
    if args.videos:
        out["video"] = video_split(args.videos, args.video_layout, args.video_split, args.frames, args.fps,
                                   args.resolution)
    return out


@torch.no_grad()
def evaluate_tokenizer(model: OmniTokenizer, datasets: dict, args, done: dict | None = None,
                       on_part: Callable[[dict], None] | None = None) -> dict:
    """Metrics per split kind. done: kinds already evaluated (kept, not redone); on_part(results) is called after
    each finished kind, so that a failure in a later one keeps the earlier ones."""
    device = next(model.parameters()).device
    perceptual = PerceptualLoss(args.lpips_weights, args.allow_random_features).to(device)
    results = dict(done or {})
    for kind, dataset in datasets.items():
        if kind in results:
            continue
        protocol = protocols.protocol(args.image_protocol if kind == "image" else args.video_protocol, kind)
        frame_net = (InceptionFeatures(args.inception_weights, args.allow_random_features, device, protocol)
                     if kind == "image" else None)
        video_net = (I3DFeatures(args.i3d_weights, args.allow_random_features, device, protocol)
                     if kind == "video" else None)
        features = frame_net or video_net
        cache = FeatureCache(args.feature_cache or None, kind, features.net)
        lpips_values, real, fake = [], [], []
        # a Fréchet distance over n <= d items has a rank-deficient covariance and is not reported (eval.seeds): its
        # features are not computed either (on the embedded split at `small` they were most of each evaluation's time)
        n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
        frechet = features.dim is None or n > features.dim

        def collect(x: torch.Tensor, x_hat: torch.Tensor) -> None:
            frames = lambda v: v.permute(0, 2, 1, 3, 4).flatten(0, 1)  # noqa: E731
            lpips_values.append(perceptual.lpips(frames(x_hat), frames(x), normalize=False).flatten().cpu())
            if not frechet:
                return
            if frame_net is not None:
                real.append(cache.features(x, lambda v: frame_net(frames(v))[0]))
                fake.append(frame_net(frames(x_hat))[0])
            else:
                real.append(cache.features(x, video_net))
                fake.append(video_net(x_hat))

        entry = evaluate(model, dataset, args.batch_size, args.limit, args.max_tokens, f"eval {kind}", on_batch=collect)
        cache.save()
        entry["real_features_cached"] = cache.hits
        entry["lpips"] = {"value": torch.cat(lpips_values).mean().item(), "network": perceptual.source}
        if not frechet:
            distance = {"value": None, "n": [n, n], "dim": features.dim, "full_rank_covariance": False,
                        "not_computed": f"{n} items <= {features.dim} feature dimensions"}
        else:  # rFID and rFVD are the same Fréchet distance, over Inception or I3D features
            distance = frechet_from_features(torch.cat(fake).double().numpy(), torch.cat(real).double().numpy(),
                                             protocol.covariance)
        counted = None if args.limit is None else n  # as a protocol record has it: None, every item of the split
        source, split = (args.images, args.image_split) if kind == "image" else (args.videos, args.video_split)
        observed = dict(items=counted, real_split=split_label(source, split), real_count=counted,
                        resolution=args.resolution)
        if frame_net is not None:
            record = protocols.run_record(protocol, frame_net.weights.random, frame_net.checked, **observed)
            entry["rfid"] = {**distance, "network": frame_net.weights.source,
                             "weights_sha256": frame_net.weights.sha256, "protocol": record}
        else:
            record = protocols.run_record(protocol, video_net.random, video_net.checked, frames=args.frames,
                                          clip=protocols.CENTRE_OURS, **observed)
            entry["rfvd"] = {**distance, "network": video_net.source, "weights_sha256": video_net.sha256,
                             "protocol": record}
        results[kind] = entry
        if on_part is not None:
            on_part(results)
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a save_pretrained folder")
    ap.add_argument("--out", required=True, help="result JSON")
    ap.add_argument("--scale", default=None, help="label: tiny | small | paper")
    ap.add_argument("--images", default="embedded")
    ap.add_argument("--videos", default="embedded")
    ap.add_argument("--image-split", default="val")
    ap.add_argument("--video-split", default="test")
    ap.add_argument("--video-layout", default="ucf101")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--fps", type=float, default=None)
    ap.add_argument("--limit", type=int, default=None, help="evaluate at most this many items per split")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=65536)
    ap.add_argument("--inception-weights", default=None)
    ap.add_argument("--i3d-weights", default=None)
    ap.add_argument("--image-protocol", default=protocols.DEFAULT["image"], help="rFID's evaluation protocol "
                    f"(eval/protocols.py): one of {', '.join(protocols.names('image'))}")
    ap.add_argument("--video-protocol", default=protocols.DEFAULT["video"], help="rFVD's evaluation protocol: one of "
                    f"{', '.join(protocols.names('video'))}")
    ap.add_argument("--lpips-weights", default=None, help="torchvision vgg16 state dict")
    ap.add_argument("--feature-cache", default="results/feature_cache",
                    help="folder keeping the inputs' Inception/I3D features between evaluations ('' for none)")
    ap.add_argument("--allow-random-features", action="store_true",
                    help="offline: fixed-seed random feature networks; every such number is labelled")
    args = ap.parse_args(argv)
    # everything that can be wrong with the arguments is found before any work
    for kind, name in (("image", args.image_protocol), ("video", args.video_protocol)):
        try:
            protocols.protocol(name, kind)
        except ValueError as exc:
            ap.error(f"--{kind}-protocol: {exc}")
    model = OmniTokenizer.from_pretrained(args.model).to("cuda" if torch.cuda.is_available() else "cpu").eval()
    if args.videos:
        model.latent_frames(args.frames)
    datasets = _datasets(args)
    context = dict(checkpoint=args.model, checkpoint_sha256=file_sha256(Path(args.model) / SAFETENSORS_WEIGHTS_NAME),
                   scale=args.scale, resolution=args.resolution, frames=args.frames, limit=args.limit,
                   data={"images": args.images, "videos": args.videos},
                   protocols={"image": args.image_protocol, "video": args.video_protocol})
    # each finished split kind is kept in <out>.partial.json at once; a rerun with the same context resumes from it
    partial = Path(f"{args.out}.partial.json")
    done, seconds = {}, 0.0
    if partial.is_file():
        saved = json.loads(partial.read_text())
        if all(saved.get(k) == json.loads(json.dumps(v)) for k, v in context.items()):
            done, seconds = saved["metrics"], saved["eval_seconds"]
            print(f"resuming: {sorted(done)} already evaluated in {partial}")
    start = time.perf_counter()
    extra = lambda: dict(eval_seconds=seconds + time.perf_counter() - start, threads=torch.get_num_threads(), **context)  # noqa: E731
    results = evaluate_tokenizer(model, datasets, args, done, lambda r: write_result(partial, r, **extra()))
    write_result(args.out, results, **extra())
    partial.unlink(missing_ok=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
