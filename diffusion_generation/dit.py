"""DiT: a diffusion transformer over image latents (Peebles & Xie, 2023), class-conditional or unconditional.

    latents (N, C, h, w), any h and w divisible by the patch size
      -> patches p x p -> tokens (N, h/p * w/p, D) + 2-D sin-cos position (recomputed for each h, w)
      -> ONE conditioning embedder: c = timestep MLP(t) + label embedding(y)   (label dropped once per sample)
      -> blocks, each: x + gate * attention(modulate(LN(x), c)), x + gate * MLP(modulate(LN(x), c))
         with shift/scale/gate from a per-block linear of c, initialised to zero (adaLN-Zero)
      -> final layer (adaLN + linear, zero-initialised) -> (N, 2C, h, w): epsilon and the variance interpolation

The model's output is exactly zero at initialisation, as in DiT. The blocks, the conditioning embedder and the
final layer are shared with Latte (latte.py).

Built on diffusers: `ModelMixin` + `ConfigMixin` (save_pretrained / from_pretrained, config.json), `Timesteps`,
`TimestepEmbedding`, `LabelEmbedding`, `Attention` (torch SDPA; on the CPU in bf16 diffusers' explicit processor,
see `SDPAOrExplicitOnCPUbf16`), `FeedForward`, and the 1-D sin-cos function.
Not diffusers' `DiTTransformer2DModel`, which builds a timestep + label embedder in every block, drops the label
independently in each block, leaves the adaLN-Zero gates non-zero, and unpatchifies square grids only; nor its
`get_2d_sincos_pos_embed`, which scrambles the grid when h != w.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from diffusers.models.embeddings import LabelEmbedding, TimestepEmbedding, Timesteps, get_1d_sincos_pos_embed_from_grid
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange

# ----------------------------------------------------------------------------- positions


def sincos_2d(dim: int, h: int, w: int, device=None) -> torch.Tensor:
    """(h * w, dim) fixed sin-cos embedding of a row-major grid: the first half of the channels encodes the column,
    the second half the row, as DiT's, Latte's and diffusers' tables do (so that their weights map one to one)."""
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    emb = torch.cat([get_1d_sincos_pos_embed_from_grid(dim // 2, cols.reshape(-1)),
                     get_1d_sincos_pos_embed_from_grid(dim // 2, rows.reshape(-1))], 1)
    return emb.float().to(device)


def sincos_1d(dim: int, n: int, device=None) -> torch.Tensor:
    """(n, dim) fixed sin-cos embedding of positions 0..n-1 (Latte's frame positions)."""
    return get_1d_sincos_pos_embed_from_grid(dim, torch.arange(n, dtype=torch.float64)).float().to(device)


# ----------------------------------------------------------------------------- conditioning


class ConditionEmbedder(nn.Module):
    """c = MLP(sinusoid(t)) + embedding(y), computed once per forward and given to every block.

    The label table has a last row for "no class" (index num_classes) when class_dropout_prob > 0; in training
    each sample's label is replaced by it with that probability, once (diffusers' LabelEmbedding, called once).
    """

    def __init__(self, hidden_size: int, num_classes: int, class_dropout_prob: float, frequency_dim: int = 256):
        super().__init__()
        self.time_proj = Timesteps(frequency_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(frequency_dim, hidden_size)
        self.num_classes = num_classes
        self.label_embed = LabelEmbedding(num_classes, hidden_size, class_dropout_prob) if num_classes else None

    def forward(self, t: torch.Tensor, y: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        c = self.time_embed(self.time_proj(t).to(dtype))  # (N, D)
        if self.label_embed is None:
            if y is not None:
                raise ValueError("this model is unconditional (num_classes 0); do not pass class labels")
            return c
        if y is None:
            raise ValueError(f"this model is class-conditional ({self.num_classes} classes); pass labels y "
                             f"(index {self.num_classes} = no class)")
        return c + self.label_embed(y)


# ----------------------------------------------------------------------------- blocks


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def per_condition(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """x (N * g, L, D) as (N, g * L, D): the g sequences of each of c's N rows (consecutive in x) share its
    modulation, computed once per row (Latte: a clip's frames, or its positions, share the clip's condition)."""
    if x.shape[0] % c.shape[0]:
        raise ValueError(f"{x.shape[0]} sequences do not split into groups for {c.shape[0]} conditions")
    return x.reshape(c.shape[0], -1, x.shape[-1])


class SDPAOrExplicitOnCPUbf16:
    """diffusers' SDPA processor, except on the CPU in bf16 (autocast or bf16 tensors), where its explicit one
    (baddbmm, softmax in fp32 with the Attention's `upcast_softmax`, bmm) runs: at these short sequences torch's CPU
    flash kernel ran an attention layer's forward and backward slower than the explicit products in bf16 and level
    in fp32 (measured; the training steps' figures: docs/speed.md)."""

    def __init__(self):
        self.sdpa, self.explicit = AttnProcessor2_0(), AttnProcessor()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        cpu_bf16 = hidden_states.device.type == "cpu" and (hidden_states.dtype == torch.bfloat16 or (
            torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16))
        return (self.explicit if cpu_bf16 else self.sdpa)(attn, hidden_states, *args, **kwargs)


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero: attention over the token axis of (N, L, D)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, heads=num_heads, dim_head=hidden_size // num_heads, bias=True,
                              upcast_softmax=True, processor=SDPAOrExplicitOnCPUbf16())
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(hidden_size, inner_dim=int(hidden_size * mlp_ratio), activation_fn="gelu-approximate")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (N * g, L, D), c (N, D): attention within each of the N * g sequences, each group of g modulated by
        its row of c (DiT: g = 1)."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=1)
        grouped = per_condition(x, c)  # (N, g * L, D), a view of x
        h = modulate(per_condition(self.norm1(x), c), shift_a, scale_a).view_as(x)
        grouped = grouped + gate_a.unsqueeze(1) * per_condition(self.attn(h), c)
        h = modulate(per_condition(self.norm2(grouped), c), shift_m, scale_m)
        return (grouped + gate_m.unsqueeze(1) * self.mlp(h)).view_as(x)


class FinalLayer(nn.Module):
    """adaLN + linear to p*p*C_out values per token."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (N * g, L, D), c (N, D), as DiTBlock's."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(per_condition(self.norm(x), c), shift, scale)).view(*x.shape[:2], -1)


def init_weights(model: nn.Module) -> None:
    """DiT's initialisation: xavier linears, N(0, 0.02) embeddings, and zero adaLN and output layers, so every
    block starts as the identity and the output is exactly zero."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    w = model.patch_embed.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(model.patch_embed.bias)
    emb = model.condition
    if emb.label_embed is not None:
        nn.init.normal_(emb.label_embed.embedding_table.weight, std=0.02)
    nn.init.normal_(emb.time_embed.linear_1.weight, std=0.02)
    nn.init.normal_(emb.time_embed.linear_2.weight, std=0.02)
    for block in model.blocks:
        nn.init.zeros_(block.adaLN_modulation[-1].weight)
        nn.init.zeros_(block.adaLN_modulation[-1].bias)
    for layer in (model.final.adaLN_modulation[-1], model.final.linear):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def check_grid(x: torch.Tensor, patch_size: int, where: str) -> None:
    h, w = x.shape[-2:]
    if h % patch_size or w % patch_size:
        raise ValueError(f"{where}: latent grid {h}x{w} is not divisible by the patch size {patch_size}")


# ----------------------------------------------------------------------------- the model


class DiT(ModelMixin, ConfigMixin):
    """forward(x (N, C, h, w), t (N,), y (N,) or None) -> (N, 2C or C, h, w)."""

    @register_to_config
    def __init__(self, in_channels: int = 8, patch_size: int = 2, hidden_size: int = 1152, depth: int = 28,
                 num_heads: int = 16, mlp_ratio: float = 4.0, num_classes: int = 1000,
                 class_dropout_prob: float = 0.1, learn_sigma: bool = True):
        super().__init__()
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.condition = ConditionEmbedder(hidden_size, num_classes, class_dropout_prob)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(hidden_size, patch_size, self.out_channels)
        init_weights(self)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        p = self.config.patch_size
        check_grid(x, p, "DiT")
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, gh*gw, D)
        tokens = tokens + sincos_2d(tokens.shape[-1], gh, gw, x.device).to(tokens.dtype)
        c = self.condition(t, y, tokens.dtype)  # (N, D)
        for block in self.blocks:
            tokens = block(tokens, c)
        out = self.final(tokens, c)  # (N, gh*gw, p*p*C_out)
        return rearrange(out, "n (h w) (p q c) -> n c (h p) (w q)", h=gh, w=gw, p=p, q=p)
