"""Per-step seeding and the learning-rate schedule."""
from __future__ import annotations

import math

import torch


def seed_step(seed: int, step: int, rank: int = 0, world_size: int = 1) -> None:
    """Seed torch's global generator from (seed, step, rank): the randomness of step s (dropout, noise, random
    frames) is the same whether the run went straight through or resumed at s, and differs between ranks."""
    torch.manual_seed(seed * 1_000_003 + step * world_size + rank)


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator of (seed, step) alone, the same on every rank: what a step draws from it for its global batch and
    slices to each rank (rank_rows) is what one process of the global batch draws, so that N processes of batch b
    train as one process of batch N * b does."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def rank_rows(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's share of rows drawn for the global batch (world_size equal shares, in rank order)."""
    b = x.shape[0] // world_size
    return x[rank * b : (rank + 1) * b]


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, total_steps: int, decay: str = "cosine") -> float:
    """Linear warm-up to `lr` over `warmup_steps`, then cosine to `min_lr` at `total_steps` ("cosine"), or
    `lr` throughout ("constant")."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if decay == "constant":
        return lr
    if decay != "cosine":
        raise ValueError(f"lr decay must be 'cosine' or 'constant', got {decay!r}")
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's lr to `lr`, times the group's own "lr_scale" where it has one."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
