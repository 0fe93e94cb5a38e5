"""The training loop every trainer here runs (the tokenizer's stages, the LM, DiT / Latte). A trainer builds its
models, optimizers, data, loss and validation, and calls two functions:

    run = start_run(accelerator, out, cfg, record, {"model": model, "ema": ema.model}, {"opt": opt}, stop_at=stop_at)
    model, opt = accelerator.prepare(model, opt)       # after start_run, which loads a checkpoint into the raw ones
    trained = run_loop(accelerator, run, Step(inputs, loss, model, opt, after=...), batches, validate)

then writes its final folder and summary (with trained.compile beside the precision). The loop owns the order of a
step, the non-finite guard, the loss window, metrics.jsonl, checkpoints and resume, the validation folders, the
training time, and whether the trainer's loss runs compiled (cfg.compile, compile.py: decided before the first
step, on its inputs).

A step s of [start, stop):
  1. torch's generator seeded from (seed, s, rank); every optimizer's lr set (cfg.lr_at(s) x its ratio);
  2. the trainer's inputs(s, batch), then its loss on them under autocast (compiled or not): (loss, terms);
  3. the guard (below); on a good step: backward, gradient clipping, the optimizer's step, then the trainer's
     `after` (an EMA's update, a discriminator's own update), whose terms join the step's;
  4. the loss window: each row of metrics.jsonl (every log_every steps and at the last) holds the mean of every term
     over the window's good steps, lr, nonfinite_skipped and seconds (training time), and the trainer's extras;
  5. a checkpoint every checkpoint_every steps and at stop (the window in progress, the guard's count, the precision,
     the compile choice and the trainer's `state` go with it, so that a resumed run writes the rows and weights of an
     uninterrupted one; make_accelerator(run=...) takes the precision back, run_loop the compile choice);
  6. validation every validate_every steps and at the last: the trainer's validate(step, folder) on the main process,
     into <run>/validation/step_<N>/ (not training time; a run resumed after its last step validates again).

The guard: the loss is checked on every rank (all-reduced) before anything else; a step whose loss is NaN or inf on
any rank is skipped whole on every rank (no backward, no optimizer step, no `after`, no window entry) and counted;
max_nonfinite_in_row such steps in a row write a checkpoint (the last good weights) and stop the run. Deciding before
the backward is the rule because: every rank takes the same branch, so DDP's gradient all-reduce inside backward is
entered by all ranks or by none (none waits on a collective the others skipped); the backward of a non-finite loss
could only give non-finite gradients to throw away (and to all-reduce first); and the weights, the optimizers'
moments and step counts, the EMA and the discriminator stay exactly as the last good step left them, so a run with
skipped steps resumes bit-exactly too.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from shared.atomic import remove_temporary_files

from .accelerator import precision_record
from .checkpoint import resume, save_checkpoint
from .compile import choose_compile
from .config import TrainerConfig
from .guard import NonFiniteGuard
from .metrics_log import MetricsLog
from .schedule import seed_step, set_lr

log = logging.getLogger(__name__)
VALIDATION = "validation"
COMPILE_RECORD = ("compile", "compile_reason", "compile_seconds")


@dataclass
class Run:
    """Where a run writes, what its checkpoints hold, and where it stands (start_run's answer)."""
    folder: Path
    cfg: TrainerConfig
    record: dict  # what the weights depend on: a checkpoint written with another record is refused
    modules: dict[str, torch.nn.Module]  # saved and resumed by name
    optimizers: dict[str, torch.optim.Optimizer]  # saved and resumed by name
    lr_ratios: dict[str, float]  # an optimizer's lr as a multiple of cfg.lr_at(step) (1 when absent)
    what: str  # the run in messages
    start: int
    stop: int  # cfg.steps, or where a test leaves as if killed
    seconds: float = 0.0  # training time before this process
    skipped: int = 0  # non-finite steps skipped before this process
    window: dict[str, list] = field(default_factory=dict)  # the loss window in progress: term -> [sum, count]
    state: dict = field(default_factory=dict)  # the trainer's own values, kept in checkpoints
    compiled: dict | None = None  # the compile choice the checkpoints record (None: not made yet)


def start_run(accelerator: Accelerator, folder: str | Path, cfg: TrainerConfig, record: dict,
              modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer], *,
              stop_at: int | None = None, lr_ratios: dict[str, float] | None = None, state: dict | None = None,
              what: str = "run", ignored: Collection[str] = ()) -> Run:
    """Load the latest checkpoint of `<folder>/checkpoints` into the modules and optimizers (before
    accelerator.prepare), or start at step 0. What a killed run left half-written is removed first. `state`: the
    trainer's own values kept in checkpoints, at their starting values (a resume restores them). `ignored`: record
    fields that do not touch the weights (checkpoint.config_difference)."""
    folder = Path(folder)
    if accelerator.is_main_process:
        for leftovers in (folder, folder / "final"):
            remove_temporary_files(leftovers)
    meta = resume(folder / "checkpoints", record, modules, optimizers, what=what, ignored=ignored) or {}
    state = dict(state or {})
    state.update({k: meta[k] for k in state if k in meta})
    run = Run(folder, cfg, record, modules, optimizers, lr_ratios or {}, what, start=meta.get("step", 0),
              stop=cfg.steps if stop_at is None else min(stop_at, cfg.steps), seconds=meta.get("elapsed", 0.0),
              skipped=meta.get("nonfinite_skipped", 0), state=state,
              window={k: list(v) for k, v in meta.get("log_window", {}).items()},
              compiled={k: meta[k] for k in COMPILE_RECORD} if "compile" in meta else None)
    if meta and accelerator.is_main_process:
        log.info("%s: resuming from %s (step %d)", what, meta["path"], run.start)
    return run


@dataclass
class Step:
    """A trainer's step. inputs(step, batch) -> a tuple: the step's tensors on the device (its data, its random draws
    from step generators), computed eagerly; loss(*inputs) -> (loss, {name: scalar tensor}): the model and the loss
    on them, under autocast, and what cfg.compile compiles (so: tensors in, nothing that changes from step to step but
    them). `optimizer` (the prepared one) steps on the loss, after clipping the gradients of `model`'s parameters to
    grad_clip (None: no clipping) from step grad_clip_from on; after(step) runs after that update on good steps and
    may return terms."""
    inputs: Callable[[int, Any], tuple]
    loss: Callable[..., tuple[torch.Tensor, dict]]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    grad_clip: float | None = None
    grad_clip_from: int = 0
    after: Callable[[int], dict | None] | None = None
    # what a compiled step runs instead of `loss`, made when the run compiles (None: torch.compile over the whole
    # loss): for a trainer whose loss cannot be compiled whole, the loss with the parts that can be compiled
    compiled: Callable[[], Callable[..., tuple[torch.Tensor, dict]]] | None = None


@dataclass
class Trained:
    """What run_loop ends with: training seconds and skipped steps of the whole run, the step where a run left early
    (stop_at; None when it reached cfg.steps), the last validation's figures (main process), and the compile choice
    (compile, compile_reason, compile_seconds: of the whole run, not training time; for the summary)."""
    seconds: float
    nonfinite_skipped: int
    stopped_at: int | None
    validation: dict | None
    compile: dict


def run_loop(accelerator: Accelerator, run: Run, step: Step, batches: Iterable | None = None,
             validate: Callable[[int, Path], dict | None] | None = None,
             extras: Callable[[int, float], dict] | None = None, desc: str = "") -> Trained:
    """Train run.start .. run.stop (the module docstring). batches: one per step (None: step.inputs builds its own
    from the step). validate(step, folder): writes into folder, may return {name: {figure: value}} (TensorBoard
    val_<name>/). extras(steps, seconds): fields added to each metrics row, given the row's steps and seconds."""
    cfg, main = run.cfg, accelerator.is_main_process
    guard = NonFiniteGuard(cfg.max_nonfinite_in_row, run.skipped)
    metrics = MetricsLog(run.folder, run.start, enabled=main)
    window, last = run.window, None

    def steps():  # each step's index and inputs, torch's generator seeded from the step first
        for i, batch in zip(range(run.start, run.stop), itertools.repeat(None) if batches is None else batches):
            seed_step(cfg.seed, i, accelerator.process_index, accelerator.num_processes)
            yield i, step.inputs(i, batch)

    todo, loss_fn = steps(), step.loss
    compiled = run.compiled or {"compile": False, "compile_reason": "no step run", "compile_seconds": 0.0}
    if run.start < run.stop:  # compiled or not: decided on the first step's inputs, before training time starts
        first = next(todo)
        todo = itertools.chain([first], todo)
        loss_fn, chosen = choose_compile(cfg.compile, run.compiled, step.loss, step.compiled, first[1], run.modules,
                                         accelerator)
        compiled = {**chosen, "compile_seconds": chosen["compile_seconds"] + compiled["compile_seconds"]}
    t0, paused = time.perf_counter(), 0.0

    def seconds() -> float:  # training time: validation excluded
        return run.seconds + time.perf_counter() - t0 - paused

    row_start, row_steps = seconds(), 0

    def checkpoint(done: int) -> None:
        if main:
            save_checkpoint(run.folder / "checkpoints", done, {k: m.state_dict() for k, m in run.modules.items()},
                            {k: o.state_dict() for k, o in run.optimizers.items()},
                            {"config": run.record, "elapsed": seconds(), "nonfinite_skipped": guard.skipped,
                             "log_window": window, **precision_record(accelerator), **compiled, **run.state},
                            keep=cfg.keep_checkpoints)
        accelerator.wait_for_everyone()

    def validation(done: int) -> None:
        nonlocal paused, last
        if not (main and validate):
            return
        began = time.perf_counter()
        folder = run.folder / VALIDATION / f"step_{done:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        last = validate(done, folder)
        for name, figures in (last or {}).items():
            metrics.scalars(done, figures, f"val_{name}")
        paused += time.perf_counter() - began

    def update(i: int, loss: torch.Tensor) -> dict:
        opt = step.optimizer
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if step.grad_clip is not None and i >= step.grad_clip_from:
            accelerator.clip_grad_norm_(step.model.parameters(), step.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return (step.after(i) if step.after else None) or {}

    bar = tqdm(total=cfg.steps, initial=run.start, desc=desc, disable=not main, dynamic_ncols=True)
    try:
        for i, inputs in todo:
            lr = cfg.lr_at(i)
            for name, optimizer in run.optimizers.items():
                set_lr(optimizer, lr * run.lr_ratios.get(name, 1.0))
            with accelerator.autocast():
                loss, terms = loss_fn(*inputs)
            bad = guard.is_bad(loss, accelerator)
            if guard.record(bad):
                checkpoint(i)
                raise guard.error(run.what, i, {"loss": loss, **terms}, run.folder / "checkpoints")
            if not bad:
                terms = {"loss": loss, **terms, **update(i, loss)}
                for name, value in terms.items():
                    total = window.setdefault(name, [0.0, 0])
                    total[0] += value.detach().mean().item() if torch.is_tensor(value) else float(value)
                    total[1] += 1
            row_steps += 1
            bar.update(1)
            done = i + 1
            if (done % cfg.log_every == 0 or done == cfg.steps) and window:
                now = seconds()
                row = {name: total / count for name, (total, count) in window.items()}
                metrics.log(done, {**row, "lr": lr, "nonfinite_skipped": guard.skipped, "seconds": now,
                                   **(extras(row_steps, now - row_start) if extras else {})})
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                window.clear()
                row_start, row_steps = now, 0
            if done % cfg.checkpoint_every == 0 or done == run.stop:
                checkpoint(done)
            if done % cfg.validate_every == 0 or done == cfg.steps:
                validation(done)
        if run.start == run.stop == cfg.steps:  # resumed after the last step: its validation again
            validation(cfg.steps)
    finally:
        bar.close()
        metrics.close()
    accelerator.wait_for_everyone()
    return Trained(seconds(), guard.skipped, run.stop if run.stop < cfg.steps else None, last, compiled)
