"""Encode a dataset once with a trained OmniTokenizer-VQVAE: code indices (uint16) + labels, in shards.

    python -m lm_generation.extract_codes --tokenizer runs/small/tokenizer/joint/final --images embedded \
        --scale small --out runs/small/codes/images                        # embedded photos (class = photo)
    python -m lm_generation.extract_codes --tokenizer T --videos embedded --scale small --out runs/small/codes/clips
    python -m lm_generation.extract_codes --tokenizer T --images /data/imagenet --scale paper --out codes/in256
    python -m lm_generation.extract_codes --tokenizer T --videos /data/ucf101 --set data.video_layout=ucf101 \
        --scale paper --out codes/ucf

Images: the ImageNet layout (or a plain folder), centre crop at `data.resolution`; the embedded photos:
`data.embedded_images` random crops (training split). Videos: UCF-101 / Kinetics class folders / plain, the
centre clip of `data.num_frames` frames (17 -> 5 latent frames); the embedded clips: `data.embedded_clips`
random clips. With `data.flip` (default) each item is stored twice: as is and flipped horizontally. With
`data.ten_crop` (images, LlamaGen's `--ten-crop`) each image is loaded at `resolution * crop_range` and its four
corner crops and centre crop are stored, each also flipped: 10 rows per image.

The folder (shared/extraction.py) holds `codes` (rows, T', h, w) uint16, `labels` (rows,) int64 and a
manifest with the tokenizer and its sha256, the settings and the class names. A killed run resumes; another
tokenizer or setting is refused (new --out, or --restart).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from shared.data import open_dataset
from shared.extraction import EMBEDDED_SEED, SeededItems, extract, five_crops, mirrored_labels, with_flips
from shared.provenance import file_sha256
from shared.training.precision import add_precision_argument, autocast, choose_precision
from tokenizer import OmniTokenizer

from .config import LMDataConfig, lm_config

def build_dataset(kind: str, source: str, split: str, data: LMDataConfig):
    """The dataset to encode and its class names (images for ten-crop at resolution * crop_range)."""
    size = (data.resolution, data.resolution)
    if kind == "image" and data.ten_crop:
        size = (round(data.resolution * data.crop_range),) * 2
    ds = open_dataset(kind, source, split, size, data.num_frames, data.frame_stride, video_layout=data.video_layout)
    if source == "embedded" and split == "train":
        return SeededItems(ds, length=data.embedded_images if kind == "image" else data.embedded_clips), list(ds.classes)
    return ds, list(ds.classes)


def code_encoder(tok: OmniTokenizer, flip: bool, device, mirror: torch.Tensor | None = None, crop: int | None = None,
                 precision: str = "fp32"):
    """batch -> {"codes": (rows, T', h, w) uint16, "labels": (rows,)}; rows: the batch (or, with `crop`, its five
    crops of that size, crop-major), then their flips (shared.extraction). mirror: label -> label of the flipped
    item (shared.extraction.mirrored_labels). precision: "fp32" or "bf16" (autocast) for the encoder."""
    dtype = torch.uint16 if tok.config.codebook_size <= 2**16 else torch.int32

    def encode(batch: dict) -> dict:
        x, labels = batch["pixels"], batch["label"].long()
        if crop is not None:
            x, labels = five_crops(x, labels, crop)
        x, labels = with_flips(x, labels, flip, mirror)
        with autocast(precision, device):
            codes = tok.encode(x.to(device)).indices
        return {"codes": codes.to(torch.int32).to(dtype).cpu(), "labels": labels.long().cpu()}

    return encode


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="a VQ tokenizer's save_pretrained folder")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="'embedded' or an image folder (ImageNet layout or plain)")
    src.add_argument("--videos", help="'embedded' or a video folder (layout: data.video_layout)")
    ap.add_argument("--out", required=True, help="extraction folder (shards + manifest.json)")
    ap.add_argument("--split", default=None, help="default: data.image_split / data.video_split of the config")
    ap.add_argument("--scale", default="small", help="tiny | small | paper | path to a YAML (its data: section)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="config override")
    ap.add_argument("--restart", action="store_true", help="discard what --out holds and extract again")
    add_precision_argument(ap, "the encoder's", "Recorded in the folder's settings: a folder made in another "
                           "precision is refused, never mixed")
    args = ap.parse_args(argv)
    data = lm_config(args.scale, args.set).data
    kind = "image" if args.images else "video"
    source = args.images or args.videos
    split = args.split or (data.image_split if kind == "image" else data.video_split)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision, why = choose_precision(args.precision, device)
    tok = OmniTokenizer.from_pretrained(args.tokenizer).to(device).eval()
    if tok.config.quantizer != "vq":
        raise SystemExit(f"{args.tokenizer}: a {tok.config.quantizer.upper()} tokenizer; code extraction needs a VQ one "
                         f"(quantizer vq, the OmniTokenizer-VQVAE)")
    frames = 1 if kind == "image" else data.num_frames
    p = tok.config.patch_size
    grid = [tok.latent_frames(frames), -(-data.resolution // p), -(-data.resolution // p)]
    if data.ten_crop and kind == "video":
        raise SystemExit("data.ten_crop is an image augmentation (LlamaGen's); clips are stored as is and flipped")
    dataset, classes = build_dataset(kind, source, split, data)
    embedded_train = source == "embedded" and split == "train"
    settings = {
        "tokenizer": str(Path(args.tokenizer).resolve()), "tokenizer_sha256": file_sha256(args.tokenizer),
        "kind": kind, "source": source if source == "embedded" else str(Path(source).resolve()), "split": split,
        "resolution": data.resolution, "frames": frames, "frame_stride": data.frame_stride if kind == "video" else 1,
        "video_layout": data.video_layout if kind == "video" and source != "embedded" else None,
        "grid": grid, "codebook_size": tok.config.codebook_size, "precision": precision,
        "augmentation": ("seeded random crop" if embedded_train else "centre crop")
                        + (f" at {round(data.resolution * data.crop_range)} px, then its 4 corner and centre crops at "
                           f"{data.resolution} (ten-crop)" if data.ten_crop else "")
                        + (" + horizontal flip" if data.flip else ""),
        "embedded_seed": EMBEDDED_SEED if embedded_train else None,
        "class_names": classes,
    }
    encoder = code_encoder(tok, data.flip, device, mirrored_labels(dataset), data.resolution if data.ten_crop else None,
                           precision)
    manifest = extract(dataset, encoder, args.out, settings, shard_size=data.shard_size, batch_size=data.batch_size,
                       restart=args.restart, desc=f"codes {kind}")
    print(json.dumps({"out": args.out, "rows": manifest["rows"], "grid": grid, "precision": f"{precision} ({why})",
                      "unreadable": len(manifest["unreadable"])}))
    return manifest


if __name__ == "__main__":
    main()
