"""Train DiT (images) or Latte (videos) on extracted latents, as DiT's train.py does.

    python -m diffusion_generation.train --scale small --experiment dit --latents runs/small/dit_imagenet/latents \
        --out runs/small/dit_imagenet
    accelerate launch -m diffusion_generation.train --scale paper --experiment latte \
        --latents runs/paper/latte_ucf/latents --out runs/paper/latte_ucf                  # one or many GPUs

Writes `<out>/`: checkpoints/ (model, EMA and optimizer; a killed run resumes exactly where it stopped on the
next call), metrics.jsonl + tb/, validation/step_XXXXXXXX/grid.{png,gif} (samples of the EMA model at each
validation), final/ (a pipeline folder: EMA model + VAE + scheduler settings, see pipeline.py) and summary.json;
samples/ is the sampler's (sample.py).
The tokenizer is loaded only to decode validation samples and to write final/.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from shared.data import StepSchedule
from shared.data.collate import collate
from shared.data.sampling import StepBatchSampler
from shared.extraction import MANIFEST
from shared.media import grid
from shared.provenance import check_sha256
from shared.training import (EMA, Run, Step, discard_run, finished_run, locks_run_folder, make_accelerator,
                             precision_record, rank_rows, run_loop, start_run, step_generator)
from shared.training.checkpoint import as_record, write_summary
from tokenizer import OmniTokenizer

from .config import DiffusionTrainConfig, ExperimentConfig, experiment_config
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


def validation_pipeline(cfg: ExperimentConfig, data: LatentSet, latents: str | Path, tokenizer: str,
                        model: torch.nn.Module, device) -> LatentDiffusionPipeline:
    """The pipeline around the EMA model `model` that validation samples from and final/ holds; it records the
    classes that have training data (the embedded photos hold some back for validation), which it samples by
    default."""
    settings = data.manifest["settings"]
    classes = sorted(set(data.labels.tolist())) if cfg.model.num_classes > 0 else []
    vae = OmniTokenizer.from_pretrained(tokenizer).to(device)
    vae.register_to_config(scaling_factor=data.scale)  # the latents' measured scale, kept by the VAE as diffusers does
    return LatentDiffusionPipeline(vae, model, cfg.diffusion, list(data.latent_shape),
                                   settings.get("class_names"),
                                   {"latents": str(latents), "trained_classes": classes, **settings})


def write_samples(pipe: LatentDiffusionPipeline, n: int, path: Path, seed: int, guidance_scale: float) -> None:
    """n samples of the pipeline's model, cycling through its trained classes (an unconditional model: n samples), as
    a PNG grid (images) or a GIF grid (clips)."""
    classes = pipe.info["trained_classes"]
    labels = torch.tensor(classes)[torch.arange(n) % len(classes)] if classes else None
    pixels = pipe(labels=labels, num_samples=None if labels is not None else n, guidance_scale=guidance_scale,
                  seed=seed)
    grid(pixels, path, per_row=8 if pixels.shape[2] == 1 else 4)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW as DiT trains with it, in PyTorch's fused implementation (one kernel over all parameters instead of a
    loop of small ones; the same update to float rounding)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


# ----------------------------------------------------------------------------- training


def step_noise(seed: int, step: int, x: torch.Tensor, num_steps: int, rank: int, world_size: int):
    """This rank's timesteps and noise: drawn for the whole global batch from the step's generator, the same on every
    rank, and sliced, so that N processes of batch b train as one process of batch N * b does."""
    g, n = step_generator(seed, step), world_size * x.shape[0]
    t = rank_rows(torch.randint(0, num_steps, (n,), generator=g), rank, world_size)
    noise = rank_rows(torch.randn((n, *x.shape[1:]), generator=g), rank, world_size)
    return t.to(x.device), noise.to(x.device, x.dtype)


def run_record(cfg: ExperimentConfig, data: LatentSet, processes: int) -> dict:
    """What the weights depend on: the experiment, the latents (the same when what made them is: the manifest's
    settings, the tokenizer's sha256, the data, the resolution ..., and so is their measured scale, wherever the
    folder is and however it is spelled) and the process count (the global batch is batch_size x processes)."""
    return {"experiment": as_record(cfg), "latents": data.manifest["settings"], "latent_scale": data.scale,
            "processes": processes}


def step_batches(data: LatentSet, tc: DiffusionTrainConfig, accelerator, run: Run) -> DataLoader:
    """The batches of steps run.start .. run.stop: each rank's share of the global batch of each step, a function of
    the step alone (shared.data's step schedule)."""
    schedule = StepSchedule(lengths={"image": len(data)}, batch_sizes={"image": tc.batch_size}, seed=tc.seed,
                            rank=accelerator.process_index, world_size=accelerator.num_processes)
    return DataLoader(data, batch_sampler=StepBatchSampler(schedule, run.start, run.stop), collate_fn=collate,
                      num_workers=tc.num_workers)


# fields of the record that do not change the trained weights: a run may resume, or a finished one be reused, with
# other values (sampling settings are the sampler's; validation samples draw from their own generator; compiled code
# computes the same function to float rounding)
RESULT_INDEPENDENT = ("experiment.sample", "experiment.diffusion.sampler", "experiment.diffusion.sampling_steps",
                      "experiment.train.num_workers", "experiment.train.log_every",
                      "experiment.train.checkpoint_every", "experiment.train.validate_every",
                      "experiment.train.keep_checkpoints", "experiment.train.compile")


@locks_run_folder
def train(cfg: ExperimentConfig, latents: str | Path, out: str | Path, tokenizer: str | None = None,
          restart: bool = False, stop_at: int | None = None, validation_samples: int = 16) -> dict:
    """Train (resuming from `out`'s latest checkpoint; restart: discard what the run wrote first); returns the
    summary. stop_at: leave after that many steps with a checkpoint, as if killed."""
    tc, out = cfg.train, Path(out)
    if restart:
        discard_run(out)
    accelerator = make_accelerator(precision=tc.precision, run=out)
    device = accelerator.device
    data = LatentSet(latents)
    check_data(cfg, data)
    settings = data.manifest["settings"]
    tokenizer = tokenizer or settings["tokenizer"]
    check_sha256(tokenizer, settings["tokenizer_sha256"], Path(latents) / MANIFEST)
    record = run_record(cfg, data, accelerator.num_processes)
    if (summary := finished_run(out, record, ignored=RESULT_INDEPENDENT)) is not None:
        return summary

    # Model, EMA, optimizer; resume; data:
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model)
    ema = EMA(model, tc.ema_decay)
    opt = make_optimizer(model, tc.lr, tc.weight_decay)
    run = start_run(accelerator, out, tc, record, {"model": model, "ema": ema.model}, {"opt": opt}, stop_at=stop_at,
                    what=f"this {cfg.model.kind} run", ignored=RESULT_INDEPENDENT)
    ema.model.to(device)
    model, opt = accelerator.prepare(model, opt)
    raw = accelerator.unwrap_model(model)
    diffusion = GaussianDiffusion(cfg.diffusion)
    loader = step_batches(data, tc, accelerator, run)

    def inputs(step: int, batch: dict):
        x = batch["latents"].to(device)
        y = batch["label"].to(device) if cfg.model.num_classes > 0 else None
        t, noise = step_noise(tc.seed, step, x, diffusion.num_steps, accelerator.process_index,
                              accelerator.num_processes)
        return x, t, y, noise

    def loss(x, t, y, noise):  # the part of a step train.compile compiles
        terms = {k: v.mean() for k, v in diffusion.training_losses(model, x, t, y, noise).items()}
        return terms["loss"], terms

    # Train, with samples of the EMA model at each validation (guided where the model has a null class):
    pipe = validation_pipeline(cfg, data, latents, tokenizer, ema.model, device) if accelerator.is_main_process else None
    guidance = cfg.sample.guidance_scales[-1] if cfg.model.num_classes and cfg.model.class_dropout_prob > 0 else 1.0
    model.train()
    trained = run_loop(accelerator, run, Step(inputs, loss, model, opt, tc.grad_clip, tc.grad_clip_from,
                                              after=lambda step: ema.update(raw)), loader,
                       lambda step, folder: write_samples(pipe, validation_samples, folder / "grid", tc.seed, guidance),
                       desc=cfg.model.kind)

    # Final: the pipeline folder and the summary
    summary = {"generator": cfg.model.kind, "task": "video" if len(data.latent_shape) == 4 else "image",
               "steps": run.stop, "train_seconds": trained.seconds, "data": str(Path(latents).resolve()),
               "latent_scale": data.scale, "tokenizer": tokenizer, "tokenizer_sha256": settings["tokenizer_sha256"],
               "parameters": sum(p.numel() for p in raw.parameters()), "threads": torch.get_num_threads(),
               **precision_record(accelerator), **trained.compile, "processes": accelerator.num_processes,
               "nonfinite_skipped": trained.nonfinite_skipped, "config": as_record(cfg), "record": record}
    if trained.stopped_at is not None:
        return {**summary, "stopped_at": trained.stopped_at}
    if accelerator.is_main_process:
        pipe.save_pretrained(out / "final")
        summary["final"] = str((out / "final").resolve())
        write_summary(out, summary)
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
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = experiment_config(args.scale, args.experiment, args.overrides)
    out = Path(args.out)
    summary = train(cfg, args.latents, out, args.tokenizer, restart=args.restart)
    print(json.dumps({k: summary[k] for k in ("steps", "train_seconds", "latent_scale", "parameters")}))
    return summary


if __name__ == "__main__":
    main()
