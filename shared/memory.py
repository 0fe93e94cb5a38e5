"""Give the C heap's free pages back to the operating system (glibc's malloc_trim), where the C library has it; and
this process's resident memory as Linux reports it.

glibc raises its mmap threshold to the size of each freed mmapped block (up to 32 MB), so after a long clip's first
chunk, later chunk-sized tensors come from the heap, and the pages of their freed holes stay resident. Trimming once
a chunked stage is done returns them before the next stage allocates in its own pattern (measured at 129 x 256²,
max_tokens=8192: peak RSS 60-65 MB lower in fp32 and bf16, no slower; trimming after every chunk was slower in bf16).
"""
from __future__ import annotations

import ctypes
from functools import lru_cache

import torch


@lru_cache(maxsize=None)
def _malloc_trim():
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, the C library's among them (no library search)
    except (OSError, TypeError):  # Windows has no such handle
        return None
    trim = getattr(libc, "malloc_trim", None)  # glibc only: macOS and musl have none
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS; False where the C library cannot, or inside code being compiled
    (nothing done)."""
    # Not `@torch.compiler.disable`, which would break every compiled stack's graph at the call: a graph that
    # torch.compile traces skips it
    trim = None if torch.compiler.is_compiling() else _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def rss_bytes(field: str) -> int:
    """VmRSS or VmHWM (peak) of this process, from /proc (0 where there is none)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
