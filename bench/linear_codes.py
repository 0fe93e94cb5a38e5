"""What codes with the `small` tokenizer's budget reach with no network at all, on the embedded held-out split.

    python -m bench.linear_codes --out bench/out/linear_codes.json

- PCA: the best linear code of k numbers per 8x8 patch (per 4 x 8 x 8 tube for the frames after a clip's first),
  fitted on patches of random training crops. k = 8 is the VAE's budget; k = 12 a patch is bicubic 4x's, and 16 a
  tube twice the VAE's.
- k-means: a codebook of 1,024 whole patches (10 bits a patch, the VQVAE's budget), fitted the same way; with the
  share of its codes that the held-out photos use, and that as many fresh training crops use.

The tokenizer's figures (README, TABLES.md) are PSNR per frame averaged over the split, as here. Deterministic
(fixed seeds); no timing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from einops import rearrange

from shared.data.embedded import EmbeddedClips, EmbeddedPhotos
from shared.data.keys import SampleKey
from shared.metrics.reconstruction import psnr

P, T = 8, 4  # the small tokenizer's patch and tube


def to_patches(x: torch.Tensor, t: int = 1) -> torch.Tensor:
    """(B, 3, t*n, H, W) -> (B*n*(H/P)*(W/P), 3*t*P*P): non-overlapping tubes of t frames, laid out as the
    tokenizer's patch embeddings take them (tokenizer/model.py, _embed)."""
    return rearrange(x, "b c (n t) (h p) (w q) -> (b n h w) (c t p q)", t=t, p=P, q=P)


def from_patches(patches: torch.Tensor, shape: tuple, t: int = 1) -> torch.Tensor:
    b, _, frames, h, w = shape
    return rearrange(patches, "(b n h w) (c t p q) -> b c (n t) (h p) (w q)", b=b, n=frames // t, h=h // P, w=w // P,
                     t=t, p=P, q=P)


class PCA:
    def __init__(self, patches: torch.Tensor, k: int):
        data = patches.double()
        self.mean = data.mean(0)
        self.basis = torch.linalg.svd(data - self.mean, full_matrices=False).Vh[:k]

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        codes = (patches.double() - self.mean) @ self.basis.T
        return (codes @ self.basis + self.mean).to(patches.dtype)


class KMeans:
    def __init__(self, patches: torch.Tensor, k: int, iterations: int = 15, seed: int = 0):
        if len(patches) < k:
            raise ValueError(f"k-means with {k} centres needs at least {k} patches, got {len(patches)} "
                             f"(fit on more crops: --train-crops)")
        g = torch.Generator().manual_seed(seed)
        self.centres = patches[torch.randperm(len(patches), generator=g)[:k]].clone()
        for _ in range(iterations):
            nearest = self.assign(patches)
            counts = torch.bincount(nearest, minlength=k)
            sums = torch.zeros_like(self.centres).index_add_(0, nearest, patches)
            empty = counts == 0
            self.centres = torch.where(empty[:, None], patches[torch.randint(len(patches), (k,), generator=g)],
                                       sums / counts.clamp_min(1)[:, None])

    def assign(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.cdist(chunk, self.centres).argmin(1) for chunk in patches.split(8192)])

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        return self.centres[self.assign(patches)]

    def usage(self, patches: torch.Tensor) -> float:
        return self.assign(patches).unique().numel() / len(self.centres)


def mean_psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return round(psnr(x_hat, x).mean().item(), 2)


def items(kind, split: str, n: int = 0, first_seed: int = 0) -> torch.Tensor:
    """The whole held-out split, or n random training items (EmbeddedPhotos or EmbeddedClips), at 64 px."""
    data = kind(split, 64)
    if split == "val":
        return torch.stack([data[i]["pixels"] for i in range(len(data))])
    return torch.stack([data[SampleKey(i, first_seed + i, 64, 64)]["pixels"] for i in range(n)])


def code_clips(x: torch.Tensor, first: PCA, rest: PCA) -> torch.Tensor:
    """A clip as the tokenizer splits it: the first frame in patches, the others in tubes of T frames."""
    head = from_patches(first(to_patches(x[:, :, :1])), x[:, :, :1].shape)
    tail = from_patches(rest(to_patches(x[:, :, 1:], T)), x[:, :, 1:].shape, T)
    return torch.cat([head, tail], 2)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-crops", type=int, default=1500, help="training crops whose patches the codes are fitted on")
    ap.add_argument("--train-clips", type=int, default=300)
    ap.add_argument("--out", default="bench/out/linear_codes.json")
    args = ap.parse_args(argv)
    torch.manual_seed(0)

    train, val, fresh = items(EmbeddedPhotos, "train", args.train_crops, 99), items(EmbeddedPhotos, "val"), \
        items(EmbeddedPhotos, "train", 72, 5000)
    patches = to_patches(train)
    images = {"held_out_items": len(val), "fitted_on_patches": len(patches)}
    for k in (8, 12):
        images[f"pca_{k}_per_patch"] = mean_psnr(from_patches(PCA(patches, k)(to_patches(val)), val.shape), val)
    kmeans = KMeans(patches, 1024)
    images["kmeans_1024_patches"] = mean_psnr(from_patches(kmeans(to_patches(val)), val.shape), val)
    images["kmeans_usage_held_out"] = round(kmeans.usage(to_patches(val)), 3)
    images["kmeans_usage_72_fresh_training_crops"] = round(kmeans.usage(to_patches(fresh)), 3)

    train_clips, val_clips = items(EmbeddedClips, "train", args.train_clips, 99), items(EmbeddedClips, "val")
    first = PCA(to_patches(train_clips[:, :, :1]), 8)
    videos = {"held_out_items": len(val_clips), "frames": val_clips.shape[2]}
    for k in (8, 16):
        rest = PCA(to_patches(train_clips[:, :, 1:], T), k)
        videos[f"pca_8_first_frame_{k}_per_tube"] = mean_psnr(code_clips(val_clips, first, rest), val_clips)

    report = {"what": "codes with no network, fitted on the embedded training split, scored on its held-out split "
                      "(PSNR per frame, averaged)", "images": images, "videos": videos}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
