"""Frame prediction scored against the truth, offline: PSNR and SSIM of every predicted frame of held-out clips
against the real frame at that index, beside two reference points measured on the same clips:

- repeating the last given frame (a predictor that knows nothing of motion: the floor to beat);
- the tokenizer's reconstruction of the true clip (what a perfect LM over these codes could reach: the ceiling).

    python -m eval.frame_prediction --pipeline runs/small/lm_k600/final --videos embedded \
        --out results/small/eval/lm_k600/frame_prediction.json

An FVD needs an I3D network with weights, which offline is a random one; these figures need no network.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from lm_generation.config import lm_config
from lm_generation.pipeline import ARPipeline
from shared.atomic import atomic_write_json
from shared.data.collate import collate
from shared.metrics.reconstruction import psnr, ssim
from shared.provenance import file_sha256, stamp
from tokenizer.evaluate import reconstruct

from .datasets import held_out_split, video_split

PREDICTORS = ("model", "repeat_last_given", "tokenizer_reconstruction")


def per_frame(metric, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-frame metric of clips (B, 3, T, H, W) as (B, T)."""
    return metric(x_hat, x).view(x.shape[0], x.shape[2])


@torch.no_grad()
def score(pipe: ARPipeline, loader, sampling: dict, seed: int) -> dict:
    """Per predicted frame index: mean PSNR / SSIM of the model, the last given frame repeated, and the tokenizer's
    reconstruction, over every clip of `loader`; and their means over the predicted frames."""
    given = pipe.given_frames
    device = next(pipe.lm.parameters()).device
    sums = {name: {"psnr": 0.0, "ssim": 0.0} for name in PREDICTORS}
    clips = 0
    for b, batch in enumerate(tqdm(loader, desc="frame prediction", unit="batch")):
        x = batch["pixels"].to(device)
        outputs = {"model": pipe.predict(x, **sampling, seed=seed + b),
                   "repeat_last_given": x[:, :, given - 1 : given].expand_as(x),
                   "tokenizer_reconstruction": reconstruct(pipe.tokenizer, x)[0].clamp(-1, 1)}
        for name, y in outputs.items():
            for key, metric in (("psnr", psnr), ("ssim", ssim)):
                sums[name][key] = sums[name][key] + per_frame(metric, y[:, :, given:], x[:, :, given:]).sum(0).cpu()
        clips += x.shape[0]
    out = {"given_frames": given, "predicted_frames": list(range(given, given + len(sums["model"]["psnr"]))),
           "clips": clips}
    for name, s in sums.items():
        out[name] = {key: {"per_frame": (v / clips).tolist(), "mean": float((v / clips).mean())} for key, v in s.items()}
    out["beats_repeating_the_last_frame"] = out["model"]["psnr"]["mean"] > out["repeat_last_given"]["psnr"]["mean"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", required=True, help="a frame-prediction LM's pipeline folder (its final/)")
    ap.add_argument("--videos", default="embedded", help="held-out clips: 'embedded' or a video folder")
    ap.add_argument("--video-layout", default="classes", choices=["ucf101", "classes", "plain"])
    ap.add_argument("--split", default="val")
    ap.add_argument("--scale", default="small", help="config whose sample section gives temperature, top-k, top-p")
    ap.add_argument("--limit", type=int, default=None, help="at most this many clips")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="result JSON")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit must be >= 1, got {args.limit}")
    try:
        split = held_out_split(args.videos, args.split)
    except ValueError as exc:
        raise SystemExit(f"--split: {exc}") from None
    pipe = ARPipeline.from_pretrained(args.pipeline, "cuda" if torch.cuda.is_available() else "cpu")
    if pipe.layout.cond_frames == 0:
        raise SystemExit(f"{args.pipeline}: this LM does not predict frames (trained with no given latent frames)")
    frames, h, w = pipe.layout.size
    data = video_split(args.videos, args.video_layout, split, frames, None, (h, w))
    if args.limit is not None and args.limit < len(data):
        data = Subset(data, range(args.limit))
    s = lm_config(args.scale, task="frames").sample
    sampling = {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p}
    start = time.perf_counter()
    result = score(pipe, DataLoader(data, batch_size=args.batch_size, collate_fn=collate), sampling, args.seed)
    record = {"metrics": result, "pipeline": str(Path(args.pipeline).resolve()),
              "pipeline_sha256": file_sha256(Path(args.pipeline) / "model.safetensors"), "videos": args.videos,
              "split": split, "frames": frames, "resolution": [h, w], "sampling": {**sampling, "seed": args.seed},
              "threads": torch.get_num_threads(), "eval_seconds": time.perf_counter() - start, **stamp()}
    atomic_write_json(args.out, record)
    m = result
    print(f"predicted frames {m['predicted_frames'][0]}-{m['predicted_frames'][-1]} of {m['clips']} clips, mean PSNR: "
          f"model {m['model']['psnr']['mean']:.2f} dB, last given frame repeated {m['repeat_last_given']['psnr']['mean']:.2f}, "
          f"tokenizer reconstruction {m['tokenizer_reconstruction']['psnr']['mean']:.2f}")
    return record


if __name__ == "__main__":
    main()
