"""OmniTokenizer: one transformer tokenizer for images and videos (paper section 3.1.1).

    pixels (B, 3, T, H, W), T = 1 + k*t, an image has T = 1
      -> patchify: first frame in p x p patches, later frames in t x p x p tubes, two linear embeddings
      -> encoder: spatial blocks on each latent frame (window or global attention, 2-D RoPE)
                  causal PEG (depth-wise 3x3x3 conv, padded only on the past side)
                  temporal blocks on each spatial position (causal attention + ALiBi)
      -> head: VQ (l2-normalised factorised codes) or KL (diagonal Gaussian), latents (B, C, T', h, w)
      -> decoder: the mirror image (PEG, temporal blocks, spatial blocks), two linear projections to pixels
                  (optionally a 3x3 deblocking convolution per frame across patch edges: deblock_channels)

Because patch embedding, spatial blocks and the head act on one latent frame at a time, and PEG and
temporal attention only look at the past, latent frame j depends on input frames 0..1+jt-1 only, and
an image is tokenised exactly as the first frame of a video that starts with it.

Any size: frames are padded (replicate) to a multiple of p and cropped back; window attention pads its
token grid to whole windows and masks the padding out of every window, so padding never leaks into
real tokens. Long videos: `max_tokens` processes the spatial stage in chunks of frames and the temporal
stage in chunks of spatial positions, which is exact (no approximation), so memory is bounded by the
chunk, not by the length of the video. Large frames: `enable_tiling()` encodes and decodes overlapping spatial
tiles blended across the overlap (tokenizer/tiling.py), so memory is bounded by the tile, not by the frame.

The model is a diffusers model (ModelMixin + ConfigMixin): config.json holds OmniTokenizerConfig's fields, encode
gives the KL head's posterior as `latent_dist`, decode a DecoderOutput, as diffusers' AutoencoderKL does.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME
from einops import rearrange
from huggingface_hub import create_repo

from shared.atomic import follow_umask
from shared.config import build
from shared.memory import release_free_heap
from shared.provenance import earlier_version

from .config import OmniTokenizerConfig, model_config
from .model_card import write_card
from .quantizers import DiagonalGaussian, GaussianHead, VectorQuantizer
from .tiling import blend_tiles


# ----------------------------------------------------------------------------- position encodings


def rope_2d(h: int, w: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (h, w, head_dim/2): half of each head rotates with the row, half with the column."""
    quarter = head_dim // 4
    freqs = theta ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    rows = torch.arange(h, device=device, dtype=torch.float32)[:, None, None] * freqs
    cols = torch.arange(w, device=device, dtype=torch.float32)[None, :, None] * freqs
    angles = torch.cat([rows.expand(h, w, quarter), cols.expand(h, w, quarter)], -1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x by the angles of cos / sin, in x's dtype: under bf16 autocast, fp32 tables promoted q and k to fp32
    (twice their memory, and a cast back for the attention matmul). Same held-out PSNR to 0.005 dB (measured)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def alibi_bias(heads: int, length: int, causal: bool, device) -> torch.Tensor:
    """(heads, T, T) additive bias: -slope * distance, and -inf on the future when causal."""
    slopes = 2.0 ** (-8.0 * torch.arange(1, heads + 1, device=device, dtype=torch.float32) / heads)
    pos = torch.arange(length, device=device, dtype=torch.float32)
    distance = pos[:, None] - pos[None, :]  # query minus key
    bias = -slopes[:, None, None] * distance.abs()
    if causal:
        bias = bias.masked_fill(distance < 0, float("-inf"))
    return bias


def causal_mask(length: int, device) -> torch.Tensor:
    """(1, T, T) additive mask, -inf on the future: the release's temporal attention on its SDPA path (no ALiBi)."""
    future = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(1, length, length, device=device).masked_fill(future, float("-inf"))


class RelativePositionMLP(nn.Module):
    """The release's position bias for global attention (release_spatial_position: relative): an MLP from the signed
    log distance between two tokens (rows, columns) to one additive bias per head, (heads, h*w, h*w)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, dim), nn.LeakyReLU(0.1), nn.Linear(dim, dim), nn.LeakyReLU(0.1),
                                 nn.Linear(dim, heads))

    def forward(self, h: int, w: int, device) -> torch.Tensor:
        grid = torch.stack(torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                                          indexing="ij")).flatten(1).T  # (h*w, 2): row, column
        rel = grid[:, None] - grid[None]
        rel = torch.sign(rel) * torch.log(rel.abs() + 1)
        return self.net(rel.float()).permute(2, 0, 1)


# ----------------------------------------------------------------------------- building blocks


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
           scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v, scale 1/sqrt(d) unless given. The bias (relative position, ALiBi, causal and
    padding masks) always takes part. SDPA on CUDA or without a bias; on the CPU with a bias the explicit form is used,
    measured 2-3x (fp32) and 3-5x (bf16) faster than SDPA with the same mask for these short sequences."""
    if bias is None or q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype), scale=scale)
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale or q.shape[-1] ** -0.5).add_(bias.to(q.dtype))
    return torch.matmul(scores.softmax(-1), v)


class Attention(nn.Module):
    """Multi-head attention over the second-to-last axis.

    release (the release's global and temporal attention): keys and values from `context` (the block's input before
    its norm; queries from the normalised input), q and k scaled to unit length after RoPE, times a learned scale per
    channel, at a fixed temperature of 8."""

    COSINE_TEMPERATURE = 8.0

    def __init__(self, dim: int, heads: int, release: bool = False):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.release = release
        if release:
            self.q_scale, self.k_scale = nn.Parameter(torch.ones(dim // heads)), nn.Parameter(torch.ones(dim // heads))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, context: torch.Tensor | None = None) -> torch.Tensor:
        d = x.shape[-1]
        if x.shape[-2] == 1:  # one key: its softmax weight is exactly 1, the output is its value
            return self.proj(F.linear(x if context is None else context, self.qkv.weight[2 * d :]))
        if context is None:
            q, k, v = rearrange(self.qkv(x), "... l (three h d) -> three ... h l d", three=3, h=self.heads)
        else:
            q = rearrange(F.linear(x, self.qkv.weight[:d]), "... l (h d) -> ... h l d", h=self.heads)
            k, v = rearrange(F.linear(context, self.qkv.weight[d:]), "... l (two h d) -> two ... h l d", two=2, h=self.heads)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        scale = None
        if self.release:
            q, k = F.normalize(q, dim=-1) * self.q_scale, F.normalize(k, dim=-1) * self.k_scale
            scale = self.COSINE_TEMPERATURE
        return self.proj(rearrange(attend(q, k, v, bias, scale), "... h l d -> ... l (h d)"))


class GEGLU(nn.Module):
    def __init__(self, dim: int, mult: float):
        super().__init__()
        inner = int(dim * mult * 2 / 3)
        self.proj_in = nn.Linear(dim, 2 * inner)
        self.proj_out = nn.Linear(inner, dim)
        # Without autograd the inner width is computed zero-padded to a multiple of 64 where that adds at most 1/16
        # of it (`paper`: 1365 -> 1408): the same result, and oneDNN's bf16 products ran 1.3x faster at the aligned
        # width, the compiled `paper` tokenizer 1.11-1.16x (measured). Narrower models (tiny, small) would pay 13 %
        # more FLOPs; training (not measured) would keep the padded copies for the backward pass.
        pad = -inner % 64
        self.pad = pad if 16 * pad <= inner else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the value and gate halves of proj_in as two products with contiguous outputs: chunking one product's
        # output gave strided halves that cost a copy each (GEGLU 2x faster in CPU bf16, 7 % in fp32; measured)
        w, b = self.proj_in.weight, self.proj_in.bias
        n = w.shape[0] // 2
        value_w, value_b, gate_w, gate_b = w[:n], b[:n], w[n:], b[n:]
        if torch.is_grad_enabled():
            return self.proj_out(F.linear(x, value_w, value_b) * F.gelu(F.linear(x, gate_w, gate_b)))
        out_w, pad = self.proj_out.weight, self.pad
        if pad:  # zero rows give value = gate = 0, GELU(0) = 0, and meet zero columns of proj_out
            value_w, gate_w = F.pad(value_w, (0, 0, 0, pad)), F.pad(gate_w, (0, 0, 0, pad))
            value_b, gate_b, out_w = F.pad(value_b, (0, pad)), F.pad(gate_b, (0, pad)), F.pad(out_w, (0, pad))
        value, gate = F.linear(x, value_w, value_b), F.linear(x, gate_w, gate_b)
        # GELU and product in place: two inner-width tensors live instead of three (a long clip's peak)
        return F.linear(value.mul_(torch.ops.aten.gelu_(gate)), out_w, self.proj_out.bias)


class SpatialBlock(nn.Module):
    """Pre-norm transformer block over the tokens of one frame (N, h, w, D): window or global attention.

    release: the release's block. A global one has the release's attention (Attention), RoPE or (position
    "relative") an MLP position bias that takes part only with position_bias (its explicit path), and its own PEG,
    which the stack applies across frames before the block; a window one has no RoPE."""

    def __init__(self, dim: int, heads: int, ff_mult: float, window: int | None, release: bool = False,
                 position: str = "rope", position_bias: bool = False):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn, self.ff = Attention(dim, heads, release=release and not window), GEGLU(dim, ff_mult)
        self.window = window
        self.uses_rope = not release or (not window and position == "rope")
        self.peg = CausalPEG(dim) if release and not window else None
        self.position = RelativePositionMLP(dim, heads) if release and not window and position == "relative" else None
        self.position_bias = position_bias and self.position is not None
        if window:  # Swin-style relative position bias, one table per block
            self.rel_bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
            nn.init.trunc_normal_(self.rel_bias, std=0.02)
            coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
            rel = (coords[:, :, None] - coords[:, None, :]) + (window - 1)
            self.register_buffer("rel_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        y = self.norm1(x)
        rope = rope if self.uses_rope else None
        y = self._window_attention(y, rope) if self.window else self._global_attention(y, rope, x)
        x = x + y
        return x + self.ff(self.norm2(x))

    def _global_attention(self, y, rope, x):
        n, h, w, d = y.shape
        rope = None if rope is None else tuple(r.reshape(h * w, -1) for r in rope)
        bias = self.position(h, w, y.device) if self.position_bias else None
        context = x.reshape(n, h * w, d) if self.attn.release else None
        return self.attn(y.reshape(n, h * w, d), bias=bias, rope=rope, context=context).view(n, h, w, d)

    def _window_attention(self, y, rope):
        n, h, w, d = y.shape
        ws = self.window
        ph, pw = -h % ws, -w % ws
        y = F.pad(y, (0, 0, 0, pw, 0, ph))
        part = "b (nh s1) (nw s2) c -> b (nh nw) (s1 s2) c"
        windows = rearrange(y, part, s1=ws, s2=ws)  # (N, nW, ws*ws, D)
        if rope is not None:
            rope = tuple(rearrange(F.pad(r, (0, 0, 0, pw, 0, ph))[None], part, s1=ws, s2=ws)[0][:, None]
                         for r in rope)  # (nW, 1, L, d/2)
        bias = self.rel_bias[self.rel_index].permute(2, 0, 1)  # (heads, L, L)
        if ph or pw:  # keys that are padding get -inf in every window
            valid = torch.zeros(h + ph, w + pw, dtype=torch.bool, device=y.device)
            valid[:h, :w] = True
            valid = rearrange(valid[None, :, :, None], part, s1=ws, s2=ws)[0, :, :, 0]  # (nW, L)
            bias = bias[None] + torch.zeros_like(valid, dtype=bias.dtype).masked_fill(~valid, float("-inf"))[:, None, None, :]
        out = self.attn(windows, bias=bias, rope=rope)
        out = rearrange(out, "b (nh nw) (s1 s2) c -> b (nh s1) (nw s2) c", nh=(h + ph) // ws, s1=ws, s2=ws)
        return out[:, :h, :w]


class TemporalBlock(nn.Module):
    """Pre-norm transformer block over the latent frames of one spatial position (N, T', D).

    release: the release's block, the release's attention (Attention) and its own PEG on the release's scrambled
    axes, which the stack applies to the whole clip before the block."""

    def __init__(self, dim: int, heads: int, ff_mult: float, release: bool = False):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn, self.ff = Attention(dim, heads, release=release), GEGLU(dim, ff_mult)
        self.peg = CausalPEG(dim, scrambled=True) if release else None

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), bias=bias, context=x if self.attn.release else None)
        return x + self.ff(self.norm2(x))


class CausalPEG(nn.Module):
    """Position-encoding generator: residual depth-wise 3x3x3 conv, zero-padded on the past side only.

    scrambled: the release's PEG before a temporal block, which reads its (B h w, T', D) tokens as (B, T', h, w, D):
    the conv runs over axes that mix spatial positions and frames, past and future (not causal across frames; at
    once, whatever frames_per_chunk)."""

    def __init__(self, dim: int, scrambled: bool = False):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, 3, groups=dim)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.scrambled = scrambled

    def forward(self, x: torch.Tensor, frames_per_chunk: int | None = None, in_place: bool = False) -> torch.Tensor:
        """x (B, T', h, w, D) plus the conv of its past, `frames_per_chunk` latent frames at a time (None: at once).
        in_place (no autograd): x is overwritten with the result, the chunks taken last to first so that each
        still reads its unchanged past; no second clip-sized tensor."""
        b, t, h, w, d = x.shape
        if self.scrambled:
            y = self._conv(x.permute(0, 2, 3, 1, 4).reshape(b, t, h, w, d), 2)
            y = y.reshape(b, h, w, t, d).permute(0, 3, 1, 2, 4)
            return x.add_(y) if in_place else x + y
        if frames_per_chunk is None or t <= frames_per_chunk:
            return x.add_(self._conv(x, 2)) if in_place else x + self._conv(x, 2)
        out = x if in_place else torch.empty_like(x)
        for start in reversed(range(0, t, frames_per_chunk)):
            stop = min(t, start + frames_per_chunk)
            past = min(2, start)  # frames before the slice that its outputs see; zero padding before frame 0
            out[:, start:stop] = x[:, start:stop] + self._conv(x[:, start - past : stop], 2 - past)
        return out

    def _conv(self, x: torch.Tensor, pad_past: int) -> torch.Tensor:
        y = self.conv(F.pad(x.permute(0, 4, 1, 2, 3), (1, 1, 1, 1, pad_past, 0)))
        return y.permute(0, 2, 3, 4, 1)


class PatchEmbed(nn.Module):
    """A linear embedding of flattened patches (or tubes), as in ViT and DiT.

    The public release wraps it in LayerNorms (LN -> Linear -> LN). Over raw pixels a LayerNorm removes
    each patch's mean brightness and contrast, and one right after the (bias-free at start) Linear is
    scale-invariant too: a constant patch at -0.9 and one at -0.5 embed the same, so the decoder has to
    guess brightness, and fails on photos unlike its training set. The transformer blocks are pre-norm,
    so nothing else needs the normalisation. release: the release's LN -> Linear -> LN, over pixels halved to
    its range [-0.5, 0.5].
    """

    def __init__(self, in_dim: int, dim: int, release: bool = False):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.release = release
        if release:
            self.norm_in, self.norm_out = nn.LayerNorm(in_dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.release:
            return self.norm_out(self.proj(self.norm_in(x * 0.5)))
        return self.proj(x)


class PixelDeblock(nn.Module):
    """Colours + c feature channels per pixel (B, 3 + c, T, H, W) -> colours (B, 3, T, H, W): the colours plus a 3x3
    convolution over all channels of each frame, so that pixels on both sides of a patch edge are painted from both
    patches' tokens. Per frame (2-D), so the decoder stays causal in time; `rows` frames at a time (None: all)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 3, 3, padding=1, padding_mode="replicate")

    def forward(self, x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        b, t = x.shape[0], x.shape[2]
        out = x.new_empty(b, 3, *x.shape[2:])
        step = t if rows is None else max(1, rows)
        for j in range(0, t, step):
            part = x[:, :, j : j + step]
            n = part.shape[2]
            frames = rearrange(part, "b c t h w -> (b t) c h w")
            fixed = frames[:, :3] + self.conv(frames)
            out[:, :, j : j + n] = rearrange(fixed, "(b t) c h w -> b c t h w", b=b, t=n)
        return out


def frames_per_chunk(max_tokens: int | None, tokens_per_row: int) -> int | None:
    """How many rows of `tokens_per_row` tokens fit in max_tokens (at least one); None: no chunking."""
    return None if max_tokens is None else max(1, max_tokens // tokens_per_row)


def chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rows: int | None, dim: int = 0,
            in_place: bool = False) -> torch.Tensor:
    """fn over x in slices of `rows` along `dim` (fn must treat them independently and keep that axis); None:
    one call. The slices' results are written into one output tensor, so that memory holds the input, the
    output and one slice's work, not a list of results and their concatenation as well. in_place (no autograd,
    fn keeps the shape): the output is x itself, so memory holds one clip-sized tensor, not two."""
    size = x.shape[dim]
    if rows is None or size <= rows:
        return fn(x)
    out = x if in_place else None
    for start in range(0, size, rows):
        part = fn(x.narrow(dim, start, min(rows, size - start)))
        if out is None:
            shape = list(part.shape)
            shape[dim] = size
            out = part.new_empty(shape)
        out.narrow(dim, start, part.shape[dim]).copy_(part)
        del part
    release_free_heap()  # the slices' freed holes, before the next stage allocates in its own pattern
    return out


class SpaceTimeStack(nn.Module):
    """Spatial blocks (per latent frame) and temporal blocks (per position, after a causal PEG).

    `order` is "st" for the encoder (space then time) and "ts" for the decoder (time then space). Release-compatible
    (cfg.release_compatible): a PEG before every global spatial block and every temporal block instead of one before
    the temporal blocks, and a norm after the first stage as well as after the last.
    """

    def __init__(self, cfg: OmniTokenizerConfig, spatial: str, temporal: int, order: str):
        super().__init__()
        self.cfg, self.order = cfg, order
        release = cfg.release_compatible
        self.spatial = nn.ModuleList(
            SpatialBlock(cfg.dim, cfg.heads, cfg.ff_mult, cfg.window_size if kind == "w" else None, release,
                         cfg.release_spatial_position, position_bias=not cfg.release_sdpa)
            for kind in spatial
        )
        self.peg = None if release else CausalPEG(cfg.dim)
        self.temporal = nn.ModuleList(TemporalBlock(cfg.dim, cfg.heads, cfg.ff_mult, release) for _ in range(temporal))
        self.stage_norm = nn.LayerNorm(cfg.dim) if release else None
        self.norm = nn.LayerNorm(cfg.dim)

    def __getstate__(self):
        """Copies and pickles run eagerly: a forward set by OmniTokenizer.compile_for_inference is compiled for this
        instance, and a copy carrying it would compute with this instance's weights."""
        state = dict(super().__getstate__())
        state.pop("forward", None)
        return state

    def _runs(self, blocks: nn.ModuleList, peg: CausalPEG | None) -> list[tuple[CausalPEG | None, list[nn.Module]]]:
        """(PEG or None, blocks) in order: all the blocks after the stack's PEG, or (release) each after its own."""
        return [(block.peg, [block]) for block in blocks] if self.cfg.release_compatible else [(peg, list(blocks))]

    def _space(self, x: torch.Tensor, max_tokens: int | None, in_place: bool) -> torch.Tensor:
        b, t, h, w, d = x.shape
        rope = rope_2d(h, w, d // self.cfg.heads, self.cfg.rope_theta, x.device)
        rows = frames_per_chunk(max_tokens, h * w)
        for peg, blocks in self._runs(self.spatial, None):
            if peg is not None:  # the release's, across frames
                x = peg(x, frames_per_chunk(max_tokens, b * h * w), in_place=in_place)
                in_place = not torch.is_grad_enabled()

            def run(frames, blocks=blocks):
                for block in blocks:
                    frames = block(frames, rope)
                return frames

            x = chunked(run, x.reshape(b * t, h, w, d), rows, in_place=in_place).view(b, t, h, w, d)
            in_place = not torch.is_grad_enabled()
        return x

    def _time(self, x: torch.Tensor, max_tokens: int | None, in_place: bool) -> torch.Tensor:
        b, t, h, w, d = x.shape
        if self.cfg.release_compatible and self.cfg.release_sdpa:  # its SDPA path: no ALiBi
            bias = causal_mask(t, x.device) if self.cfg.causal else None
        else:
            bias = alibi_bias(self.cfg.heads, t, self.cfg.causal, x.device)
        # slices of spatial positions taken from (b, t, h*w, d) directly: no whole-clip transposed copy; after the
        # PEG, x is this stack's own tensor, so without autograd the slices' results overwrite it
        rows = frames_per_chunk(max_tokens, b * t)
        for peg, blocks in self._runs(self.temporal, self.peg):
            x = peg(x, frames_per_chunk(max_tokens, b * h * w), in_place=in_place)

            def run(positions, blocks=blocks):  # (b, t, n, d): n spatial positions, each a sequence over time
                n = positions.shape[2]
                seqs = rearrange(positions, "b t n d -> (b n) t d")
                for block in blocks:
                    seqs = block(seqs, bias)
                return rearrange(seqs, "(b n) t d -> b t n d", b=b, n=n)

            in_place = not torch.is_grad_enabled()
            x = chunked(run, x.view(b, t, h * w, d), rows, dim=2, in_place=in_place).view(b, t, h, w, d)
        return x

    def _norm(self, norm: nn.LayerNorm, x: torch.Tensor, max_tokens: int | None, in_place: bool) -> torch.Tensor:
        b, t, h, w, d = x.shape
        return chunked(norm, x.reshape(b * t, h, w, d), frames_per_chunk(max_tokens, h * w), in_place=in_place).view(b, t, h, w, d)

    def forward(self, x: torch.Tensor, max_tokens: int | None = None, in_place: bool = False) -> torch.Tensor:
        """x (B, T', h, w, D). Without autograd every stage after the first writes into the first one's output, and
        with in_place (the caller hands x over) the first one too: a long clip then costs one clip of tokens."""
        own = in_place and not torch.is_grad_enabled()
        for i, stage in enumerate(self.order):
            x = self._space(x, max_tokens, own) if stage == "s" else self._time(x, max_tokens, own)
            own = not torch.is_grad_enabled()
            if i == 0 and self.stage_norm is not None:
                x = self._norm(self.stage_norm, x, max_tokens, own)
        return self._norm(self.norm, x, max_tokens, own)


# ----------------------------------------------------------------------------- the tokenizer


@dataclass
class EncoderOutput:
    """What encode gives: diffusers' AutoencoderKLOutput (`latent_dist`, kl) and VQEncoderOutput (`latents`) in one,
    with what training and the VQ head add."""
    latents: torch.Tensor  # (B, C, T', h, w): quantised codes (vq) or posterior mode/sample (kl)
    loss: torch.Tensor  # the head's loss term: eq. (1) or eq. (2), weighted
    size: tuple[int, int, int]  # (T, H, W) of the input, for decode(..., size=...)
    indices: torch.Tensor | None = None  # (B, T', h, w) long, vq only
    latent_dist: DiagonalGaussian | None = None  # kl only: the posterior, tensors (B, C, T', h, w); .sample(), .mode()
    stats: dict = field(default_factory=dict)


def check_saved_config(folder: Path) -> None:
    """The config.json of a save_pretrained folder, checked before diffusers reads it (diffusers ignores an unknown
    key with a warning and checks no types): a file of an earlier version, another class, an unknown field or a value
    of the wrong type is an error naming the file."""
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: not found; expected a folder written by OmniTokenizer.save_pretrained "
                                f"({CONFIG_NAME} + {SAFETENSORS_WEIGHTS_NAME})")
    try:
        values = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_file}: not valid JSON ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{config_file}: expected a JSON object, got {type(values).__name__}")
    if "_class_name" not in values and "class" in values:
        raise ValueError(earlier_version(config_file, "its class under 'class', its weights in model.safetensors",
                                         "train it again (python -m tokenizer.train): this version saves and loads "
                                         "through diffusers' ModelMixin"))
    if values.get("_class_name") != OmniTokenizer.__name__:
        raise ValueError(f"{config_file}: holds a {values.get('_class_name')!r}, not an OmniTokenizer")
    build(OmniTokenizerConfig, {k: v for k, v in values.items() if not k.startswith("_")}, str(config_file))
    if not (folder / SAFETENSORS_WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{folder / SAFETENSORS_WEIGHTS_NAME}: not found beside {CONFIG_NAME}")


class OmniTokenizer(ModelMixin, ConfigMixin, AutoencoderMixin):
    """The tokenizer as a diffusers model: save_pretrained / from_pretrained / push_to_hub (config.json with the
    fields of OmniTokenizerConfig + diffusion_pytorch_model.safetensors), encode -> `latent_dist` (kl) or codes (vq),
    decode -> DecoderOutput, `config.scaling_factor`, enable_tiling / enable_slicing.

        vae = OmniTokenizer.from_pretrained("runs/small/tokenizer/kl/final")
        z = vae.encode(x).latent_dist.sample() * vae.config.scaling_factor
        x_hat = vae.decode(z / vae.config.scaling_factor).sample
    """

    def __init__(self, **config):
        """The keyword arguments are OmniTokenizerConfig's fields (its defaults where not given), type-checked."""
        super().__init__()
        cfg = build(OmniTokenizerConfig, config, "OmniTokenizer config")
        self.register_to_config(**dataclasses.asdict(cfg))
        p, t, d = cfg.patch_size, cfg.temporal_patch_size, cfg.dim
        self.embed_first = PatchEmbed(3 * p * p, d, cfg.release_compatible)
        self.embed_rest = PatchEmbed(3 * t * p * p, d, cfg.release_compatible)
        self.encoder = SpaceTimeStack(cfg, cfg.encoder_spatial, cfg.encoder_temporal, order="st")
        if cfg.quantizer == "vq":
            self.head = VectorQuantizer(d, cfg.latent_dim, cfg.codebook_size, cfg.codebook_weight,
                                        cfg.commitment_weight, cfg.dead_code_steps,
                                        unit_codes=not cfg.release_compatible)
        else:
            self.head = GaussianHead(d, cfg.latent_dim, cfg.kl_weight, cfg.logvar_min, cfg.logvar_max)
        self.post_head = nn.Linear(cfg.latent_dim, d)
        self.decoder = SpaceTimeStack(cfg, cfg.decoder_spatial, cfg.decoder_temporal, order="ts")
        c = 3 + cfg.deblock_channels  # colours, then the deblocking features
        self.out_first = nn.Linear(d, c * p * p)
        self.out_rest = nn.Linear(d, c * t * p * p)
        self.deblock = PixelDeblock(c) if cfg.deblock_channels else None
        self.apply(self._init_weights)
        if self.deblock is not None:
            nn.init.zeros_(self.deblock.conv.weight)
            nn.init.zeros_(self.deblock.conv.bias)
        self.use_slicing = self.use_tiling = False
        self.tile_sample_min_height = self.tile_sample_min_width = 256
        self.tile_sample_stride_height = self.tile_sample_stride_width = 192
        self.tile_max_tokens: int | None = None

    # diffusers' ConfigMixin reads a model's config keys from its __init__ signature: the config's fields
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
           for f in dataclasses.fields(OmniTokenizerConfig)])

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> "OmniTokenizer":
        """diffusers' from_pretrained. A local folder's config.json is checked first (check_saved_config), and weights that
        miss a tensor of the model, hold one it lacks or one of another shape are an error naming the folder
        (diffusers would warn and leave a missing tensor unset)."""
        folder = Path(pretrained_model_name_or_path) / kwargs.get("subfolder", "")
        if not folder.is_dir():  # a hub name: diffusers' own checks
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        check_saved_config(folder)
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path,
                                                  **{**kwargs, "output_loading_info": True})
        except (ValueError, OSError) as exc:
            raise ValueError(f"{folder}: its weights cannot be loaded into the model its {CONFIG_NAME} describes "
                             f"({exc.__class__.__name__}: {str(exc)[:300]})") from None
        wrong = {k: info[k][:3] for k in ("missing_keys", "unexpected_keys") if info[k]}
        if wrong:
            raise ValueError(f"{folder / SAFETENSORS_WEIGHTS_NAME}: does not match {CONFIG_NAME} ({wrong})")
        return (model, info) if kwargs.get("output_loading_info") else model

    def to_json_string(self) -> str:
        """diffusers' config.json without `_name_or_path` (the folder the weights were loaded from): a saved folder's
        bytes, and so its sha256 (what extraction and pipelines record), depend on the model alone."""
        values = json.loads(super().to_json_string())
        values.pop("_name_or_path", None)
        return json.dumps(values, indent=2, sort_keys=True) + "\n"

    HUB_ARGUMENTS = ("repo_id", "token", "private", "commit_message", "create_pr")  # save_pretrained's, for an upload

    def save_pretrained(self, save_directory: str | Path, *, card: dict | None = None, push_to_hub: bool = False,
                        **kwargs) -> Path:
        """diffusers' save_pretrained, then README.md, the model card (tokenizer.model_card) from the config and `card`:
        what is known of the weights' training, validation or source (write_card's arguments); returns the folder, its
        files given the umask's mode (diffusers leaves 0600). push_to_hub (with diffusers' repo_id, token, private,
        commit_message, create_pr): the folder as saved, this card its README.md (diffusers would upload its own)."""
        hub = {name: kwargs.pop(name) for name in self.HUB_ARGUMENTS if name in kwargs}
        super().save_pretrained(save_directory, **kwargs)
        write_card(save_directory, self, **(card or {}))
        follow_umask(save_directory)
        if push_to_hub:
            self._upload(save_directory, **{"repo_id": Path(save_directory).name, **hub})
        return Path(save_directory)

    def push_to_hub(self, repo_id: str, commit_message: str | None = None, private: bool | None = None,
                    token: str | None = None, create_pr: bool = False, safe_serialization: bool = True,
                    variant: str | None = None, subfolder: str | None = None, card: dict | None = None):
        """diffusers' push_to_hub, the upload's README.md our model card (save_pretrained's `card`), not diffusers'."""
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, card=card, safe_serialization=safe_serialization, variant=variant)
            return self._upload(folder, repo_id, token=token, private=private, commit_message=commit_message,
                                create_pr=create_pr, subfolder=subfolder)

    def _upload(self, folder: str | Path, repo_id: str, token: str | None = None, private: bool | None = None,
                **upload):
        repo_id = create_repo(repo_id, exist_ok=True, private=private, token=token).repo_id
        return self._upload_folder(folder, repo_id, token=token, **upload)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    EDGE_LAYERS = ("embed_first", "embed_rest", "head.proj", "post_head", "out_first", "out_rest", "deblock")

    def parameter_groups(self, edge_lr_scale: float = 1.0) -> list[dict]:
        """Optimizer groups: the layers between pixels or latents and the model width (EDGE_LAYERS), with
        "lr_scale" = edge_lr_scale (shared.training.set_lr applies it), and the rest. One group when the scale is 1: the
        optimizer state of a checkpoint written before the groups existed then loads as it is."""
        if not edge_lr_scale > 0:
            raise ValueError(f"edge_lr_scale must be > 0, got {edge_lr_scale}")
        if edge_lr_scale == 1.0:
            return [{"params": list(self.parameters())}]
        edge = tuple(f"{name}." for name in self.EDGE_LAYERS)
        named = list(self.named_parameters())
        return [{"params": [p for n, p in named if not n.startswith(edge)]},
                {"params": [p for n, p in named if n.startswith(edge)], "lr_scale": edge_lr_scale}]

    @classmethod
    def from_scale(cls, config: str | OmniTokenizerConfig = "small", **overrides) -> "OmniTokenizer":
        """A fresh model from a scale name ("tiny", "small", "paper"), a YAML path or a config object."""
        return cls(**dataclasses.asdict(model_config(config, **overrides)))

    @classmethod
    def from_release(cls, path: str, sdpa: bool = True, trust_pickle: bool = False) -> "OmniTokenizer":
        """The public release's checkpoint (a Lightning .ckpt, VQ or KL) as a release-compatible model; sdpa=False
        for one trained on the release's explicit attention path (its ImageNet-only VQVAE). docs/release_weights.md."""
        from .convert_release import load_release

        return load_release(path, sdpa=sdpa, trust_pickle=trust_pickle)

    def compile_for_inference(self) -> "OmniTokenizer":
        """torch.compile the encoder and decoder stacks for inference, with the weights frozen into the compiled code
        (inductor's `freezing`: constants folded, and on the CPU the linear layers' weights packed once for oneDNN
        in the autocast dtype instead of cast on every call). Returns self; the weights and state_dict are unchanged.

        For a model whose weights are final (after from_pretrained): later changes to the weights are not seen by
        calls without autograd. Each new input shape compiles anew (27-46 s at `paper`, 256², on a 2-core CPU), so
        it pays for many calls at one shape (extraction, evaluation, benchmarks). A copy (copy.deepcopy, pickle)
        runs eagerly: compile it again. Speed and output against eager: README, Speed."""
        from torch._inductor import config as inductor

        for stack in (self.encoder, self.decoder):
            compiled = torch.compile(stack.forward, dynamic=False)

            def forward(*args, _compiled=compiled, **kwargs):
                # compilation happens at a call, and inductor reads `freezing` there (torch.compile's options= did
                # not reach it: measured no faster than without), so each call runs under the patch
                with inductor.patch(freezing=True):
                    return _compiled(*args, **kwargs)

            stack.forward = forward
        return self

    # ---- shapes

    def latent_frames(self, num_frames: int) -> int:
        t = self.config.temporal_patch_size
        if num_frames < 1 or (num_frames - 1) % t:
            valid = ", ".join(str(1 + k * t) for k in range(5))
            raise ValueError(f"a clip must have 1 + k*{t} frames ({valid}, ...); got {num_frames}. "
                             f"Trim or pad the clip to such a length.")
        return 1 + (num_frames - 1) // t

    def _check_pixels(self, x: torch.Tensor, check_range: bool = True) -> torch.Tensor:
        """(B, 3, T, H, W) in the weights' dtype; clear errors for what would otherwise give silent wrong codes."""
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(f"pixels must be a float tensor in [-1, 1], got {getattr(x, 'dtype', type(x))}")
        if x.dim() == 4:
            x = x.unsqueeze(2)
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"pixels must be (B, 3, T, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
        if 0 in x.shape:
            raise ValueError(f"pixels must not be empty, got shape {tuple(x.shape)}")
        self.latent_frames(x.shape[2])
        x = x.to(self.out_first.weight.dtype)  # fp16 / bf16 / fp64 input: the weights' dtype (autocast still applies)
        lo, hi = torch.aminmax(x)  # NaN propagates to both, an inf to one: no clip-sized isfinite() temporaries
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            raise ValueError("pixels contain NaN or inf; every code of such a sample would be wrong")
        if check_range and (lo < -1.05 or hi > 1.05):
            raise ValueError(f"pixels must be in [-1, 1], got values in [{lo.item():.3g}, {hi.item():.3g}] (uint8-range "
                             f"images: x / 127.5 - 1); pass check_range=False to encode values outside on purpose")
        return x

    # ---- tiling and slicing (diffusers' AutoencoderMixin gives disable_tiling, enable_slicing, disable_slicing)

    def enable_tiling(self, tile_sample_min_height: int | None = None, tile_sample_min_width: int | None = None,
                      tile_sample_stride_height: int | None = None, tile_sample_stride_width: int | None = None,
                      tile_max_tokens: int | None = None) -> None:
        """Encode and decode frames larger than a tile (pixels; default 256 x 256) in overlapping tiles, `stride`
        apart (default 192), blended linearly across the overlap (tokenizer/tiling.py): the encoder's tokens before
        the head, so that the codes and the posterior come from the blended tokens, and the decoder's pixels. Within a
        tile, at most tile_max_tokens tokens are processed at once (the exact frame and position chunks of
        `max_tokens`, which a call's own max_tokens replaces; default: 16 latent frames of a tile). Memory then follows
        the tile, not the frame or the clip. Sizes are multiples of the patch size, a stride below its tile."""
        p = self.config.patch_size
        tile = (tile_sample_min_height or self.tile_sample_min_height, tile_sample_min_width or self.tile_sample_min_width)
        stride = (tile_sample_stride_height or self.tile_sample_stride_height,
                  tile_sample_stride_width or self.tile_sample_stride_width)
        for name, size, step in (("height", tile[0], stride[0]), ("width", tile[1], stride[1])):
            if size % p or step % p or not 0 < step < size:
                raise ValueError(f"tile {name} {size} and stride {step}: both must be multiples of the patch size {p}, "
                                 f"the stride above 0 and below the tile")
        if tile_max_tokens is not None and tile_max_tokens < 1:
            raise ValueError(f"tile_max_tokens must be >= 1, got {tile_max_tokens}")
        self.tile_sample_min_height, self.tile_sample_min_width = tile
        self.tile_sample_stride_height, self.tile_sample_stride_width = stride
        self.tile_max_tokens = tile_max_tokens or 16 * (tile[0] // p) * (tile[1] // p)
        super().enable_tiling()

    def _tiles(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """A tile and its stride in tokens."""
        p = self.config.patch_size
        return ((self.tile_sample_min_height // p, self.tile_sample_min_width // p),
                (self.tile_sample_stride_height // p, self.tile_sample_stride_width // p))

    def _chunk(self, max_tokens: int | None) -> int | None:
        """A call's max_tokens, or the tiles' when tiling is on."""
        return max_tokens if max_tokens is not None or not self.use_tiling else self.tile_max_tokens

    # ---- encode / decode

    def _embed(self, x: torch.Tensor, rows: int | None) -> torch.Tensor:
        """Frames (B, 3, T, H, W), H and W multiples of p, -> tokens (B, T', h, w, D): the first frame in patches,
        the rest in tubes, `rows` latent frames at a time (None: all at once) written into one tensor."""
        p, t = self.config.patch_size, self.config.temporal_patch_size
        first = self.embed_first(rearrange(x[:, :, :1], "b c 1 (h p) (w q) -> b 1 h w (c p q)", p=p, q=p))
        if x.shape[2] == 1:
            return first
        embed = lambda clip: self.embed_rest(rearrange(clip, "b c (n t) (h p) (w q) -> b n h w (c t p q)", t=t, p=p, q=p))  # noqa: E731
        if rows is None:
            return torch.cat([first, embed(x[:, :, 1:])], 1)
        n = (x.shape[2] - 1) // t
        tokens = first.new_empty(first.shape[0], 1 + n, *first.shape[2:])
        tokens[:, :1] = first
        for j in range(0, n, rows):
            tokens[:, 1 + j : 1 + j + rows] = embed(x[:, :, 1 + j * t : 1 + (j + rows) * t])
        return tokens

    def _unembed(self, tokens: torch.Tensor, rows: int | None) -> torch.Tensor:
        """Tokens (B, T', h, w, D) -> frames (B, 3, 1 + (T'-1)t, h*p, w*p), the mirror image of _embed."""
        p, t = self.config.patch_size, self.config.temporal_patch_size
        first = rearrange(self.out_first(tokens[:, :1]), "b 1 h w (c p q) -> b c 1 (h p) (w q)", p=p, q=p)  # c: 3 + deblock
        if tokens.shape[1] == 1:
            return first
        unembed = lambda part: rearrange(self.out_rest(part), "b n h w (c t p q) -> b c (n t) (h p) (w q)", t=t, p=p, q=p)  # noqa: E731
        if rows is None:
            return torch.cat([first, unembed(tokens[:, 1:])], 2)
        n = tokens.shape[1] - 1
        frames = first.new_empty(*first.shape[:2], 1 + n * t, *first.shape[3:])
        frames[:, :, :1] = first
        for j in range(0, n, rows):
            frames[:, :, 1 + j * t : 1 + (j + rows) * t] = unembed(tokens[:, 1 + j : 1 + j + rows])
        return frames


    def _encode_tokens(self, x: torch.Tensor, max_tokens: int | None) -> torch.Tensor:
        """Pixels (B, 3, T, H, W), H and W multiples of p -> encoder tokens (B, T', h, w, D), before the head: one item
        at a time (slicing), in tiles (tiling) or at once."""
        if self.use_slicing and x.shape[0] > 1:
            return torch.cat([self._encode_tokens(item, max_tokens) for item in x.split(1)])
        p = self.config.patch_size
        grid, (tile, stride) = (x.shape[-2] // p, x.shape[-1] // p), self._tiles()
        if self.use_tiling and (grid[0] > tile[0] or grid[1] > tile[1]):
            def encode_tile(r0, r1, c0, c1):  # channels first, as blend_tiles takes them
                return self._encode_tokens(x[..., r0 * p : r1 * p, c0 * p : c1 * p], max_tokens).permute(0, 4, 1, 2, 3)

            return blend_tiles(encode_tile, grid, tile, stride, 1).permute(0, 2, 3, 4, 1).contiguous()
        tokens = self._embed(x, frames_per_chunk(max_tokens, x.shape[0] * grid[0] * grid[1]))
        return self.encoder(tokens, max_tokens, in_place=True)

    def encode(self, x: torch.Tensor, sample: bool = False, max_tokens: int | None = None,
               check_range: bool = True, return_dict: bool = True) -> EncoderOutput | tuple:
        """Pixels (B, 3, T, H, W) or (B, 3, H, W) in [-1, 1] -> latents (B, C, T', ceil(H/p), ceil(W/p)).

        sample: draw from the posterior (kl) instead of taking its mode. max_tokens: process in
        chunks of at most this many tokens (same result, bounded memory). check_range: refuse pixels clearly
        outside [-1, 1] (a [0, 255] image, say). return_dict False: diffusers' tuple, (latent_dist,) for kl and
        (latents,) for vq.
        """
        x = self._check_pixels(x, check_range)
        _, _, t_in, h_in, w_in = x.shape
        p = self.config.patch_size
        x = F.pad(x, (0, -w_in % p, 0, -h_in % p, 0, 0), mode="replicate") if (h_in % p or w_in % p) else x
        out = self.head(self._encode_tokens(x, self._chunk(max_tokens)), sample=sample)
        to_channels_first = lambda z: z.permute(0, 4, 1, 2, 3)  # noqa: E731
        posterior = None
        if out.posterior is not None:
            posterior = DiagonalGaussian(to_channels_first(out.posterior.mean), to_channels_first(out.posterior.logvar),
                                         self.config.logvar_min, self.config.logvar_max)
        enc = EncoderOutput(latents=to_channels_first(out.latents), loss=out.loss, size=(t_in, h_in, w_in),
                            indices=out.indices, latent_dist=posterior, stats=out.stats)
        if return_dict:
            return enc
        return (enc.latents if posterior is None else posterior,)

    def _decode_pixels(self, latents: torch.Tensor, max_tokens: int | None) -> torch.Tensor:
        """Latents (B, C, T', h, w) -> pixels (B, 3, 1 + (T'-1)t, h*p, w*p): one item at a time (slicing), in tiles
        (tiling) or at once."""
        if self.use_slicing and latents.shape[0] > 1:
            return torch.cat([self._decode_pixels(item, max_tokens) for item in latents.split(1)])
        b, _, _, h, w = latents.shape
        tile, stride = self._tiles()
        if self.use_tiling and (h > tile[0] or w > tile[1]):
            return blend_tiles(lambda r0, r1, c0, c1: self._decode_pixels(latents[..., r0:r1, c0:c1], max_tokens),
                               (h, w), tile, stride, self.config.patch_size)
        tokens = self.decoder(self.post_head(latents.permute(0, 2, 3, 4, 1)), max_tokens, in_place=True)
        frames = self._unembed(tokens, frames_per_chunk(max_tokens, b * h * w))
        if self.deblock is not None:
            frames = self.deblock(frames, frames_per_chunk(max_tokens, b * h * w))
        return frames

    def decode(self, latents: torch.Tensor, size: tuple[int, int, int] | tuple[int, int] | None = None,
               max_tokens: int | None = None, return_dict: bool = True) -> DecoderOutput | tuple:
        """Latents (B, C, T', h, w) -> DecoderOutput(sample=pixels (B, 3, 1 + (T'-1)t, h*p, w*p)), cropped to `size`
        (H, W or T, H, W); return_dict False: diffusers' tuple (pixels,). Latents (B, C, h, w), an image's as
        diffusers' image pipelines hold them, decode to (B, 3, H, W)."""
        if latents.dim() not in (4, 5) or latents.shape[1] != self.config.latent_dim:
            raise ValueError(f"latents must be (B, {self.config.latent_dim}, T', h, w) or (B, {self.config.latent_dim}, "
                             f"h, w), got {tuple(latents.shape)}")
        image = latents.dim() == 4
        latents = latents.to(self.post_head.weight.dtype)  # the heads give fp32 latents; a bf16 model decodes in bf16
        frames = self._decode_pixels(latents.unsqueeze(2) if image else latents, self._chunk(max_tokens))
        if size is not None:
            if size[-2] > frames.shape[-2] or size[-1] > frames.shape[-1] or (len(size) == 3 and size[0] != frames.shape[2]):
                raise ValueError(f"decode(size={tuple(size)}): the latents decode to {tuple(frames.shape[2:])} "
                                 f"(T, H, W); size can only crop, and T must match")
            frames = frames[..., : size[-2], : size[-1]]
        frames = frames.squeeze(2) if image else frames
        return DecoderOutput(sample=frames) if return_dict else (frames,)

    def decode_indices(self, indices: torch.Tensor, size=None, max_tokens: int | None = None,
                       return_dict: bool = True) -> DecoderOutput | tuple:
        """Code indices (B, T', h, w) -> pixels as decode gives them; vq only. Same as decode(encode(x).latents)."""
        if self.config.quantizer != "vq":
            raise TypeError("decode_indices needs a VQ tokenizer (quantizer='vq')")
        if indices.dim() != 4:
            raise ValueError(f"indices must be (B, T', h, w), got {tuple(indices.shape)}")
        return self.decode(self.head.lookup(indices).permute(0, 4, 1, 2, 3), size, max_tokens, return_dict)

    def forward(self, x: torch.Tensor, sample_posterior: bool | None = None) -> tuple[torch.Tensor, EncoderOutput]:
        """Reconstruction with the input's shape, and the encoder output (loss terms, stats)."""
        sample = self.training if sample_posterior is None else sample_posterior
        enc = self.encode(x, sample=sample)
        x_hat = self.decode(enc.latents, size=enc.size).sample
        return (x_hat.squeeze(2) if x.dim() == 4 else x_hat), enc

    def num_parameters(self, part: str = "all") -> int:
        groups = {
            "encoder": [self.embed_first, self.embed_rest, self.encoder, self.head],
            "decoder": [self.post_head, self.decoder, self.out_first, self.out_rest]
                       + ([self.deblock] if self.deblock is not None else []),
            "all": [self],
        }
        return sum(p.numel() for m in groups[part] for p in m.parameters())
