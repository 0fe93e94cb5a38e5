"""Which precision to compute in, by what the machine does: never assumed.

"auto": bf16 autocast on CUDA; on a CPU, bf16 autocast where a bf16 matmul measures at least MIN_SPEEDUP x the fp32
one (CPUs with AVX512-BF16 / AMX: 4-9x measured here), fp32 where it does not (an earlier CPU ran bf16 ~300x
slower). "fp32" and "bf16" force one. None (unset): bf16 on CUDA, fp32 on a CPU. The choice and the measurement go
into every run's checkpoints and summary; a resumed training run continues in the choice its checkpoints record
(accelerator.make_accelerator).
"""
from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

from shared.timing import best_in_turns

PRECISIONS = ("auto", "fp32", "bf16")
MIN_SPEEDUP = 1.5


@lru_cache(maxsize=None)
def cpu_bf16_speedup(n: int = 512, repeats: int = 8, rounds: int = 5) -> float:
    """bf16 / fp32 matmul rate on this CPU, measured once per process: the two precisions take turns for `rounds`
    rounds and each keeps its best, so that a drift in the machine's speed (seen here: 2x within minutes) cannot
    favour either."""
    a = {torch.float32: torch.randn(n, n)}
    a[torch.bfloat16] = a[torch.float32].bfloat16()
    for m in a.values():
        m @ m

    def products(m):
        for _ in range(repeats):
            m @ m

    best = best_in_turns({dtype: (lambda m=m: products(m)) for dtype, m in a.items()}, "cpu", rounds)
    return best[torch.float32] / best[torch.bfloat16]


def choose_precision(requested: str | None = "auto", device: str | torch.device = "cpu") -> tuple[str, str]:
    """(precision, why) for `requested` on `device`; None: bf16 on CUDA, fp32 on a CPU."""
    cuda = torch.device(device).type == "cuda"
    if requested is None:
        return ("bf16", "CUDA") if cuda else ("fp32", "CPU default")
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested, "forced"
    if cuda:
        return "bf16", "CUDA"
    speedup = cpu_bf16_speedup()
    choice = "bf16" if speedup >= MIN_SPEEDUP else "fp32"
    return choice, f"CPU bf16 matmul measured at {speedup:.1f}x fp32"


def autocast(precision: str, device: str | torch.device):
    """The context a chosen precision computes in: bf16 autocast, or nothing for fp32."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def add_precision_argument(parser, what: str, recorded: str) -> None:
    """A CLI's --precision (None unless given: choose_precision's default); `what` computes in it, `recorded` says
    where the choice is kept."""
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help=f"{what} precision (default: bf16 on CUDA, fp32 on a CPU; auto: also the CPU's "
                             f"bf16 where a matmul measures it faster, decided at start-up). {recorded}")


def check_computed(precision: str) -> None:
    """A precision a model computes in, once chosen: "fp32" or "bf16" (not "auto")."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
