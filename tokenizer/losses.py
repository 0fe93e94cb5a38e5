"""Training losses: reconstruction, hinge GAN and feature matching, and `TokenizerLoss`, which composes them with
LPIPS (shared/metrics/lpips.py) and owns the discriminators (as LlamaGen's VQLoss does), so that the trainer's
loop calls one object for the generator's loss and one for the discriminators'. The LPIPS network's source is
recorded in the run's metadata so that no result is passed off as made with the real network.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.metrics.lpips import PerceptualLoss

from .discriminators import PatchGAN
from .train_config import LossConfig


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    if kind == "l2":
        return F.mse_loss(x_hat, x)
    if kind == "l1":
        return F.l1_loss(x_hat, x)
    raise ValueError(f"reconstruction loss must be 'l2' or 'l1', got {kind!r}")


def gradient_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the horizontal and vertical pixel steps of x_hat and x (..., H, W)."""
    return sum(F.l1_loss(x_hat.diff(dim=axis), x.diff(dim=axis)) for axis in (-1, -2)) / 2


def motion_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the frame-to-frame steps of x_hat and x (B, C, T, H, W): what moved, and by how much."""
    return F.l1_loss(x_hat.diff(dim=2), x.diff(dim=2))


def video_frames_for_perceptual(x_hat: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None):
    """(B, 3, T, H, W) -> one random frame per video, (B, 3, H, W) each (as published)."""
    b, _, t = x.shape[:3]
    idx = torch.randint(0, t, (b,), generator=generator).to(x.device)
    pick = lambda v: v[torch.arange(b, device=v.device), :, idx]  # noqa: E731
    return pick(x_hat), pick(x)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def feature_matching_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.l1_loss(f, r.detach()) for r, f in zip(real, fake)) / len(real)


class TokenizerLoss(nn.Module):
    """Everything the tokenizer's training minimises.

    Generator: recon_weight * L2/L1 + gradient_weight * L1 of pixel steps + motion_weight * L1 of frame steps
    (videos) + the head's VQ or KL term + perceptual_weight * LPIPS (one random frame per
    video) + gan_weight * hinge + feature_matching_weight * feature matching, the last two from `disc_start` on.
    Discriminators: hinge on real vs reconstructed, a 2-D PatchGAN for images and a 3-D one for videos.
    Call it inside the accelerator's autocast: `loss_fn(x, x_hat, enc, loss_fn.gan_on(step))` for the generator,
    `loss_fn(x, x_hat.detach(), None, discriminator=True)` for the discriminators (a forward call each, so that DDP
    sees both). The generator's call takes whether the GAN terms are on, not the step, so that a compiled step is
    one graph before disc_start and one after, not one per step.
    """

    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg
        self.disc2d = PatchGAN(2, cfg.disc_channels, cfg.disc_layers)
        self.disc3d = PatchGAN(3, cfg.disc_channels, cfg.disc_layers)
        self.perceptual = (PerceptualLoss(cfg.perceptual_weights, cfg.allow_random_perceptual)
                           if cfg.perceptual_weight > 0 else None)

    def gan_on(self, step: int) -> bool:
        return self.cfg.gan_weight > 0 and step >= self.cfg.disc_start

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.disc2d.parameters()) + list(self.disc3d.parameters())

    def discriminator_state(self) -> dict[str, dict]:
        """The discriminators' weights, as checkpoints store them ("disc2d", "disc3d")."""
        return {"disc2d": self.disc2d.state_dict(), "disc3d": self.disc3d.state_dict()}

    def _disc(self, x: torch.Tensor, x_hat: torch.Tensor):
        """Logits and features of the discriminator of this batch's kind, on [real; reconstructed]."""
        if x.shape[2] > 1:
            return self.disc3d(torch.cat([x, x_hat]))
        return self.disc2d(torch.cat([x[:, :, 0], x_hat[:, :, 0]]))

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, enc, gan: bool = False,
                discriminator: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, named terms) of the generator, or of the discriminators when `discriminator`."""
        cfg, n = self.cfg, x.shape[0]
        if discriminator:
            logits, _ = self._disc(x, x_hat)
            loss = hinge_d_loss(logits[:n].float(), logits[n:].float())
            return loss, {"gan_d": loss}
        terms = {"recon": reconstruction_loss(x_hat.float(), x, cfg.recon),
                 "quant" if enc.indices is not None else "kl": enc.loss}
        loss = cfg.recon_weight * terms["recon"] + enc.loss
        if cfg.gradient_weight > 0:
            terms["gradient"] = gradient_loss(x_hat.float(), x)
            loss = loss + cfg.gradient_weight * terms["gradient"]
        if cfg.motion_weight > 0 and x.shape[2] > 1:
            terms["motion"] = motion_loss(x_hat.float(), x)
            loss = loss + cfg.motion_weight * terms["motion"]
        if self.perceptual is not None:
            a, b = video_frames_for_perceptual(x_hat, x) if x.shape[2] > 1 else (x_hat[:, :, 0], x[:, :, 0])
            terms["perceptual"] = self.perceptual(a.float(), b)
            loss = loss + cfg.perceptual_weight * terms["perceptual"]
        if gan:
            logits, feats = self._disc(x, x_hat)
            terms["gan_g"] = hinge_g_loss(logits[n:].float())
            terms["feature_matching"] = feature_matching_loss([f[:n] for f in feats], [f[n:] for f in feats])
            loss = loss + cfg.gan_weight * terms["gan_g"] + cfg.feature_matching_weight * terms["feature_matching"]
        return loss, terms
