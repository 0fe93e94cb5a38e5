"""FLOP counting for the benchmarks: torch.utils.flop_counter, with the formula it lacks for SDPA's CPU kernel.

torch 2.14's FlopCounterMode has no formula for `aten._scaled_dot_product_flash_attention_for_cpu`, the kernel
`F.scaled_dot_product_attention` runs on the CPU, so every SDPA-based path was counted without its attention
(measured: 0 FLOPs for a (1, 4, 64, 32) SDPA call). Importing this module registers the same formula torch uses
for its CUDA SDPA kernels.
"""
from __future__ import annotations

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
