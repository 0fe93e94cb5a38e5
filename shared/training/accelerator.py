"""The Accelerator every trainer uses: devices, DDP (from `accelerate launch` / `accelerate config`; FSDP would need
the trainers to gather sharded state dicts, which they do not yet),
and mixed precision: by default bf16 autocast on CUDA and fp32 on a CPU (tests stay in fp32); `precision`
"auto" also takes the CPU's bf16 where it measures faster (precision.py)."""
from __future__ import annotations

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs

from .precision import choose_precision


def make_accelerator(find_unused_parameters: bool = False, precision: str | None = None) -> Accelerator:
    """find_unused_parameters: for models whose steps leave some parameters without a gradient (the tokenizer's
    two discriminators, one used per step). precision: "auto" | "fp32" | "bf16"; None: bf16 on CUDA, else fp32.
    The choice is `accelerator.precision` (and why, `accelerator.precision_reason`), for the run's summary."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen, why = choose_precision(precision, device)
    accelerator = Accelerator(mixed_precision="bf16" if chosen == "bf16" else "no",
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)])
    accelerator.precision, accelerator.precision_reason = chosen, why
    return accelerator


def precision_record(accelerator: Accelerator) -> dict:
    """What every run summary records about its precision: "fp32" or "bf16" (autocast), and why (an Accelerator
    not made by make_accelerator: from its mixed_precision)."""
    if not hasattr(accelerator, "precision"):
        return {"precision": "bf16" if accelerator.mixed_precision == "bf16" else "fp32",
                "precision_reason": f"accelerate mixed_precision={accelerator.mixed_precision!r}"}
    return {"precision": accelerator.precision, "precision_reason": accelerator.precision_reason}
