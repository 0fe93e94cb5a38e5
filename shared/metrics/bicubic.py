"""The trivial baseline every reconstruction figure is shown beside: bicubic down-sampling and back up.

A tokenizer that keeps C numbers per p x p patch of an image (C / t per frame for a t-frame tube) is compared with
bicubic interpolation that keeps as many numbers: 3 colour values per (p / f)^2 pixels, so f = p * sqrt(3 / C)
(sqrt(3 t / C) for clips). A VQ tokenizer stores log2(K) bits a token; at 8 bits a value that is log2(K) / 8
numbers, a further, stricter budget. Fixed factors 4 and 8 are the usual reference points.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .block_edge import block_edge_steps, ratio_of_means
from .reconstruction import psnr, ssim


def bicubic_down_up(x: torch.Tensor, factor: float) -> torch.Tensor:
    """(B, 3, T, H, W) or (B, 3, H, W) in [-1, 1]: every frame down-sampled by `factor` (antialiased bicubic), then
    up-sampled back to its size; clamped to [-1, 1]."""
    video = x.dim() == 5
    frames = x.permute(0, 2, 1, 3, 4).flatten(0, 1) if video else x
    h, w = frames.shape[-2:]
    small = (max(1, round(h / factor)), max(1, round(w / factor)))
    down = F.interpolate(frames.float(), size=small, mode="bicubic", antialias=True, align_corners=False)
    up = F.interpolate(down, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)
    return up.unflatten(0, (x.shape[0], x.shape[2])).permute(0, 2, 1, 3, 4) if video else up


def matched_factors(patch_size: int, latent_dim: int, frames_per_token: int = 1,
                    codebook_size: int | None = None) -> dict[str, float]:
    """Down-sampling factors of the baselines: fixed 4x and 8x, the same numbers per patch as the model, and (VQ)
    the same bits."""
    out = {"4x": 4.0, "8x": 8.0,
           "same_numbers": patch_size * math.sqrt(3 * frames_per_token / latent_dim)}
    if codebook_size:
        out["same_bits"] = patch_size * math.sqrt(3 * frames_per_token / (math.log2(codebook_size) / 8))
    return out


class BicubicBaselines:
    """Accumulates PSNR / SSIM of each baseline over the batches of a split, and with `block` (the tokenizer's patch
    size) the block-edge ratio of its output on that grid (shared/metrics/block_edge.py)."""

    def __init__(self, factors: dict[str, float], block: int | None = None):
        self.factors, self.block = factors, block
        keys = ("psnr", "ssim") + (("edge", "inside") if block else ())
        self.values: dict[str, dict[str, list[torch.Tensor]]] = {k: {key: [] for key in keys} for k in factors}

    def add(self, x: torch.Tensor) -> None:
        for name, factor in self.factors.items():
            y = bicubic_down_up(x, factor)
            values = self.values[name]
            values["psnr"].append(psnr(y, x).cpu())
            values["ssim"].append(ssim(y, x).cpu())
            if self.block:
                edge, inside = block_edge_steps(y, self.block)
                values["edge"].append(edge.cpu())
                values["inside"].append(inside.cpu())

    def result(self) -> dict:
        out = {}
        for name, v in self.values.items():
            out[name] = {"factor": round(self.factors[name], 3), "psnr": torch.cat(v["psnr"]).mean().item(),
                         "ssim": torch.cat(v["ssim"]).mean().item()}
            if self.block:
                out[name]["block_edge"] = ratio_of_means(torch.cat(v["edge"]), torch.cat(v["inside"]))
        return out
