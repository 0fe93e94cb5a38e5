"""Extracted posteriors as a training set, and the measured latent scale.

Each row of an extraction folder (extract_latents.py) holds one item's posterior mean and log-variance
(original or flipped) and its label. A training item is a fresh sample of that posterior, drawn from the
sample key's seed (so a batch is a pure function of the step and resume is exact), times the latent scale.

The scale is measured, not assumed: 1 / std of the training latents as training draws them, i.e. of
mean + sigma * noise, whose variance is Var(mean) + E[sigma^2] over every element of every row.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import torch
from safetensors import safe_open
from torch.utils.data import Dataset

from shared.data import SampleKey
from shared.extraction import ShardDataset, read_manifest


def posterior_moments(parts: Iterable[tuple[torch.Tensor, torch.Tensor]], chunk: int = 4096) -> tuple[float, float]:
    """(mean, std) of the samples mean + exp(logvar / 2) * noise over all rows and elements of the (mean, logvar)
    pairs given (one pair per shard, so a large extraction is never all in memory), with float64 sums."""
    n, s1, s2 = 0, 0.0, 0.0
    for mean, logvar in parts:
        for i in range(0, mean.shape[0], chunk):
            m, lv = mean[i : i + chunk].double(), logvar[i : i + chunk].double()
            n += m.numel()
            s1 += m.sum().item()
            s2 += (m * m + lv.exp()).sum().item()
    if n == 0:
        raise ValueError("no latents to measure")
    mu = s1 / n
    return mu, max(s2 / n - mu * mu, 0.0) ** 0.5


def scale_from_std(std: float) -> float:
    """The factor that gives the training latents unit variance."""
    if not std > 0:
        raise ValueError(f"latents have standard deviation {std}; cannot measure a scale")
    return 1.0 / std


def shard_posteriors(folder: str | Path) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(mean, logvar) of each shard of a finished extraction folder, one shard at a time."""
    folder = Path(folder)
    for shard in read_manifest(folder)["shards"]:
        if shard["file"] is not None:
            with safe_open(str(folder / shard["file"]), framework="pt") as f:
                yield f.get_tensor("mean"), f.get_tensor("logvar")


class LatentSet(Dataset):
    """Rows of an extraction folder; item = {"latents": scale * posterior sample, "label": long}.

    Keyed by `SampleKey` (training: a sample drawn from key.seed) or an int (the posterior mean).
    """

    def __init__(self, folder: str | Path, scale: float | None = None):
        data = ShardDataset(folder)
        for name in ("mean", "logvar", "labels"):
            if name not in data.arrays:
                raise ValueError(f"{folder}: an extraction without '{name}' (found {sorted(data.arrays)}); "
                                 f"expected latents written by diffusion_generation.extract_latents")
        self.folder, self.manifest = Path(folder), data.manifest
        # mean and log-variance stay memory-mapped (ImageNet's are ~84 GB); the labels are read
        self.mean, self.logvar, self.labels = data.arrays["mean"], data.arrays["logvar"], data.arrays["labels"].load()
        if scale is None and "latent_scale" not in self.manifest:
            raise ValueError(f"{folder}: the latent scale was never measured (the extraction stopped after its last "
                             f"shard); run diffusion_generation.extract_latents on this folder again: it keeps the "
                             f"shards and measures the scale")
        self.scale = float(scale if scale is not None else self.manifest["latent_scale"])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape[1:])

    def __len__(self) -> int:
        return self.mean.shape[0]

    def __getitem__(self, key: int | SampleKey) -> dict:
        index = key.index if isinstance(key, SampleKey) else int(key)
        mean = self.mean[index].float()
        if isinstance(key, SampleKey) and key.seed is not None:
            noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(key.seed))
            mean = mean + torch.exp(0.5 * self.logvar[index].float()) * noise
        return {"latents": mean * self.scale, "label": self.labels[index].long()}
