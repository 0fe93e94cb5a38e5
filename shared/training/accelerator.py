"""The Accelerator every trainer uses: devices, DDP / FSDP (from `accelerate launch` / `accelerate config`),
and mixed precision, bf16 autocast on CUDA only: tests and CPU runs stay in fp32."""
from __future__ import annotations

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs


def make_accelerator(find_unused_parameters: bool = False) -> Accelerator:
    """find_unused_parameters: for models whose steps leave some parameters without a gradient (the tokenizer's
    two discriminators, one used per step)."""
    return Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no",
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)])
