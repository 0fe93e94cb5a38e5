"""`train.compile`: torch.compile over a trainer's model and loss (Step.loss), decided once per run.

    true   compiled;  false   eager;
    auto   compiled where a short measurement at start-up shows it faster on this machine: the step's model and loss
           with their backward, on the run's first batch, compiled once, then eager and compiled in turns (the best
           of each), and compiled when it takes at most 1 / MIN_SPEEDUP of eager's time.

Compilation happens before the first step, on the run's first batch (`compile_seconds`: that first compiled call,
compilation included; not training time); a later batch of another shape (the tokenizer's images and clips, its
resolutions) compiles again inside training time. Neither the warm-up nor the measurement changes the run: the
modules' states (weights, buffers such as codebook usage) and torch's random state are put back after them, and no
optimizer steps, so a compiled run trains the steps it would have trained.

A trainer whose loss cannot be compiled whole gives its loss with the parts that can compiled (Step.compiled: the
tokenizer's encoder and decoder stacks, not its quantizer, which rewrites its codebook in the forward).

Random draws inside the compiled code are torch's own (inductor's `fallback_random`), so a compiled step draws the
class drops a step of eager code draws and the two compute the same function to float rounding.

The optimizer step is not compiled: the LM and DiT / Latte step with PyTorch's fused AdamW, one kernel over all
parameters already, which leaves a compiled step nothing to fuse.

The choice is the run's once made: every checkpoint records it (compile, compile_reason, compile_seconds), and a
resumed run whose setting is `auto` continues in the recorded one (the two compute the same function only to float
rounding, so a resume that switched would not equal the run uninterrupted). A forced true or false is followed on a
resume too; the setting is not among what a run's weights depend on (the trainers' RESULT_INDEPENDENT).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from shared.timing import best_in_turns, timed

log = logging.getLogger(__name__)
MIN_SPEEDUP = 1.05


def check_compile(value) -> None:
    """The setting: true, false or "auto"."""
    if not (isinstance(value, bool) or value == "auto"):
        raise ValueError(f"compile must be true, false or 'auto', got {value!r}")


def compiled(fn: Callable) -> Callable:
    """torch.compile(fn) for static shapes, each call under inductor's fallback_random (read when a call compiles).
    Static: a batch of another shape compiles a graph of its own, never one with symbolic shapes (dynamic shapes
    failed to compile Latte's step after DiT's in one process: "cannot determine truth value of Relational")."""
    from torch._inductor import config as inductor

    inner = torch.compile(fn, dynamic=False)

    def call(*args, **kwargs):
        with inductor.patch(fallback_random=True):
            return inner(*args, **kwargs)

    return call


def choose_compile(requested, recorded: dict | None, loss: Callable, make_compiled: Callable[[], Callable] | None,
                   inputs: Sequence, modules: dict, accelerator: Accelerator) -> tuple[Callable, dict]:
    """(the loss function the run steps with, {compile, compile_reason, compile_seconds}) for the setting
    `requested`, the choice a resumed run's checkpoints record (`recorded`: continued where the setting is auto),
    the compiled loss's maker (None: compiled(loss)) and the run's first inputs. Every process takes the main
    process's choice."""
    check_compile(requested)
    if requested == "auto" and recorded is not None:
        choice, reason = recorded["compile"], recorded["compile_reason"]
    elif requested is not True and requested is not False:
        choice, reason = None, ""
    else:
        choice, reason = requested, "forced"
    if choice is False:
        return loss, {"compile": False, "compile_reason": reason, "compile_seconds": 0.0}
    fast = make_compiled() if make_compiled else compiled(loss)
    with restored(modules):
        try:
            seconds = timed(lambda: step(fast, inputs, accelerator), accelerator.device)
        except Exception as exc:  # a step torch.compile cannot take (no C++ compiler, an unsupported op)
            if choice:
                raise RuntimeError(f"compile=true: torch.compile cannot compile this step ({type(exc).__name__}: "
                                   f"{exc}); set train.compile to false or auto") from exc
            log.warning("compile=auto: torch.compile failed (%s: %s); training eagerly", type(exc).__name__, exc)
            choice, reason, seconds = False, f"torch.compile failed ({type(exc).__name__})", 0.0
        if choice is None:
            best = best_in_turns({"eager": lambda: step(loss, inputs, accelerator),
                                  "compiled": lambda: step(fast, inputs, accelerator)}, accelerator.device)
            choice, reason = measured_choice("a step", best)
    choice, reason, seconds = broadcast_object_list([choice, reason, seconds])
    if accelerator.is_main_process:
        log.info("compile: %s, %s; compiled in %.0f s", choice, reason, seconds)
    return fast if choice else loss, {"compile": choice, "compile_reason": reason, "compile_seconds": seconds}


def step(loss: Callable, inputs: Sequence, accelerator: Accelerator) -> None:
    """One forward and backward of `loss` on `inputs`."""
    with accelerator.autocast():
        value, _ = loss(*inputs)
    accelerator.backward(value)


def measured_choice(what: str, best: dict) -> tuple[bool, str]:
    """(compiled?, why) from the best seconds of "eager" and "compiled": compiled where at least MIN_SPEEDUP x."""
    speedup = best["eager"] / best["compiled"]
    return speedup >= MIN_SPEEDUP, (f"{what} measured at {speedup:.2f}x eager compiled ({best['eager'] * 1e3:.1f} ms "
                                    f"eager, {best['compiled'] * 1e3:.1f} ms compiled)")


@contextlib.contextmanager
def restored(modules: dict[str, torch.nn.Module]):
    """The modules' states and torch's random state as they were before the block, and no gradients."""
    states = {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in modules.items()}
    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        for name, m in modules.items():
            m.load_state_dict(states[name])
            for p in m.parameters():
                p.grad = None
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
