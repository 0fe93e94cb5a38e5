"""The tokenizer's model configuration (the `model:` section of configs/<scale>.yaml and of a saved config.json)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.config import build, read_yaml, scale_file

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class OmniTokenizerConfig:
    patch_size: int = 8  # p: spatial patch of every frame
    temporal_patch_size: int = 4  # t: frames per tube after the first frame
    dim: int = 512
    heads: int = 8
    ff_mult: float = 4.0  # GEGLU inner width = dim * ff_mult * 2/3
    encoder_spatial: str = "wwww"  # one letter a spatial block: w = window attention, g = global attention
    encoder_temporal: int = 4  # number of temporal blocks
    decoder_temporal: int = 4
    decoder_spatial: str = "wwww"
    causal: bool = True  # temporal attention causal (paper) or plain (Table 9 ablation)
    window_size: int = 8  # tokens per window side
    rope_theta: float = 10000.0
    quantizer: str = "vq"  # "vq" (OmniTokenizer-VQVAE) or "kl" (OmniTokenizer-VAE)
    latent_dim: int = 8
    codebook_size: int = 8192
    codebook_weight: float = 1.0  # lambda_1 of eq. (1)
    commitment_weight: float = 1.0  # lambda_2 of eq. (1)
    dead_code_steps: int = 0  # restart a code no token chose in this many training steps (0: off)
    kl_weight: float = 1e-6  # lambda_3 of eq. (2)
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    # 0: the paper's pixel heads, one linear map per patch, so no output pixel sees a neighbouring patch. c > 0: the
    # heads also paint c feature channels per pixel, and a 3x3 convolution over them and the colours, across patch
    # edges, adds a correction to the colours (zero-initialised: the model starts as the paper's)
    deblock_channels: int = 0
    # diffusers' convention: a diffusion model's latents are the VAE's times this (about 1 / their std), decoded after
    # dividing by it. Measured on a generator's training latents by diffusion_generation.extract_latents and kept in
    # the VAE of its pipeline; 1.0: not measured
    scaling_factor: float = 1.0
    # release-compatible: loads the published weights; not causal across frames. On: the public release's computation
    # (docs/release_weights.md): LayerNorm-Linear-LayerNorm patch embedding over pixels halved to its [-0.5, 0.5], a
    # PEG before every global spatial block (across frames) and every temporal block (on its scrambled axes), cosine
    # attention in global and temporal blocks, window attention without RoPE, a norm after each stage, codes picked by
    # Euclidean distance to unnormalised code vectors. `python -m tokenizer.convert_release` sets it.
    release_compatible: bool = False
    release_spatial_position: str = "rope"  # release only: "rope", or "relative" (its relative-position MLP bias)
    # release only: its SDPA path, which drops the relative-position MLP bias and ALiBi (how it runs on torch >= 2.1);
    # False: its explicit path, where both reach the attention (how its ImageNet-only checkpoint was trained)
    release_sdpa: bool = True

    def __post_init__(self):
        if self.quantizer not in ("vq", "kl"):
            raise ValueError(f"quantizer must be 'vq' or 'kl', got {self.quantizer!r}")
        for name in ("encoder_spatial", "decoder_spatial"):
            pattern = getattr(self, name)
            if set(pattern) - {"w", "g"}:
                raise ValueError(f"{name} must be letters 'w' (window) and 'g' (global), got {pattern!r}")
        if not self.scaling_factor > 0:
            raise ValueError(f"scaling_factor must be > 0, got {self.scaling_factor}")
        if self.deblock_channels < 0:
            raise ValueError(f"deblock_channels must be >= 0, got {self.deblock_channels}")
        if self.release_spatial_position not in ("rope", "relative"):
            raise ValueError(f"release_spatial_position must be 'rope' or 'relative', got {self.release_spatial_position!r}")
        if not self.release_compatible and (self.release_spatial_position != "rope" or not self.release_sdpa):
            raise ValueError("release_spatial_position and release_sdpa describe the release's computation: they need "
                             "release_compatible: true")
        if self.release_compatible and self.deblock_channels:
            raise ValueError("the release has no deblocking head: release_compatible needs deblock_channels: 0")
        if self.dim % self.heads or (self.dim // self.heads) % 4:
            raise ValueError(f"dim {self.dim} must split into {self.heads} heads of a width divisible by 4 "
                             f"(2-D RoPE rotates pairs along both axes)")


def load_scale(scale: str) -> dict:
    """The whole YAML of a scale ("tiny", "small", "paper") or of a YAML file path."""
    return read_yaml(scale_file(scale, CONFIG_DIR))


def model_config(scale: str | OmniTokenizerConfig | Mapping, **overrides) -> OmniTokenizerConfig:
    """The model config of a scale, a given config or a model's (`model.config`, diffusers' FrozenDict), with field
    overrides; every value type-checked."""
    if isinstance(scale, OmniTokenizerConfig):
        values, source = {**scale.__dict__}, "config"
    elif isinstance(scale, Mapping):
        values, source = {k: v for k, v in scale.items() if not k.startswith("_")}, "model config"
    else:
        values, source = dict(load_scale(scale).get("model") or {}), f"{scale} config model"
    return build(OmniTokenizerConfig, {**values, **overrides}, source)
