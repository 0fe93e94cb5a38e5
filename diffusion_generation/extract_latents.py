"""Encode a dataset once with the KL tokenizer (OmniTokenizer-VAE): posteriors on disk, as fast-DiT does.

    python -m diffusion_generation.extract_latents --scale small --experiment dit \
        --tokenizer runs/small/tokenizer/kl/final --out runs/small/dit_imagenet/latents
    python -m diffusion_generation.extract_latents --scale paper --experiment latte \
        --tokenizer runs/paper/tokenizer/kl/final --out runs/paper/latte_ucf/latents --set data.source=/data/ucf101

Each item gives two rows, the original and its horizontal flip (`data.flip`), each with the posterior mean and
log-variance (float16; images (8, h, w), clips (8, T', h, w)) and the label: a fresh sample is drawn at
training time. Shards, manifest, resume and refusal are shared.extraction's: a folder written with another
tokenizer (by sha256), resolution, frame count or source is refused, never mixed.

After the shards, the latent scale is measured (1 / std of the training latents, latents.py) and written into
the manifest (`latent_scale`, with `latent_mean` and `latent_std`); the trainer gives it to the pipeline's VAE as
its `config.scaling_factor`, as diffusers keeps it.

Items: a folder gives each image's (each video's) centre crop (clip). The embedded photos and clips are a few
source files, so their items are random crops (clips) drawn from a fixed seed per item: `data.items` of them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from shared.data import open_dataset
from shared.data.transforms import as_size
from shared.extraction import EMBEDDED_SEED, SeededItems, extract, mirrored_labels, with_flips
from shared.provenance import file_sha256
from shared.training.precision import add_precision_argument, autocast, choose_precision
from tokenizer import OmniTokenizer

from .config import DiffusionDataConfig, experiment_config
from .latents import posterior_moments, scale_from_std, shard_posteriors


def source_dataset(data: DiffusionDataConfig) -> tuple[torch.utils.data.Dataset, list[str]]:
    """The items to encode and the class names."""
    base = open_dataset("image" if data.num_frames == 1 else "video", data.source, data.split, as_size(data.resolution),
                        data.num_frames, data.frame_stride, video_layout=data.video_layout)
    return (SeededItems(base) if data.source == "embedded" else base), list(base.classes)


def make_encoder(tokenizer: OmniTokenizer, flip: bool, images: bool, device, mirror: torch.Tensor | None = None,
                 precision: str = "fp32"):
    """encode(batch) -> {"mean", "logvar", "labels"}: rows are the batch, then its flips (shared.extraction.with_flips).
    mirror: label -> label of the flipped item (shared.extraction.mirrored_labels). precision: "fp32" or "bf16"
    (autocast) for the encoder."""

    def encode(batch: dict) -> dict:
        x, labels = with_flips(batch["pixels"], batch["label"].long(), flip, mirror)
        with autocast(precision, device):
            posterior = tokenizer.encode(x.to(device)).latent_dist
        mean, logvar = posterior.mean, posterior.logvar  # (B', C, T', h, w)
        if images:
            mean, logvar = mean[:, :, 0], logvar[:, :, 0]
        return {"mean": mean.half().cpu(), "logvar": logvar.half().cpu(), "labels": labels.cpu()}

    return encode


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", help="tiny | small | paper, or a YAML path")
    ap.add_argument("--experiment", required=True, choices=["dit", "latte"])
    ap.add_argument("--tokenizer", required=True, help="a KL tokenizer folder (save_pretrained)")
    ap.add_argument("--out", required=True, help="extraction folder (shards + manifest.json)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value")
    ap.add_argument("--restart", action="store_true", help="discard this folder's shards and extract again")
    add_precision_argument(ap, "the encoder's", "Recorded in the folder's settings: a folder made in another "
                           "precision is refused, never mixed")
    args = ap.parse_args(argv)
    cfg = experiment_config(args.scale, args.experiment, args.overrides)
    data = cfg.data
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision, why = choose_precision(args.precision, device)
    tokenizer = OmniTokenizer.from_pretrained(args.tokenizer).eval().to(device)
    if tokenizer.config.quantizer != "kl":
        raise SystemExit(f"{args.tokenizer}: a {tokenizer.config.quantizer.upper()} tokenizer; latent extraction needs "
                         f"a KL one (quantizer kl, the OmniTokenizer-VAE: the tokenizer's `kl` stage)")
    dataset, classes = source_dataset(data)
    items = min(len(dataset), data.items) if data.items else len(dataset)
    kind = "image" if data.num_frames == 1 else "video"
    grid = [tokenizer.latent_frames(data.num_frames), *(-(-s // tokenizer.config.patch_size)
                                                        for s in as_size(data.resolution))]
    settings = {"tokenizer": str(Path(args.tokenizer).resolve()), "tokenizer_sha256": file_sha256(args.tokenizer),
                "kind": kind, "source": data.source, "split": data.split,
                "video_layout": data.video_layout if kind == "video" else None, "resolution": data.resolution,
                "frames": data.num_frames, "frame_stride": data.frame_stride, "grid": grid,
                "latent_channels": tokenizer.config.latent_dim, "precision": precision,
                "augmentation": "original + horizontal flip" if data.flip else "original",
                "embedded_seed": EMBEDDED_SEED if data.source == "embedded" else None,
                "arrays": "mean, logvar (float16 posterior), labels", "class_names": classes}
    encode = make_encoder(tokenizer, data.flip, data.num_frames == 1, device, mirrored_labels(dataset), precision)

    def measured(folder) -> dict:
        mean, std = posterior_moments(shard_posteriors(folder))
        return {"latent_scale": scale_from_std(std), "latent_mean": mean, "latent_std": std, "num_classes": len(classes)}

    manifest = extract(dataset, encode, args.out, settings, batch_size=data.batch_size, restart=args.restart,
                       desc=f"latents ({args.experiment})", num_items=items, finish=measured)
    print(json.dumps({**{k: manifest[k] for k in ("rows", "latent_scale", "latent_mean", "latent_std")},
                      "precision": f"{precision} ({why})"}))
    return manifest


if __name__ == "__main__":
    main()
