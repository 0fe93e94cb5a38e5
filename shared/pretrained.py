"""save_pretrained / from_pretrained for our models, in the diffusers layout: config.json + model.safetensors.

A model class using `PretrainedMixin` sets `config_class` (a dataclass) and keeps its config in
`self.config`; config.json values are type-checked against it. Weights are safetensors only (no pickle); files are written atomically.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_write, atomic_write_json
from .config import build

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def load_safetensors(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors on `map_location`; a file that cannot be read is an error naming it and the cause.

    The file is read on the CPU and moved after: safetensors takes only its own device names ("cpu:0", which a
    CPU process of a distributed launch has as its device, is refused as an invalid device)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError, or a Rust panic
        raise ValueError(f"{path}: cannot be read as safetensors ({exc.__class__.__name__}: {exc}); the file is "
                         f"truncated or corrupt") from None
    device = torch.device(map_location)
    return tensors if device.type == "cpu" else {k: v.to(device) for k, v in tensors.items()}


class PretrainedMixin:
    config_class: type

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_json(path / CONFIG_NAME, {"class": type(self).__name__, **dataclasses.asdict(self.config)})
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu"):
        path = Path(path)
        config_file, weights_file = path / CONFIG_NAME, path / WEIGHTS_NAME
        for f in (config_file, weights_file):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: not found; expected a folder written by save_pretrained "
                                        f"({CONFIG_NAME} + {WEIGHTS_NAME})")
        try:
            values = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{config_file}: not valid JSON ({exc})") from None
        saved_class = values.pop("class", cls.__name__)
        if saved_class != cls.__name__:
            raise ValueError(f"{config_file}: holds a {saved_class}, not a {cls.__name__}")
        model = cls(build(cls.config_class, values, str(config_file)))
        state = load_safetensors(weights_file, map_location)
        expected = model.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                 if k in state and state[k].shape != v.shape]
        if missing or unexpected or wrong:
            raise ValueError(f"{weights_file}: does not match {config_file.name} (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}, shape mismatch {wrong[:3]})")
        model.load_state_dict(state)
        return model.to(map_location)
