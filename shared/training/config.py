"""The fields every generator trainer has, with one meaning: the LM's and the diffusion models' `train:` sections
extend `TrainerConfig` with their own fields (and their own defaults)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from shared.config import at_least, check_finite, check_seed

from .compile import check_compile
from .schedule import lr_at


@dataclass
class TrainerConfig:
    seed: int = 0
    steps: int = 1000
    batch_size: int = 32  # per process
    lr: float = 1e-4
    min_lr: float = 0.0  # where a cosine decay ends
    warmup_steps: int = 0
    decay: Literal["constant", "cosine"] = "constant"  # after the warm-up
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    validate_every: int = 1000  # sample grids (the final one is always made)
    max_nonfinite_in_row: int = 8  # steps with a non-finite loss skipped in a row before the run stops
    # None: bf16 autocast on CUDA, fp32 on a CPU; "auto": also the CPU's bf16 where it measures faster; "fp32"/"bf16"
    precision: Optional[str] = None
    # torch.compile over the model and loss: true, false, or "auto": where a measurement at start-up shows it faster
    # (compile.py); recorded in checkpoints and the summary
    compile: Literal["auto", True, False] = False

    def __post_init__(self):
        at_least(self, steps=1, batch_size=1, log_every=1, checkpoint_every=1, keep_checkpoints=1, validate_every=1,
                 max_nonfinite_in_row=1, warmup_steps=0)
        check_seed(self.seed)
        check_compile(self.compile)
        for name in ("lr", "min_lr"):
            check_finite(name, getattr(self, name))
        if self.lr <= 0 or self.min_lr < 0:
            raise ValueError(f"lr must be > 0 and min_lr >= 0, got lr={self.lr}, min_lr={self.min_lr}")

    def lr_at(self, step: int) -> float:
        """The learning rate of `step`: warm-up, then constant or a cosine to min_lr."""
        return lr_at(step, self.lr, self.min_lr, self.warmup_steps, self.steps, self.decay)
