"""PatchGAN discriminators: 2-D for images, 3-D for videos. Both return logits and intermediate features
(for feature matching). GroupNorm instead of BatchNorm: no running statistics to drift between ranks or
across a resume."""
from __future__ import annotations

import torch
import torch.nn as nn


class PatchGAN(nn.Module):
    def __init__(self, dims: int = 2, channels: int = 64, layers: int = 3):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        # video: kernel 3 in time so that 17 frames survive every layer; stride 2 in time when downsampling
        k_down, k_keep = (4, 4) if dims == 2 else ((3, 4, 4), (3, 4, 4))
        widths = [channels * min(2**i, 8) for i in range(layers + 1)]
        blocks = [nn.Sequential(conv(3, widths[0], k_down, 2, 1), nn.LeakyReLU(0.2, True))]
        for i in range(1, layers + 1):
            stride = 2 if i < layers else 1
            blocks.append(nn.Sequential(conv(widths[i - 1], widths[i], k_down if stride == 2 else k_keep, stride, 1),
                                        nn.GroupNorm(min(32, widths[i] // 4), widths[i]), nn.LeakyReLU(0.2, True)))
        self.blocks = nn.ModuleList(blocks)
        self.out = conv(widths[-1], 1, k_keep, 1, 1)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 3, H, W) for dims=2, (B, 3, T, H, W) for dims=3."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.out(x), features
