"""Train the LM on extracted codes (lm_generation.extract_codes); the tokenizer is only used for sample grids.

    python -m lm_generation.train --codes runs/small/codes/images --scale small --out runs/small/lm_imagenet
    python -m lm_generation.train --codes runs/small/codes/clips --task frames --scale small \
        --set train.conditional=false --out runs/small/lm_k600                      # frame prediction
    accelerate launch -m lm_generation.train --codes codes/in256 --scale paper --size 227M --out runs/paper/lm_227m

Tasks: `image` / `video` (what the codes are; class-conditional) and `frames` (video; the first
train.cond_latent_frames latent frames are given). `<out>/` gets checkpoints/ (resumed automatically; a
different configuration is refused unless --restart), metrics.jsonl, tb/, validation/step_XXXXXXXX/grid.png|gif
(a sample grid at each validation), final/ (ARPipeline folder: the LM's save_pretrained + tokenizer/) and
summary.json; samples/ is the sampler's (sample.py).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from shared.data import StepSchedule
from shared.extraction import MANIFEST, ShardArray, ShardDataset, read_manifest
from shared.media import grid
from shared.provenance import check_sha256
from shared.training import (Step, discard_run, finished_run, locks_run_folder, make_accelerator, precision_record,
                             rank_rows, run_loop, start_run, step_generator)
from shared.training.checkpoint import as_record, write_summary
from tokenizer import OmniTokenizer

from .config import LMConfig, LMTrainConfig, lm_config
from .model import CodeLayout, build_lm, lm_inputs
from .pipeline import ARPipeline
from .sampling import sample_codes

log = logging.getLogger("lm_generation.train")
TASKS = ("image", "video", "frames")


# ----------------------------------------------------------------------------- data and layout


def load_codes(folder: str | Path, task: str, cfg: LMConfig) -> tuple[ShardArray, torch.Tensor, CodeLayout, dict]:
    """The extracted codes (N, T', h, w), memory-mapped and given as long rows, labels (N,), the token layout for
    `task`, the extraction settings."""
    data = ShardDataset(folder)
    s = data.settings
    if "codes" not in data.arrays or "codebook_size" not in s:
        raise ValueError(f"{folder}: not a folder of VQ codes (it holds {sorted(data.arrays)}); the LM trains on the "
                         f"output of lm_generation.extract_codes")
    kind = "video" if task == "frames" else task
    if s["kind"] != kind:
        raise ValueError(f"{folder}: holds {s['kind']} codes; task '{task}' needs {kind} codes")
    codes, labels = data.arrays["codes"].to(torch.long), data.arrays["labels"].load().long()
    for file, part in zip(codes.files, codes.parts):  # a code outside the codebook would fail mid-training
        top = int(part.to(torch.int32).max()) if part.numel() else 0
        if top >= s["codebook_size"]:
            raise ValueError(f"{file}: holds code {top}, outside the codebook of {s['codebook_size']} entries its "
                             f"manifest states; the shard is corrupt or from another tokenizer: extract again")
    layout = CodeLayout(codebook_size=s["codebook_size"], num_classes=len(s["class_names"]), grid=s["grid"],
                        size=(s["frames"], s["resolution"], s["resolution"]),
                        cond_frames=cfg.train.cond_latent_frames if task == "frames" else 0,
                        class_names=s["class_names"], seen_classes=sorted(set(labels.tolist())))
    return codes, labels, layout, s


# ----------------------------------------------------------------------------- validation: a sample grid


@torch.no_grad()
def sample_grid(model, tokenizer: OmniTokenizer, layout: CodeLayout, cfg: LMConfig, codes: ShardArray,
                labels: torch.Tensor, path: Path) -> Path:
    """Rows: classes (frame prediction: training clips, their given frames kept); columns: samples."""
    s, cols = cfg.sample, 4
    if layout.num_given:
        rows = len(codes[: s.grid_classes])
        given = codes[:rows].reshape(rows, -1)[:, : layout.num_given].repeat_interleave(cols, 0)
        cls = labels[:rows].repeat_interleave(cols)
    else:
        classes = torch.tensor(layout.seen_classes[: s.grid_classes] if cfg.train.conditional else [0])
        rows, given, cls = len(classes), None, classes.repeat_interleave(cols)
    if not cfg.train.conditional:
        cls = torch.full_like(cls, -1)  # the null class
    out = sample_codes(model, cls, given, guidance_scale=s.guidance_scales[-1] if cfg.train.conditional else 1.0,
                       cfg_interval=s.cfg_interval, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                       seed=s.seed, compile=s.compile)
    pixels = tokenizer.decode_indices(out.to(next(tokenizer.parameters()).device), size=layout.size).sample
    return grid(pixels, path, per_row=cols)


# ----------------------------------------------------------------------------- training


# fields of the record that do not change the trained weights (compiled code and recomputed activations: only to float
# rounding): a run may resume with other values
RESULT_INDEPENDENT = ("train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.validate_every",
                      "train.gradient_checkpointing", "train.compile")


def run_record(cfg: LMConfig, size: str | None, task: str, settings: dict, rows: int, processes: int) -> dict:
    """What the weights depend on (not the sampling settings): training, the model's shape, the task, the codes and
    the process count (the global batch is batch_size x processes)."""
    return as_record({"train": as_record(cfg.train), "shape": as_record(cfg.shape(size)), "size": size, "task": task,
                      "codes": settings, "rows": rows, "processes": processes})


def dropped_classes(t: LMTrainConfig, step: int, batch: int, accelerator) -> torch.Tensor:
    """Which of this rank's sequences train without their class (all of them for an unconditional model): drawn for
    the global batch from the step's generator and sliced, so that N processes train as one of N x the batch."""
    if not t.conditional:
        return torch.ones(batch, dtype=torch.bool)
    drawn = torch.rand(batch * accelerator.num_processes, generator=step_generator(t.seed, step))
    return rank_rows(drawn, accelerator.process_index, accelerator.num_processes) < t.class_dropout


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]):
    """AdamW with weight decay on the matrices only (not the embedding table, norms or biases), in PyTorch's fused
    implementation (one kernel over all parameters instead of a loop of small ones; the same update to float
    rounding)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, fused=True)


@locks_run_folder
def train(cfg: LMConfig, codes_dir: str | Path, out: str | Path, task: str = "image", size: str | None = None,
          restart: bool = False, stop_at: int | None = None) -> dict:
    """Train (resuming from the latest checkpoint of `out`); returns the summary. `cfg`: lm_config(..., task=task).
    stop_at: leave after that step with a checkpoint, as if killed (tests)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    out, t = Path(out), cfg.train
    if restart:
        discard_run(out)

    # Setup: accelerator, data, model, optimizer; resume
    accelerator = make_accelerator(precision=t.precision, run=out)
    device = accelerator.device
    codes, labels, layout, settings = load_codes(codes_dir, task, cfg)
    record = run_record(cfg, size, task, settings, len(codes), accelerator.num_processes)
    if (summary := finished_run(out, record, ignored=RESULT_INDEPENDENT)) is not None:
        return summary
    torch.manual_seed(t.seed)  # the same initial weights on every rank and in every run of this config
    model = build_lm(cfg.shape(size), layout)
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    opt = make_optimizer(model, t.lr, t.weight_decay, t.betas)
    run = start_run(accelerator, out, t, record, {"model": model}, {"opt": opt}, stop_at=stop_at, what="the LM",
                    ignored=RESULT_INDEPENDENT)
    model, opt = accelerator.prepare(model, opt)
    raw = accelerator.unwrap_model(model)
    # which rows each step reads: shared.data's step schedule over one dataset (its kind name is just a key)
    schedule = StepSchedule(lengths={"image": len(codes)}, batch_sizes={"image": t.batch_size}, pattern="i",
                            resolutions=[1], seed=t.seed, rank=accelerator.process_index,
                            world_size=accelerator.num_processes)
    check_sha256(settings["tokenizer"], settings["tokenizer_sha256"], Path(codes_dir) / MANIFEST)
    tokenizer = OmniTokenizer.from_pretrained(settings["tokenizer"]).to(device).eval()

    def inputs(step: int, _):  # one batch of code sequences a step, a pure function of the step (exact resume)
        model.train()
        idx = torch.tensor([k.index for k in schedule.keys(step)])
        x, y = codes[idx].to(device), labels[idx].to(device)
        return lm_inputs(x, y, layout, dropped_classes(t, step, len(idx), accelerator).to(device))

    def loss(ids, targets):  # the part of a step train.compile compiles
        return model(input_ids=ids, labels=targets).loss, {}

    def validate(step: int, folder: Path) -> None:
        log.info("sample grid: %s", sample_grid(raw, tokenizer, layout, cfg, codes, labels, folder / "grid"))

    # Train: tokens_per_s counts the generated tokens of every process since the row before (or the resume)
    tokens = t.batch_size * (layout.num_codes - layout.num_given) * accelerator.num_processes
    trained = run_loop(accelerator, run, Step(inputs, loss, model, opt, t.grad_clip if t.grad_clip > 0 else None),
                       validate=validate, extras=lambda steps, s: {"tokens_per_s": tokens * steps / max(s, 1e-9)},
                       desc="lm")
    if trained.stopped_at is not None:
        return {"stopped_at": trained.stopped_at}

    # Final: the pipeline folder and the summary
    summary = {"generator": "lm", "task": task, "size": size, "parameters": sum(p.numel() for p in raw.parameters()),
               "steps": t.steps, "train_seconds": trained.seconds, "nonfinite_skipped": trained.nonfinite_skipped,
               "data": str(Path(codes_dir).resolve()), "rows": len(codes), "final": str((out / "final").resolve()),
               "tokenizer": settings["tokenizer"], "tokenizer_sha256": settings["tokenizer_sha256"],
               "layout": layout.to_dict(), "threads": torch.get_num_threads(), **precision_record(accelerator),
               **trained.compile,
               "device": str(device), "processes": accelerator.num_processes, "final_loss": _last_loss(out),
               "config": as_record(cfg), "record": record}
    if accelerator.is_main_process:
        ARPipeline(raw, tokenizer).save_pretrained(out / "final", settings["tokenizer"])
        write_summary(out, summary)
    return summary


def _last_loss(out: Path) -> float | None:
    path = out / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return rows[-1]["loss"] if rows else None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codes", required=True, help="folder written by lm_generation.extract_codes")
    ap.add_argument("--out", required=True)
    ap.add_argument("--task", default=None, choices=TASKS, help="default: what the codes are (image or video)")
    ap.add_argument("--scale", default="small", help="tiny | small | paper | path to a YAML")
    ap.add_argument("--size", default=None, help="a named model shape of the config's sizes: (paper: 227M)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="config override")
    ap.add_argument("--restart", action="store_true", help="discard the checkpoints of --out and train again")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    task = args.task or read_manifest(args.codes)["settings"]["kind"]
    cfg = lm_config(args.scale, args.set, task)
    summary = train(cfg, args.codes, args.out, task, args.size, args.restart)
    print(json.dumps({k: summary[k] for k in ("task", "parameters", "steps", "train_seconds", "final_loss")}))
    return summary


if __name__ == "__main__":
    main()
