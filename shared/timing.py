"""Wall-clock seconds of work on a device: the device's queued work included (CUDA runs asynchronously)."""
from __future__ import annotations

import time

import torch


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str | torch.device) -> float:
    """Seconds one fn() call takes, the device's queued work included."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def best_in_turns(fns: dict, device: str | torch.device, rounds: int = 3) -> dict:
    """{name: the fastest of `rounds` calls} of each fn, the fns taking turns, so that a drift in the machine's speed
    (seen here: 2x within minutes on a shared CPU) cannot favour one of them."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], timed(fn, device))
    return best
