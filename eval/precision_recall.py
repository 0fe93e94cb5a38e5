"""Precision and recall of two feature sets as the ADM evaluator computes them (improved precision and recall,
Kynkäänniemi et al. 2019): each real item's neighbourhood is a ball to its k-th nearest other real item; precision is
the share of generated items inside some real ball, recall the share of real items inside some generated ball.

The ADM evaluator computes the squared distances in float16 (and in float32 for a block of 10,000 x 10,000 pairs
where float16 overflows), which moves items across a ball's edge; torch-fidelity's (eval.image_fidelity) computes
them in float32. `distance_dtype` picks one.
"""
from __future__ import annotations

import torch

BLOCK = 10000  # rows and columns of one block of distances; the float16 overflow check is per block


def _formula(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a * a).sum(1)[:, None] - 2 * (a @ b.T) + (b * b).sum(1)[None, :]).clamp_min(0)


def _squared_distances(u: torch.Tensor, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """||u_i - v_j||^2 computed in `dtype` (in float32 where float16 is not finite), returned as float32."""
    d = _formula(u.to(dtype), v.to(dtype))
    if dtype == torch.float16 and not torch.isfinite(d).all():
        d = _formula(u.float(), v.float())
    return d.float()


def _blocks(u: torch.Tensor, v: torch.Tensor, dtype: torch.dtype):
    for i in range(0, len(u), BLOCK):
        yield i, torch.cat([_squared_distances(u[i:i + BLOCK], v[j:j + BLOCK], dtype)
                            for j in range(0, len(v), BLOCK)], 1)


def radii(features: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """Squared distance of each item to its k-th nearest other item (the item itself is the 0th)."""
    if not 0 < k < len(features):
        raise ValueError(f"a neighbourhood of k={k} needs more than k items, got {len(features)}")
    out = torch.empty(len(features))
    for i, d in _blocks(features, features, dtype):
        out[i:i + len(d)] = d.kthvalue(k + 1, dim=1).values
    return out


def coverage(inside: torch.Tensor, balls: torch.Tensor, ball_radii: torch.Tensor, dtype: torch.dtype) -> float:
    """The share of `inside`'s items within some ball (centre `balls`, squared radius `ball_radii`)."""
    hit = torch.zeros(len(inside), dtype=torch.bool)
    for i, d in _blocks(inside, balls, dtype):
        hit[i:i + len(d)] = (d <= ball_radii[None, :]).any(1)
    return hit.double().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3,
                     distance_dtype: torch.dtype = torch.float16) -> tuple[float, float]:
    """(precision, recall) of generated `fake` against `real`, (n, d) features each."""
    real_radii, fake_radii = radii(real, k, distance_dtype), radii(fake, k, distance_dtype)
    return (coverage(fake, real, real_radii, distance_dtype), coverage(real, fake, fake_radii, distance_dtype))
