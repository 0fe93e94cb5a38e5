"""The pieces every trainer here shares (tokenizer, LM, DiT, Latte). No Trainer class: each train.py builds its
models, data, loss and validation and runs them through loop.py.

- loop.py          the training loop: step order, the non-finite guard rule, the loss window, checkpoints and
                   resume, validation into <run>/validation/step_<N>/ (samples/ is left to the samplers), training time
- compile.py       train.compile: torch.compile over a trainer's model and loss, forced or chosen by a measurement at
                   start-up, recorded in checkpoints and the summary
- accelerator.py   Accelerator set-up (bf16 autocast on CUDA; DDP through `accelerate launch`; the trainers save
                   checkpoints from the main process's full state dict, so FSDP sharding is not supported yet)
- schedule.py      per-step seeding (per rank, or one draw for the global batch sliced per rank), warm-up + cosine
                   (or constant) learning rate
- guard.py         the non-finite loss guard (skip, count, stop after too many in a row)
- metrics_log.py   metrics.jsonl + TensorBoard that never repeat a step after a resume
- checkpoint.py    atomic checkpoints (safetensors + weights_only optimizer state), resume with a config check,
                   a finished run reused only for the same record and its own final/ (sha256), a restart's discard
- ema.py           an exponential moving average of weights, saved and resumed with the checkpoint
- run_lock.py      one writer per run folder
"""
from .accelerator import make_accelerator, precision_record
from .checkpoint import discard_run, finished_run, latest_checkpoint, load_checkpoint, resume, save_checkpoint
from .ema import EMA
from .guard import NonFiniteGuard
from .loop import Run, Step, Trained, run_loop, start_run
from .metrics_log import MetricsLog
from .run_lock import RunFolderBusy, locks_run_folder, run_lock
from .schedule import lr_at, rank_rows, seed_step, set_lr, step_generator

__all__ = ["EMA", "MetricsLog", "NonFiniteGuard", "Run", "RunFolderBusy", "Step", "Trained", "discard_run",
           "finished_run", "latest_checkpoint", "load_checkpoint", "locks_run_folder", "lr_at", "make_accelerator",
           "precision_record", "rank_rows", "resume", "run_lock", "run_loop", "save_checkpoint", "seed_step",
           "set_lr", "start_run", "step_generator"]
