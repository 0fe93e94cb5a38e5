"""The tokenizer's model configuration, and loading of the per-scale YAML files (configs/<scale>.yaml)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from shared.pretrained import config_from_dict

CONFIG_DIR = Path(__file__).parent / "configs"
SCALES = ("tiny", "small", "paper")


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
    kl_weight: float = 1e-6  # lambda_3 of eq. (2)
    logvar_min: float = -30.0
    logvar_max: float = 20.0

    def __post_init__(self):
        if self.quantizer not in ("vq", "kl"):
            raise ValueError(f"quantizer must be 'vq' or 'kl', got {self.quantizer!r}")
        for name in ("encoder_spatial", "decoder_spatial"):
            pattern = getattr(self, name)
            if set(pattern) - {"w", "g"}:
                raise ValueError(f"{name} must be letters 'w' (window) and 'g' (global), got {pattern!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 4:
            raise ValueError(f"dim {self.dim} must split into {self.heads} heads of a width divisible by 4 "
                             f"(2-D RoPE rotates pairs along both axes)")


def load_scale(scale: str) -> dict:
    """The whole YAML of a scale ("tiny", "small", "paper") or of a YAML file path."""
    path = Path(scale) if str(scale).endswith((".yaml", ".yml")) else CONFIG_DIR / f"{scale}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config; scales are {', '.join(SCALES)} or a path to a YAML file")
    with open(path) as f:
        return yaml.safe_load(f) or {}


def model_config(scale: str | OmniTokenizerConfig, **overrides) -> OmniTokenizerConfig:
    """The model config of a scale (or a given config), with field overrides."""
    if isinstance(scale, OmniTokenizerConfig):
        values = {**scale.__dict__}
        source = "config"
    else:
        values = dict(load_scale(scale).get("model", {}))
        source = f"{scale} config"
    values.update(overrides)
    return config_from_dict(OmniTokenizerConfig, values, source)
