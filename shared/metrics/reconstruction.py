"""Per-frame reconstruction metrics on frames in [-1, 1]: PSNR and SSIM (Gaussian window 11, sigma 1.5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) or (B, 3, H, W) in [-1, 1] -> (N, 3, H, W) in [0, 1]."""
    if x.dim() == 5:
        x = x.permute(0, 2, 1, 3, 4).flatten(0, 1)
    return ((x.float().clamp(-1, 1) + 1) / 2)


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of every frame (N,), peak 1 on [0, 1] pixels."""
    mse = (_frames(x_hat) - _frames(x)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def ssim(x_hat: torch.Tensor, x: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM of every frame (N,), averaged over channels and valid window positions. Always in fp32: under a caller's
    bf16 autocast the blurs ran in bf16, and E[a^2] - mu^2 lost its digits (held-out SSIM 0.754 -> 0.723 for a
    model whose PSNR moved 0.005 dB; measured)."""
    with torch.autocast(x.device.type, enabled=False):
        return _ssim(_frames(x_hat), _frames(x), window, sigma)


def _ssim(a: torch.Tensor, b: torch.Tensor, window: int, sigma: float) -> torch.Tensor:
    window = min(window, a.shape[-1], a.shape[-2])
    coords = torch.arange(window, dtype=torch.float32, device=a.device) - (window - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    g = (g / g.sum())
    kernel = (g[:, None] * g[None, :]).expand(3, 1, window, window).contiguous()
    blur = lambda v: F.conv2d(v, kernel, groups=3)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)
