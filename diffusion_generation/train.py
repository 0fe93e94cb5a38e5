"""Train DiT (images) or Latte (videos) on extracted latents, as DiT's train.py does.

    python -m diffusion_generation.train --scale small --experiment dit --latents runs/small/dit_imagenet/latents \
        --out runs/small/dit_imagenet
    accelerate launch -m diffusion_generation.train --scale paper --experiment latte \
        --latents runs/paper/latte_ucf/latents --out runs/paper/latte_ucf                  # one or many GPUs

Writes `<out>/`: checkpoints/ (model, EMA and optimizer; a killed run resumes exactly where it stopped on the
next call), metrics.jsonl + tb/, samples/step_XXXXXXXX.{png,gif} from the EMA model at each validation,
final/ (a pipeline folder: EMA model + VAE + scheduler settings, see pipeline.py) and summary.json.
The tokenizer is loaded only to decode validation samples and to write final/.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from shared.atomic import atomic_write_json
from shared.data import StepSchedule
from shared.data.collate import collate
from shared.data.sampling import StepBatchSampler
from shared.extraction import MANIFEST
from shared.media import grid
from shared.provenance import check_sha256
from shared.training import (EMA, MetricsLog, NonFiniteGuard, discard_run, finished_run, locks_run_folder,
                             make_accelerator, precision_record, resume, save_checkpoint, seed_step, set_lr)
from shared.training.checkpoint import as_record
from tokenizer import OmniTokenizer

from .config import ExperimentConfig, experiment_config
from .diffusion import GaussianDiffusion
from .latents import LatentSet
from .models import build_model
from .pipeline import LatentDiffusionPipeline

# ----------------------------------------------------------------------------- helpers


def check_data(cfg: ExperimentConfig, data: LatentSet) -> None:
    """The latents fit the model: channels, kind, patch size, class count."""
    shape, m = data.latent_shape, cfg.model
    where = f"{data.folder} (latents {shape})"
    if shape[0] != m.in_channels:
        raise ValueError(f"{where}: {shape[0]} channels, the model takes in_channels={m.in_channels}")
    if (len(shape) == 4) != (m.kind == "latte"):
        raise ValueError(f"{where}: {'clip' if len(shape) == 4 else 'image'} latents for a {m.kind} model")
    if shape[-2] % m.patch_size or shape[-1] % m.patch_size:
        raise ValueError(f"{where}: the grid is not divisible by patch_size={m.patch_size}")
    classes = data.manifest.get("num_classes", int(data.labels.max()) + 1)
    if m.num_classes and classes > m.num_classes:
        raise ValueError(f"{where}: {classes} classes, the model has num_classes={m.num_classes}")


def validation_labels(classes: list[int], n: int) -> torch.Tensor | None:
    """n labels cycling through the classes of the training data (None for an unconditional model)."""
    return torch.tensor(classes)[torch.arange(n) % len(classes)] if classes else None


def write_samples(pipe: LatentDiffusionPipeline, labels: torch.Tensor | None, n: int, path: Path, seed: int,
                  guidance_scale: float) -> Path:
    """Sample from the pipeline's model and write a PNG grid (images) or a GIF grid (clips)."""
    pixels = pipe(labels=labels, num_samples=None if labels is not None else n, guidance_scale=guidance_scale,
                  seed=seed)
    if pixels.shape[2] == 1:
        return grid(pixels, path, per_row=8)
    return grid(pixels, path, per_row=4)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW as DiT trains with it, in PyTorch's fused implementation (one kernel over all parameters instead of a
    loop of small ones; the same update to float rounding)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


# ----------------------------------------------------------------------------- training


def step_noise(seed: int, step: int, x: torch.Tensor, num_steps: int, rank: int, world_size: int):
    """This rank's timesteps and noise: drawn for the whole global batch from a generator of (seed, step), the same on
    every rank, and sliced, so that N processes of batch b train as one process of batch N * b does."""
    b = x.shape[0]
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    t = torch.randint(0, num_steps, (world_size * b,), generator=g)[rank * b : (rank + 1) * b]
    noise = torch.randn((world_size * b, *x.shape[1:]), generator=g)[rank * b : (rank + 1) * b]
    return t.to(x.device), noise.to(x.device, x.dtype)


# fields of the record that do not change the trained weights: a run may resume, or a finished one be reused, with
# other values (sampling settings are the sampler's; validation samples draw from their own generator)
RESULT_INDEPENDENT = ("experiment.sample", "experiment.diffusion.sampler", "experiment.diffusion.sampling_steps",
                      "experiment.train.num_workers", "experiment.train.log_every",
                      "experiment.train.checkpoint_every", "experiment.train.validate_every",
                      "experiment.train.keep_checkpoints")


@locks_run_folder
def train(cfg: ExperimentConfig, latents: str | Path, out: str | Path, tokenizer: str | None = None,
          restart: bool = False, stop_at: int | None = None, validation_samples: int = 16) -> dict:
    """Train (resuming from `out`'s latest checkpoint; restart: discard what the run wrote first); returns the
    summary. stop_at: leave after that many steps with a checkpoint, as if killed."""
    tc = cfg.train
    out = Path(out)
    if restart:
        discard_run(out)
    # Setup accelerator and data:
    accelerator = make_accelerator(precision=tc.precision)
    main, device = accelerator.is_main_process, accelerator.device
    data = LatentSet(latents)
    check_data(cfg, data)
    tokenizer = tokenizer or data.manifest["settings"]["tokenizer"]
    check_sha256(tokenizer, data.manifest["settings"]["tokenizer_sha256"], Path(latents) / MANIFEST)
    # the process count too: the global batch is batch_size x processes
    record = {"experiment": as_record(cfg), "latents": data.manifest["settings"], "latent_scale": data.scale,
              "processes": accelerator.num_processes}
    # the latents are the same when what made them is (the manifest's settings: the tokenizer's sha256, the data, the
    # resolution ...) and so is their measured scale, wherever the folder is and however it is spelled
    if (summary := finished_run(out, record, added={"processes": 1}, ignored=RESULT_INDEPENDENT)) is not None:
        return summary

    # Create model, EMA, optimizer; resume:
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model)
    ema = EMA(model, tc.ema_decay)
    opt = make_optimizer(model, tc.lr, tc.weight_decay)
    meta = resume(out / "checkpoints", record, {"model": model, "ema": ema.model}, {"opt": opt}, what="this run",
                  ignored=RESULT_INDEPENDENT, added={"processes": 1})
    start = meta["step"] if meta else 0
    elapsed = meta["elapsed"] if meta else 0.0
    guard = NonFiniteGuard(tc.max_nonfinite_in_row, meta["nonfinite_skipped"] if meta else 0)
    ema.model.to(device)
    model, opt = accelerator.prepare(model, opt)
    raw = accelerator.unwrap_model(model)
    diffusion = GaussianDiffusion(cfg.diffusion)
    schedule = StepSchedule(lengths={"image": len(data)}, batch_sizes={"image": tc.batch_size}, seed=tc.seed,
                            rank=accelerator.process_index, world_size=accelerator.num_processes)
    stop = tc.steps if stop_at is None else min(tc.steps, stop_at)
    loader = DataLoader(data, batch_sampler=StepBatchSampler(schedule, start, stop), collate_fn=collate,
                        num_workers=tc.num_workers)
    metrics = MetricsLog(out, start, enabled=main)
    conditional = cfg.model.num_classes > 0
    # the classes that have training data (the embedded photos hold some back for validation): sampled by default
    trained_classes = sorted(set(data.labels.tolist())) if conditional else []
    pipe = None

    def checkpoint(step: int) -> None:
        if main:
            save_checkpoint(out / "checkpoints", step, {"model": raw.state_dict(), "ema": ema.state_dict()},
                            {"opt": opt.state_dict()},
                            {"config": record, "elapsed": elapsed + time.perf_counter() - t0,
                             "nonfinite_skipped": guard.skipped, "log_window": window}, keep=tc.keep_checkpoints)
        accelerator.wait_for_everyone()

    def validate(step: int) -> None:
        nonlocal pipe
        if not main:
            return
        if pipe is None:
            vae = OmniTokenizer.from_pretrained(tokenizer).to(device)
            pipe = LatentDiffusionPipeline(vae, ema.model, cfg.diffusion, data.latent_shape, data.scale,
                                           data.manifest["settings"].get("class_names"),
                                           {"latents": str(latents), "trained_classes": trained_classes,
                                            **data.manifest["settings"]})
        labels = validation_labels(trained_classes, validation_samples)
        guided = labels is not None and cfg.model.class_dropout_prob > 0  # a null class to guide against
        write_samples(pipe, labels, validation_samples, out / "samples" / f"step_{step:08d}", tc.seed,
                      cfg.sample.guidance_scales[-1] if guided else 1.0)

    # Train:
    if main and start:
        print(f"resuming from {meta['path']} (step {start})")
    t0 = time.perf_counter()
    model.train()
    # the sums of the logging window in progress (a resume goes on with the checkpoint's, so that the first row after
    # it covers its whole window)
    window: dict[str, float] = dict(meta.get("log_window", {})) if meta else {}
    bar = tqdm(total=tc.steps, initial=start, desc=cfg.model.kind, disable=not main, dynamic_ncols=True)
    for step, batch in zip(range(start, stop), loader):
        seed_step(tc.seed, step, accelerator.process_index, accelerator.num_processes)
        set_lr(opt, tc.lr_at(step))
        x = batch["latents"].to(device)
        y = batch["label"].to(device) if conditional else None
        t, noise = step_noise(tc.seed, step, x, diffusion.num_steps, accelerator.process_index,
                              accelerator.num_processes)
        with accelerator.autocast():
            terms = diffusion.training_losses(model, x, t, y, noise)
        loss = terms["loss"].mean()
        bad = guard.is_bad(loss, accelerator)
        if not bad:
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if tc.grad_clip is not None and step >= tc.grad_clip_from:
                accelerator.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            ema.update(raw)
            for k, v in terms.items():
                window[k] = window.get(k, 0.0) + v.detach().mean().item()
            window["n"] = window.get("n", 0) + 1
        if guard.record(bad):
            checkpoint(step)
            raise guard.error(f"{cfg.model.kind} training", step, {k: v.mean() for k, v in terms.items()},
                              out / "checkpoints")
        bar.update(1)
        done = step + 1
        if done % tc.log_every == 0 and window.get("n"):
            row = {k: v / window["n"] for k, v in window.items() if k != "n"}
            row.update(lr=opt.param_groups[0]["lr"], nonfinite_skipped=guard.skipped,
                       seconds=elapsed + time.perf_counter() - t0)
            metrics.log(done, row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", mse=f"{row['mse']:.4f}")
            window = {}
        if done % tc.checkpoint_every == 0 or done == stop:
            checkpoint(done)
        if done % tc.validate_every == 0 or done == tc.steps:
            validate(done)
    bar.close()
    wall = elapsed + time.perf_counter() - t0
    summary = {"generator": cfg.model.kind, "task": "video" if len(data.latent_shape) == 4 else "image",
               "steps": stop, "train_seconds": wall, "data": str(Path(latents).resolve()),
               "latent_scale": data.scale, "tokenizer": tokenizer,
               "tokenizer_sha256": data.manifest["settings"]["tokenizer_sha256"],
               "parameters": sum(p.numel() for p in raw.parameters()), "threads": torch.get_num_threads(),
               **precision_record(accelerator),
               "processes": accelerator.num_processes, "nonfinite_skipped": guard.skipped,
               "config": as_record(cfg), "record": record}
    if stop < tc.steps:
        metrics.close()
        return {**summary, "stopped_at": stop}
    if main:
        if pipe is None:  # resumed after the last step
            validate(tc.steps)
        pipe.save_pretrained(out / "final")
        summary["final"] = str((out / "final").resolve())
        atomic_write_json(out / "summary.json", summary)
    metrics.close()
    accelerator.wait_for_everyone()
    return summary


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", help="tiny | small | paper, or a YAML path")
    ap.add_argument("--experiment", required=True, choices=["dit", "latte"])
    ap.add_argument("--latents", required=True, help="folder written by diffusion_generation.extract_latents")
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--tokenizer", default=None, help="VAE for samples (default: the one the latents came from)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value")
    ap.add_argument("--restart", action="store_true", help="discard this run's checkpoints and train again")
    args = ap.parse_args(argv)
    cfg = experiment_config(args.scale, args.experiment, args.overrides)
    out = Path(args.out)
    summary = train(cfg, args.latents, out, args.tokenizer, restart=args.restart)
    print(json.dumps({k: summary[k] for k in ("steps", "train_seconds", "latent_scale", "parameters")}))
    return summary


if __name__ == "__main__":
    main()
