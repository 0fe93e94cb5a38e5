"""The Accelerator every trainer uses: devices, DDP (from `accelerate launch` / `accelerate config`; FSDP would need
the trainers to gather sharded state dicts, which they do not yet),
and mixed precision: by default bf16 autocast on CUDA and fp32 on a CPU (tests stay in fp32); `precision`
"auto" also takes the CPU's bf16 where it measures faster (precision.py). A precision the machine chooses is chosen
once per run: its checkpoints record it, and a resume continues in it."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState

from shared.atomic import read_json_object

from .checkpoint import checkpoint_dirs
from .precision import choose_precision

log = logging.getLogger(__name__)


def make_accelerator(find_unused_parameters: bool = False, precision: str | None = None,
                     run: str | Path | None = None) -> Accelerator:
    """find_unused_parameters: for models whose steps leave some parameters without a gradient (the tokenizer's
    two discriminators, one used per step). precision: "auto" | "fp32" | "bf16"; None: bf16 on CUDA, else fp32.
    run: the run folder; where precision leaves the choice to the machine (None or "auto") and the run's latest
    checkpoint records the precision it trained in, the run continues in that one (logged where this machine would
    choose otherwise), so that a run never changes precision midway.
    The choice is `accelerator.precision` (and why, `accelerator.precision_reason`), for the run's summary."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen, why = choose_precision(precision, device)
    recorded = recorded_precision(run) if run is not None and precision in (None, "auto") else None
    if recorded:
        if recorded[0] != chosen:
            log.warning("%s: resuming in %s, the precision its checkpoints record (%s); this machine alone would "
                        "choose %s (%s)", run, recorded[0], recorded[1], chosen, why)
        chosen, why = recorded
    mixed = "bf16" if chosen == "bf16" else "no"
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed) != mixed:
        # accelerate keeps one state per process and refuses another precision in it; a process can need two: the
        # tokenizer's stages each make their Accelerator, and a stage resumed in the precision its checkpoints
        # record can differ from the next stage's choice (tested: a run resumed in bf16, then a fresh one in fp32).
        # The distributed set-up (PartialState) is kept; only accelerate's private precision state is reset.
        AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=mixed,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)])
    accelerator.precision, accelerator.precision_reason = chosen, why
    return accelerator


def recorded_precision(run: str | Path) -> tuple[str, str] | None:
    """(precision, why) as the newest readable checkpoint of a run folder records them; None where it records none
    (or the run has no checkpoint)."""
    for path in reversed(checkpoint_dirs(Path(run) / "checkpoints")):
        try:
            meta = read_json_object(path / "meta.json", "checkpoint's meta")
        except ValueError:
            continue
        return (meta["precision"], meta["precision_reason"]) if "precision" in meta else None
    return None


def precision_record(accelerator: Accelerator) -> dict:
    """What every run summary records about its precision: "fp32" or "bf16" (autocast), and why (an Accelerator
    not made by make_accelerator: from its mixed_precision)."""
    if not hasattr(accelerator, "precision"):
        return {"precision": "bf16" if accelerator.mixed_precision == "bf16" else "fp32",
                "precision_reason": f"accelerate mixed_precision={accelerator.mixed_precision!r}"}
    return {"precision": accelerator.precision, "precision_reason": accelerator.precision_reason}
