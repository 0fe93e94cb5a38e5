"""The block-edge ratio: how much a reconstruction steps at the edges of the tokenizer's patch grid.

PSNR and SSIM do not see a tile mosaic: a decoder that paints every p x p patch flat can score as well as a smooth
blur. This measure, in the spirit of the block-edge impairment measures for JPEG's 8 x 8 blocks, takes the mean
absolute pixel step between neighbouring pixels across the grid's lines (columns p-1 | p, 2p-1 | 2p, ...; rows the
same) and divides it by the mean step between neighbours inside the patches, horizontally and vertically together.
A natural photo has about 1 (its edges fall anywhere); flat tiles with soft insides give a large ratio.
"""
from __future__ import annotations

import torch

from .reconstruction import _frames


def block_edge_steps(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, T, H, W) or (B, 3, H, W) in [-1, 1] -> the mean step across the grid's lines and the mean step inside
    the blocks, per frame (N,) each, on [0, 1] pixels. Frames must span at least two blocks in one direction."""
    if block < 2:
        raise ValueError(f"block must be at least 2 pixels, got {block}")
    frames = _frames(x)
    h, w = frames.shape[-2:]
    if h <= block and w <= block:
        raise ValueError(f"frames of {h}x{w} pixels have no {block}-pixel grid line inside them")
    edge_sum = frames.new_zeros(frames.shape[0])
    edge_count = 0
    inside_sum = frames.new_zeros(frames.shape[0])
    inside_count = 0
    for axis, size in ((-1, w), (-2, h)):
        if size < 2:
            continue
        steps = frames.diff(dim=axis).abs()  # step k lies between pixel k and k + 1
        across = (torch.arange(size - 1, device=frames.device) + 1) % block == 0
        steps = steps.movedim(axis, -1)
        edge_sum += steps[..., across].flatten(1).sum(1)
        inside_sum += steps[..., ~across].flatten(1).sum(1)
        other = steps[0, ..., 0].numel()  # pixels along the other axis, times channels
        edge_count += int(across.sum()) * other
        inside_count += int((~across).sum()) * other
    return edge_sum / max(edge_count, 1), inside_sum / max(inside_count, 1)


def block_edge_ratio(x: torch.Tensor, block: int) -> float:
    """The block-edge ratio of frames (all frames pooled): mean step across the grid's lines / mean step inside."""
    edge, inside = block_edge_steps(x, block)
    return ratio_of_means(edge, inside)


def ratio_of_means(edge: torch.Tensor, inside: torch.Tensor) -> float:
    """Pooled ratio of per-frame steps; a split of flat frames (no step inside at all) has no ratio (NaN)."""
    inside_mean = inside.double().mean().item()
    return edge.double().mean().item() / inside_mean if inside_mean > 0 else float("nan")
