"""Validation of a tokenizer on image and video splits: PSNR, SSIM, the block-edge ratio on the patch grid
(shared/metrics/block_edge.py), codebook usage, and the bicubic baselines (shared/metrics/bicubic.py) and the input's
own block-edge ratio on the same items, so that every figure says what it is worth."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from shared.data.collate import collate
from shared.metrics.bicubic import BicubicBaselines, matched_factors
from shared.metrics.block_edge import block_edge_steps, ratio_of_means
from shared.metrics.reconstruction import psnr, ssim

from .model import OmniTokenizer


@torch.no_grad()
def reconstruct(model: OmniTokenizer, x: torch.Tensor, max_tokens: int | None = None) -> tuple[torch.Tensor, object]:
    enc = model.encode(x, max_tokens=max_tokens)
    return model.decode(enc.latents, size=enc.size, max_tokens=max_tokens).sample, enc


@torch.no_grad()
def evaluate(model: OmniTokenizer, dataset: Dataset, batch_size: int = 4, limit: int | None = None,
             max_tokens: int | None = None, desc: str = "eval",
             on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> dict:
    """Mean PSNR / SSIM over every frame of the split (at most `limit` items), the block-edge ratio of the
    reconstructions and of the inputs on the model's patch grid, and the VQ codebook's usage (share of codes chosen at
    least once) and perplexity (exp of the entropy of the codes chosen).

    on_batch(x, x_hat) sees every batch and its reconstruction (clamped to [-1, 1]), for further metrics.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, range(limit))
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    psnrs, ssims, counts, baselines = [], [], None, None
    block = model.config.patch_size
    steps = {"reconstruction": ([], []), "input": ([], [])}
    for batch in tqdm(loader, desc=desc, leave=False):
        x = batch["pixels"].to(device)
        x_hat, enc = reconstruct(model, x, max_tokens)
        if baselines is None:
            cfg = model.config
            baselines = BicubicBaselines(matched_factors(cfg.patch_size, cfg.latent_dim, cfg.temporal_patch_size
                                                         if x.shape[2] > 1 else 1,
                                                         cfg.codebook_size if cfg.quantizer == "vq" else None),
                                         block)
        baselines.add(x)
        psnrs.append(psnr(x_hat, x).cpu())
        ssims.append(ssim(x_hat, x).cpu())
        for name, frames in (("reconstruction", x_hat), ("input", x)):
            for store, value in zip(steps[name], block_edge_steps(frames, block)):
                store.append(value.cpu())
        if on_batch is not None:
            on_batch(x, x_hat.clamp(-1, 1))
        if enc.indices is not None:
            batch_counts = torch.bincount(enc.indices.flatten().cpu(), minlength=model.config.codebook_size)
            counts = batch_counts if counts is None else counts + batch_counts
    model.train(was_training)
    out = {"psnr": torch.cat(psnrs).mean().item(), "ssim": torch.cat(ssims).mean().item(),
           "block_edge": ratio_of_means(*map(torch.cat, steps["reconstruction"])),
           "block_edge_input": ratio_of_means(*map(torch.cat, steps["input"])),
           "items": len(dataset), "frames": int(torch.cat(psnrs).numel())}
    out["bicubic"] = baselines.result()
    if counts is not None:
        probs = counts.double() / counts.sum()
        out["codebook_usage"] = (counts > 0).float().mean().item()
        out["codebook_perplexity"] = torch.exp(-(probs * probs.clamp_min(1e-12).log()).sum()).item()
    return out
