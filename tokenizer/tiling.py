"""Overlapping spatial tiles blended across their overlap, for encoding and decoding frames larger than memory.

A function of a tile of the token grid (rows r0:r1, columns c0:c1) gives that tile's output, `factor` output
positions per token (1: the encoder's tokens, patch size: the decoder's pixels). Tiles of `tile` tokens, `stride`
apart, the last one flush with the grid's end, cover the grid; where tiles overlap, each output position is the mean
of the tiles' outputs weighted by linear ramps that rise from a tile's edge shared with another tile across the
overlap (a tile's edge on the frame's border keeps weight 1), so that no seam shows where one tile hands over to the
next. Memory holds one tile's work and the output, never the whole frame's work.
"""
from __future__ import annotations

from typing import Callable

import torch


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Starts of tiles of `tile` positions, `stride` apart, covering 0..size; the last one ends at `size`."""
    if size <= tile:
        return [0]
    return list(range(0, size - tile, stride)) + [size - tile]


def ramp(size: int, start: int, length: int, overlap: int, like: torch.Tensor) -> torch.Tensor:
    """Weights (length,) of a tile at `start` along an axis of `size` positions: rising over `overlap` positions from
    an edge another tile shares, falling towards one, 1 elsewhere; positive everywhere; `like`'s dtype and device."""
    pos = torch.arange(length, dtype=like.dtype, device=like.device) + 0.5
    w = torch.ones_like(pos)
    if start > 0:
        w = torch.minimum(w, pos / overlap)
    if start + length < size:
        w = torch.minimum(w, (length - pos) / overlap)
    return w


def blend_tiles(fn: Callable[[int, int, int, int], torch.Tensor], grid: tuple[int, int], tile: tuple[int, int],
                stride: tuple[int, int], factor: int) -> torch.Tensor:
    """fn(r0, r1, c0, c1) -> (..., (r1 - r0) * factor, (c1 - c0) * factor) over tiles covering the token grid (h, w),
    blended into (..., h * factor, w * factor). Accumulated in fp32 at least, returned in the tiles' dtype."""
    (gh, gw), out, weight = grid, None, None
    for r in tile_starts(gh, tile[0], stride[0]):
        for c in tile_starts(gw, tile[1], stride[1]):
            th, tw = min(tile[0], gh), min(tile[1], gw)
            y = fn(r, r + th, c, c + tw)
            if out is None:
                out = y.new_zeros(*y.shape[:-2], gh * factor, gw * factor, dtype=torch.promote_types(y.dtype, torch.float32))
                weight = out.new_zeros(gh * factor, gw * factor)
                dtype = y.dtype
            w = (ramp(gh * factor, r * factor, th * factor, (tile[0] - stride[0]) * factor, out)[:, None]
                 * ramp(gw * factor, c * factor, tw * factor, (tile[1] - stride[1]) * factor, out)[None, :])
            rows, cols = slice(r * factor, (r + th) * factor), slice(c * factor, (c + tw) * factor)
            out[..., rows, cols] += y * w
            weight[rows, cols] += w
            del y
    return out.div_(weight).to(dtype)
