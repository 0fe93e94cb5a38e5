"""An exponential moving average of a model's weights, as DiT keeps it: a frozen copy of the model, updated
after each optimizer step with a fixed decay, initialised to the model's weights.

Not diffusers' `EMAModel`: in 0.42.1 its decay is min(decay, (1 + step) / (10 + step)) unless a warm-up power
is set, so the average follows a schedule nobody asked for, and its state is a list of tensors rather than a
module whose weights save to safetensors and load with `from_pretrained` like the model's.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema = decay * ema + (1 - decay) * model, for parameters; buffers are copied."""
        ema_params = list(self.model.parameters())
        params = [p.detach().to(e.device, e.dtype) for p, e in zip(model.parameters(), ema_params)]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
