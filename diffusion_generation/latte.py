"""Latte: a latent video diffusion transformer (Ma et al., 2024), variant 1: spatial and temporal blocks alternate.

    latents (N, C, T, h, w), any T, h and w (h, w divisible by the patch size)
      -> each frame in p x p patches -> tokens (N, T, L, D) + 2-D sin-cos position per frame
      -> ONE conditioning embedder (timestep + class, label dropped once per sample), as DiT
      -> pairs of blocks: spatial (attention over the L tokens of each frame)
                          temporal (attention over the T frames of each position; frame positions, 1-D sin-cos,
                          are added before the first temporal block)
      -> final layer per token -> (N, 2C or C, T, h, w)

`depth` counts every block (Latte-XL/2: 28 = 14 spatial + 14 temporal), so the parameter count equals DiT's
at the same width. The blocks, embedder and final layer are DiT's (dit.py): zero-initialised gates, output
exactly zero at initialisation.

Not diffusers' `LatteTransformer3DModel`: it is the text-to-video model (PixArt's AdaLayerNormSingle, a caption
projection that needs a text input and gets no gradient without one) and has no class path.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange

from .dit import ConditionEmbedder, DiTBlock, FinalLayer, check_grid, init_weights, sincos_1d, sincos_2d


class Latte(ModelMixin, ConfigMixin):
    """forward(x (N, C, T, h, w), t (N,), y (N,) or None) -> (N, 2C or C, T, h, w)."""

    @register_to_config
    def __init__(self, in_channels: int = 8, patch_size: int = 2, hidden_size: int = 1152, depth: int = 28,
                 num_heads: int = 16, mlp_ratio: float = 4.0, num_classes: int = 101,
                 class_dropout_prob: float = 0.1, learn_sigma: bool = True):
        super().__init__()
        if depth % 2:
            raise ValueError(f"Latte alternates spatial and temporal blocks: depth must be even, got {depth}")
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.condition = ConditionEmbedder(hidden_size, num_classes, class_dropout_prob)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(hidden_size, patch_size, self.out_channels)
        init_weights(self)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"Latte takes latents (N, C, T, h, w), got shape {tuple(x.shape)}")
        p = self.config.patch_size
        check_grid(x, p, "Latte")
        n, _, frames, h, w = x.shape
        gh, gw = h // p, w // p
        tokens = self.patch_embed(rearrange(x, "n c t h w -> (n t) c h w")).flatten(2).transpose(1, 2)
        d = tokens.shape[-1]
        tokens = tokens + sincos_2d(d, gh, gw, x.device).to(tokens.dtype)  # (N*T, L, D)
        c = self.condition(t, y, tokens.dtype)  # (N, D): each block modulates a clip's frames or positions by its row
        time_pos = sincos_1d(d, frames, x.device).to(tokens.dtype)  # (T, D)
        for i in range(0, len(self.blocks), 2):
            tokens = self.blocks[i](tokens, c)
            tokens = rearrange(tokens, "(n t) l d -> (n l) t d", n=n)
            if i == 0:
                tokens = tokens + time_pos
            tokens = self.blocks[i + 1](tokens, c)
            tokens = rearrange(tokens, "(n l) t d -> (n t) l d", n=n)
        out = self.final(tokens, c)  # (N*T, L, p*p*C_out)
        return rearrange(out, "(n t) (h w) (p q c) -> n c t (h p) (w q)", n=n, h=gh, w=gw, p=p, q=p)
