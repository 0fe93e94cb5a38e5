"""Validation of a tokenizer on image and video splits: PSNR, SSIM, codebook usage."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from shared.metrics.reconstruction import psnr, ssim
from shared.data.collate import collate

from .model import OmniTokenizer


@torch.no_grad()
def reconstruct(model: OmniTokenizer, x: torch.Tensor, max_tokens: int | None = None) -> tuple[torch.Tensor, object]:
    enc = model.encode(x, max_tokens=max_tokens)
    return model.decode(enc.latents, size=enc.size, max_tokens=max_tokens), enc


@torch.no_grad()
def evaluate(model: OmniTokenizer, dataset: Dataset, batch_size: int = 4, limit: int | None = None,
             max_tokens: int | None = None, desc: str = "eval",
             on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> dict:
    """Mean PSNR / SSIM over every frame of the split (at most `limit` items), and VQ codebook usage.

    on_batch(x, x_hat) sees every batch and its reconstruction (clamped to [-1, 1]), for further metrics.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, range(limit))
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    psnrs, ssims, used = [], [], None
    for batch in tqdm(loader, desc=desc, leave=False):
        x = batch["pixels"].to(device)
        x_hat, enc = reconstruct(model, x, max_tokens)
        psnrs.append(psnr(x_hat, x).cpu())
        ssims.append(ssim(x_hat, x).cpu())
        if on_batch is not None:
            on_batch(x, x_hat.clamp(-1, 1))
        if enc.indices is not None:
            counts = torch.bincount(enc.indices.flatten().cpu(), minlength=model.config.codebook_size)
            used = counts > 0 if used is None else used | (counts > 0)
    model.train(was_training)
    out = {"psnr": torch.cat(psnrs).mean().item(), "ssim": torch.cat(ssims).mean().item(),
           "items": len(dataset), "frames": int(torch.cat(psnrs).numel())}
    if used is not None:
        out["codebook_usage"] = used.float().mean().item()
    return out
