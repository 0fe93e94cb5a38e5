"""The non-finite loss guard: a step whose loss is NaN or inf on any rank is skipped on every rank and counted;
too many in a row stop the run with a message (after the caller's last checkpoint). Where in a step it decides, and
why there: loop.py."""
from __future__ import annotations

import torch


class NonFiniteError(RuntimeError):
    pass


class NonFiniteGuard:
    def __init__(self, max_in_row: int, skipped: int = 0):
        self.max_in_row, self.skipped, self.in_a_row = max_in_row, skipped, 0

    def is_bad(self, loss: torch.Tensor, accelerator) -> bool:
        """True when the loss is non-finite on any process (all processes agree)."""
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        return accelerator.reduce(bad, "sum").item() > 0

    def record(self, bad: bool) -> bool:
        """Count a step; True when too many bad steps came in a row (the caller checkpoints, then raises)."""
        if not bad:
            self.in_a_row = 0
            return False
        self.skipped += 1
        self.in_a_row += 1
        return self.in_a_row >= self.max_in_row

    def error(self, where: str, step: int, terms: dict, ckpt_dir) -> NonFiniteError:
        return NonFiniteError(f"{where}: {self.in_a_row} non-finite losses in a row at step {step} (last terms "
                              f"{({k: float(v.detach()) for k, v in terms.items()})}); the last good weights are in {ckpt_dir}. "
                              f"Lower the learning rate or check the data.")
