"""Features of the real inputs, kept between evaluations.

rFID and rFVD compare reconstructions with their inputs, and the inputs' features are the same for every
model evaluated on the same split with the same network: computing them once halves the feature work of
each later evaluation (`make tables` evaluates a dozen models on one split). An entry is keyed by the bytes
of its input batch, and a cache file by the network's weights, so a changed file, crop, batch size or
network is a miss, never a stale hit.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from shared.atomic import atomic_write


def network_fingerprint(net: torch.nn.Module) -> str:
    """sha256 over the network's parameters and buffers (names, shapes and values)."""
    h = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Batch of real inputs -> its features, stored in `folder/<kind>-<network fingerprint>.safetensors`.

    folder None: nothing is stored (every batch is computed)."""

    def __init__(self, folder: str | Path | None, kind: str, net: torch.nn.Module):
        self.path = Path(folder) / f"{kind}-{network_fingerprint(net)[:24]}.safetensors" if folder else None
        self.entries: dict[str, torch.Tensor] = {}
        if self.path is not None and self.path.is_file():
            try:
                self.entries = load_file(str(self.path))
            except Exception as exc:  # a damaged cache is recomputed, not trusted
                print(f"{self.path}: unreadable feature cache ({exc.__class__.__name__}); recomputing")
        self.hits = self.misses = 0

    def features(self, batch: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        x = batch.detach().cpu().contiguous()
        h = hashlib.sha256(f"{tuple(x.shape)}:{x.dtype}".encode())
        h.update(x.view(-1).view(torch.uint8).numpy().tobytes())
        key = h.hexdigest()
        if key in self.entries:
            self.hits += 1
        else:
            self.misses += 1
            self.entries[key] = compute(batch).detach().cpu().contiguous()
        return self.entries[key]

    def save(self) -> None:
        if self.path is not None and self.misses:
            atomic_write(self.path, lambda tmp: save_file(self.entries, tmp))
