"""The model registry: a `ModelConfig` (one YAML section) -> DiT or Latte."""
from __future__ import annotations

from .config import ModelConfig
from .dit import DiT
from .latte import Latte

MODELS = {"dit": DiT, "latte": Latte}


def build_model(cfg: ModelConfig) -> DiT | Latte:
    return MODELS[cfg.kind](in_channels=cfg.in_channels, patch_size=cfg.patch_size, hidden_size=cfg.hidden_size,
                            depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
                            num_classes=cfg.num_classes, class_dropout_prob=cfg.class_dropout_prob,
                            learn_sigma=cfg.learn_sigma)

