"""FLOP counting and the matmul rate every benchmark figure is a fraction of.

FLOPs: torch.utils.flop_counter, with the formula it lacks for SDPA's CPU kernel. GEMM time: the matrix products
and attention kernels one call ran, replayed alone at the same shapes, strides and dtypes; what the call takes
beyond that is everything else (norms, softmax, GELU, elementwise ops, copies, casts).

torch 2.14's FlopCounterMode has no formula for `aten._scaled_dot_product_flash_attention_for_cpu`, the kernel
`F.scaled_dot_product_attention` runs on the CPU, so every SDPA-based path was counted without its attention
(measured: 0 FLOPs for a (1, 4, 64, 32) SDPA call). flop_counter_mode registers the same formula torch uses for
its CUDA SDPA kernels. torch's flop counter is imported then, not with this module: the import (sympy among others)
adds 75 MB of resident memory, which the benches' peak-memory figures must not include.
"""
from __future__ import annotations

import time
from collections import Counter
from functools import lru_cache

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from shared.provenance import machine_name  # noqa: F401  (the benches name the machine through this module)
from shared.timing import sync, timed

_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_aten = torch.ops.aten
# under inference_mode a dispatch mode sees linear / matmul / SDPA whole; with autograd, what they decompose into
GEMM_OPS = {_aten.linear.default, _aten.matmul.default, _aten.scaled_dot_product_attention.default, _aten.mm.default,
            _aten.addmm.default, _aten.bmm.default, _aten.baddbmm.default, _CPU_SDPA.default}


@lru_cache(maxsize=None)
def flop_counter_mode():
    """torch's FlopCounterMode class, with the CPU SDPA kernel's formula registered (once): every bench counts
    FLOPs through it or count_flops."""
    from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

    @register_flop_formula(_CPU_SDPA, get_raw=True)
    def _cpu_sdpa_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
        return sdpa_flop_count(query.shape, key.shape, value.shape)

    return FlopCounterMode


def count_flops(fn) -> int:
    """FLOPs of one call of fn(), every matmul and attention counted."""
    with flop_counter_mode()(display=False) as counter:
        fn()
    return counter.get_total_flops()


class _RecordGemms(TorchDispatchMode):
    """Counts each (GEMM op, argument layout) a call runs; tensors are kept as (shape, stride, dtype, device)."""

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in GEMM_OPS:
            self.calls[(func, _freeze(args), _freeze(tuple(sorted(kwargs.items()))))] += 1
        return func(*args, **kwargs)


def _freeze(v):
    if isinstance(v, torch.Tensor):
        return ("tensor", tuple(v.shape), tuple(v.stride()), v.dtype, str(v.device))
    if isinstance(v, (tuple, list)):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v):
    if isinstance(v, tuple) and v[:1] == ("tensor",):
        _, shape, stride, dtype, device = v
        storage = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else 0
        return torch.randn(storage, dtype=dtype, device=device).as_strided(shape, stride)
    if isinstance(v, tuple):
        return tuple(_thaw(x) for x in v)
    return v


def gemm_seconds(fn, device: str, repeats: int = 3) -> float:
    """Seconds the GEMMs and attention kernels of one fn() call take when replayed alone (each distinct one timed
    `repeats` times, its best time counted once per call of it)."""
    record = _RecordGemms()
    with record:
        fn()
    total = 0.0
    for (func, args, kwargs), count in record.calls.items():
        args, kwargs = _thaw(args), dict(_thaw(kwargs))
        with torch.inference_mode():
            func(*args, **kwargs)
            best = min(timed(lambda: func(*args, **kwargs), device) for _ in range(repeats))
        total += count * best
    return total


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # the benches' precision names


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
