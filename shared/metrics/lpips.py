"""LPIPS (VGG16) between frames in [-1, 1]: the perceptual loss of training and a reconstruction metric.

It uses the `lpips` package's linear heads (shipped in its wheel) on a VGG16 trunk whose ImageNet weights come
from shared/feature_weights.py: an explicit local file (a torchvision vgg16 state dict, or OMNITOK_VGG16_WEIGHTS),
torchvision's download, or, only when allowed, a fixed-seed random initialisation. `PerceptualLoss.source` says
which.
"""
from __future__ import annotations

import logging
import warnings

import torch
import torch.nn as nn

from shared.feature_weights import resolve_weights

log = logging.getLogger(__name__)

VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # lpips' five VGG16 slices over `features`


class PerceptualLoss(nn.Module):
    """LPIPS (VGG16) between frames in [-1, 1]; frozen."""

    def __init__(self, weights: str | None = None, allow_random: bool = False, seed: int = 0):
        super().__init__()
        import lpips

        from torchvision.models import VGG16_Weights

        resolved = resolve_weights("vgg16-imagenet", weights, "OMNITOK_VGG16_WEIGHTS", VGG16_Weights.IMAGENET1K_V1.url,
                                   allow_random, "loss.allow_random_perceptual: true (training) or "
                                                 "--allow-random-features (evaluation)")
        feats = None
        if resolved.state_dict is not None:
            feats = {k[len("features."):]: v for k, v in resolved.state_dict.items() if k.startswith("features.")}
            if not feats:
                raise ValueError(f"{resolved.source}: not a torchvision vgg16 state dict (no 'features.*' tensors)")
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Arguments other than a weight enum", category=UserWarning)
            torch.manual_seed(seed)
            self.lpips = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        if feats is not None:
            for i, (lo, hi) in enumerate(VGG_SLICES):
                slice_ = getattr(self.lpips.net, f"slice{i + 1}")
                slice_.load_state_dict({k: v for k, v in feats.items() if lo <= int(k.split(".")[0]) < hi})
        else:
            log.warning("LPIPS uses %s. Perceptual numbers are not LPIPS.", resolved.source)
        self.source = resolved.source
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # always frozen, eval mode

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Mean LPIPS over (B, 3, H, W) frames in [-1, 1]."""
        return self.lpips(x_hat, x, normalize=False).mean()
