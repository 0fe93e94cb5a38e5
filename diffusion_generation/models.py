"""The model registry: a `ModelConfig` (one YAML section) -> DiT or Latte, and loading a saved one."""
from __future__ import annotations

import json
from pathlib import Path

from .config import ModelConfig
from .dit import DiT
from .latte import Latte

MODELS = {"dit": DiT, "latte": Latte}


def build_model(cfg: ModelConfig) -> DiT | Latte:
    return MODELS[cfg.kind](in_channels=cfg.in_channels, patch_size=cfg.patch_size, hidden_size=cfg.hidden_size,
                            depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
                            num_classes=cfg.num_classes, class_dropout_prob=cfg.class_dropout_prob,
                            learn_sigma=cfg.learn_sigma)


def load_model(folder: str | Path) -> DiT | Latte:
    """A model written by save_pretrained (config.json names its class)."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: not found; expected a folder written by save_pretrained")
    name = json.loads(config_file.read_text()).get("_class_name")
    classes = {cls.__name__: cls for cls in MODELS.values()}
    if name not in classes:
        raise ValueError(f"{config_file}: holds a {name!r}, not one of {sorted(classes)}")
    return classes[name].from_pretrained(str(folder))
