"""FLOP counting and the matmul rate every benchmark figure is a fraction of.

FLOPs: torch.utils.flop_counter, with the formula it lacks for SDPA's CPU kernel.

torch 2.14's FlopCounterMode has no formula for `aten._scaled_dot_product_flash_attention_for_cpu`, the kernel
`F.scaled_dot_product_attention` runs on the CPU, so every SDPA-based path was counted without its attention
(measured: 0 FLOPs for a (1, 4, 64, 32) SDPA call). Importing this module registers the same formula torch uses
for its CUDA SDPA kernels.
"""
from __future__ import annotations

import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


@register_flop_formula(_CPU_SDPA, get_raw=True)
def _cpu_sdpa_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(query.shape, key.shape, value.shape)


def count_flops(fn) -> int:
    """FLOPs of one call of fn(), every matmul and attention counted."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def machine_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_gflops(device: str, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10) -> float:
    """The machine's n x n matmul rate in this precision, measured now (the same run as the figures beside it)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9
