"""The two heads on top of the encoder: VQ (OmniTokenizer-VQVAE) and a diagonal Gaussian (OmniTokenizer-VAE).

Both take encoder tokens (..., dim) and return latents (..., latent_dim) plus their loss term.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor


@dataclass
class HeadOutput:
    latents: torch.Tensor  # (..., C): straight-through codes (vq) or posterior sample/mode (kl)
    loss: torch.Tensor  # eq. (1) or eq. (2), weighted
    indices: torch.Tensor | None = None  # (...,) vq only
    posterior: "DiagonalGaussian | None" = None  # kl only, tensors (..., C)
    stats: dict = field(default_factory=dict)


class VectorQuantizer(nn.Module):
    """Factorised, l2-normalised codes (ViT-VQGAN): Linear dim -> C, normalise, nearest of K unit codes.

    Loss eq. (1): codebook_weight * ||sg[z] - q||^2 + commitment_weight * ||z - sg[q]||^2 with a
    straight-through estimator. The codebook is initialised from the first training batch's encoder
    outputs; the `initialized` flag is a saved buffer, so loading or resuming never re-initialises it.

    Dead-code restarts (dead_code_steps > 0): a code that no token of the last `dead_code_steps` training
    batches chose is moved onto an encoder output of the current batch, so that the whole codebook stays in use.
    The steps since each code was last chosen (`code_age`) are a saved buffer: resume stays exact.

    unit_codes=False (the release's codebook): the code vectors are used as they are, not scaled to unit length, and
    the nearest is the one at the least Euclidean distance, computed as the release computes it.
    """

    def __init__(self, dim: int, latent_dim: int, codebook_size: int, codebook_weight: float,
                 commitment_weight: float, dead_code_steps: int = 0, unit_codes: bool = True):
        super().__init__()
        self.unit_codes = unit_codes
        self.proj = nn.Linear(dim, latent_dim)
        self.codebook = nn.Parameter(F.normalize(torch.randn(codebook_size, latent_dim), dim=-1))
        self.register_buffer("initialized", torch.tensor(False))
        self.codebook_weight, self.commitment_weight = codebook_weight, commitment_weight
        self.dead_code_steps = dead_code_steps
        if dead_code_steps > 0:
            self.register_buffer("code_age", torch.zeros(codebook_size, dtype=torch.long))

    def codes(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=-1) if self.unit_codes else self.codebook

    @torch.no_grad()
    def _init_from_data(self, z: torch.Tensor) -> None:
        flat = z.reshape(-1, z.shape[-1])
        k = self.codebook.shape[0]
        pick = torch.randint(0, flat.shape[0], (k,), device=flat.device)
        fresh = flat[pick] + 0.01 * torch.randn(k, flat.shape[1], device=flat.device)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(fresh, src=0)  # every rank starts from rank 0's codes
        self.codebook.data.copy_(F.normalize(fresh, dim=-1))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor, counts: torch.Tensor) -> int:
        """Age every code by one step, reset the chosen ones, and move codes unused for dead_code_steps onto
        encoder outputs of this batch (the same on every rank). Returns how many were restarted."""
        if dist.is_available() and dist.is_initialized():
            counts = counts.clone()
            dist.all_reduce(counts)  # a code is alive if any rank chose it
        self.code_age.add_(1).masked_fill_(counts > 0, 0)
        dead = (self.code_age >= self.dead_code_steps).nonzero().flatten()
        if len(dead) == 0:
            return 0
        flat = z.reshape(-1, z.shape[-1])
        flat = flat[torch.isfinite(flat).all(-1)]  # a non-finite batch (skipped by the trainer) must not seed codes
        if len(flat):
            fresh = flat[torch.randint(0, flat.shape[0], (len(dead),), device=flat.device)]
        else:
            fresh = torch.randn(len(dead), z.shape[-1], device=z.device)
        fresh = F.normalize(fresh + 0.01 * torch.randn_like(fresh), dim=-1)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(fresh, src=0)
        self.codebook.data[dead] = fresh.to(self.codebook.dtype)
        self.code_age[dead] = 0
        return len(dead)

    @torch.no_grad()
    def nearest(self, z: torch.Tensor, max_scores: int = 2**22) -> torch.Tensor:
        """Index of the nearest code for each unit vector in z (..., C); the score matrix is built in
        slices of at most `max_scores` entries (16 MB in fp32), whatever the number of tokens or codes.

        Always in fp32, autocast or not: bf16 scores (8 bits of mantissa) pick another code for some tokens, and
        argmax over bf16 ran ~5x slower on the CPU (measured: 25 ms for 1024 x 8192 scores)."""
        flat = z.reshape(-1, z.shape[-1]).float()
        codes = self.codes().float()
        rows = max(1, max_scores // codes.shape[0])
        idx = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
        with torch.autocast(flat.device.type, enabled=False):
            norms = None if self.unit_codes else (codes.T ** 2).sum(0, keepdim=True)
            for start in range(0, flat.shape[0], rows):
                part = flat[start : start + rows]
                scores = part @ codes.T
                if norms is None:  # max(-1).indices: the same first maximum as argmax, in half its time (measured)
                    idx[start : start + rows] = scores.max(-1).indices
                else:  # |z|^2 - 2 z.c + |c|^2, the least
                    idx[start : start + rows] = ((part ** 2).sum(1, keepdim=True) - 2 * scores + norms).min(-1).indices
        return idx.view(z.shape[:-1])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.dtype != torch.long:
            raise TypeError(f"indices must be int64 (long), got {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook.shape[0]):
            raise ValueError(f"indices must lie in [0, {self.codebook.shape[0]}), got "
                             f"[{indices.min().item()}, {indices.max().item()}]")
        return F.embedding(indices, self.codes())

    def forward(self, h: torch.Tensor, sample: bool = False) -> HeadOutput:
        z = F.normalize(self.proj(h).float(), dim=-1)
        if self.training and not bool(self.initialized):
            self._init_from_data(z.detach())
        indices = self.nearest(z)
        q = self.lookup(indices)
        loss = self.codebook_weight * F.mse_loss(q, z.detach()) + self.commitment_weight * F.mse_loss(z, q.detach())
        latents = z + (q - z).detach()
        counts = torch.bincount(indices.flatten(), minlength=self.codebook.shape[0]).float()
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
        stats = {"codebook_usage": (counts > 0).float().mean().detach(), "perplexity": perplexity.detach()}
        # a training step (not a no-grad look in train mode), after this batch's codes are taken: the next batch sees them
        if self.training and torch.is_grad_enabled() and self.dead_code_steps > 0:
            stats["codes_restarted"] = torch.tensor(float(self._restart_dead_codes(z.detach(), counts)))
        return HeadOutput(latents=latents, loss=loss, indices=indices, stats=stats)


class DiagonalGaussian:
    """A diagonal Gaussian posterior Q(z|x); logvar is clamped as in the paper's release."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor, logvar_min: float = -30.0,
                 logvar_max: float = 20.0):
        self.mean = mean
        self.logvar = logvar.clamp(logvar_min, logvar_max)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * noise; the noise from `generator` on its own device (diffusers' randn_tensor: a CPU generator
        gives a CUDA posterior the same draw as a CPU one)."""
        noise = randn_tensor(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(Q || N(0, I)) summed over all but the batch dimension, averaged over the batch."""
        kl = 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)
        return kl.flatten(1).sum(1).mean()


class GaussianHead(nn.Module):
    """Linear dim -> 2C (mean, logvar); latents are a sample in training, the mode otherwise. Loss eq. (2)."""

    def __init__(self, dim: int, latent_dim: int, kl_weight: float, logvar_min: float, logvar_max: float):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * latent_dim)
        self.kl_weight, self.logvar_range = kl_weight, (logvar_min, logvar_max)

    def forward(self, h: torch.Tensor, sample: bool = False) -> HeadOutput:
        mean, logvar = self.proj(h).float().chunk(2, dim=-1)
        posterior = DiagonalGaussian(mean, logvar, *self.logvar_range)
        latents = posterior.sample() if sample else posterior.mode()
        kl = posterior.kl()
        return HeadOutput(latents=latents, loss=self.kl_weight * kl, posterior=posterior,
                          stats={"kl": kl.detach(), "posterior_std": posterior.std.mean().detach()})
