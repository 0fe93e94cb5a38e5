"""Sample a trained pipeline into folders for evaluation, with grids to look at.

    python -m diffusion_generation.sample --pipeline runs/small/dit_imagenet/final --out runs/small/dit_imagenet/samples \
        --scale small                                   # guidance scales, counts, sampler from the config
    python -m diffusion_generation.sample --pipeline runs/paper/dit_imagenet/final --out samples/ --guidance 1.5 \
        --per-class 50 --set diffusion.sampler=ddim --set diffusion.sampling_steps=50

Writes shared.sample_folders' layout: `<out>/cfg<s>/<class:04d>/<index:05d>.png` (images) or `.mp4` (clips) for
each guidance scale s (class 0 for an unconditional model), a grid beside each folder and `<out>/samples.json`. A
killed run resumes with the same files; a folder sampled with another sampler, step count, seed, model or VAE (by
their sha256) is refused, never mixed.
"""
from __future__ import annotations

import argparse
import json

import torch

from shared.sample_folders import add_sampling_flags, check_sampling_flags, write_sample_folders

from .config import experiment_config
from .pipeline import LatentDiffusionPipeline


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sampling_flags(ap)
    ap.add_argument("--experiment", default=None, choices=["dit", "latte"],
                    help="the pipeline's model, checked (default: read from the pipeline)")
    args = ap.parse_args(argv)
    pipe = LatentDiffusionPipeline.from_pretrained(args.pipeline, precision=args.precision)
    experiment = "latte" if len(pipe.latent_shape) == 4 else "dit"
    if args.experiment not in (None, experiment):
        raise SystemExit(f"--experiment {args.experiment}: {args.pipeline} holds a {experiment} model; its sampling "
                         f"settings are the config's {experiment} section (leave --experiment out)")
    cfg = experiment_config(args.scale, experiment, args.overrides)
    num_classes = pipe.transformer.config.num_classes
    # a class-conditional model samples the classes it was trained on (first N with --classes); unconditional: 0
    classes = (pipe.info.get("trained_classes") or list(range(num_classes))) if num_classes else [0]
    check_sampling_flags(args)
    first = args.classes if args.classes is not None else cfg.sample.classes
    classes = classes[: len(classes) if first is None else first]
    per_class = cfg.sample.per_class if args.per_class is None else args.per_class
    scales = args.guidance or list(cfg.sample.guidance_scales)
    if not num_classes and any(s != 1.0 for s in scales):
        raise ValueError(f"{args.pipeline}: an unconditional model has no classifier-free guidance; use --guidance 1")
    seed = cfg.sample.seed if args.seed is None else args.seed
    settings = {"generator": experiment, "scale": args.scale, "model": pipe.info, **pipe.provenance,
                "classes": classes,
                "per_class": per_class, "seed": seed, "batch_size": cfg.sample.batch_size,
                "sampling": {"sampler": cfg.diffusion.sampler, "sampling_steps": cfg.diffusion.sampling_steps},
                "precision": pipe.precision}
    jobs = [(c, i) for c in classes for i in range(per_class)]
    conditional = num_classes > 0

    def draw(positions: list[int], batch_seed: int, scale: float) -> torch.Tensor:
        labels = [jobs[p][0] for p in positions] if conditional else None
        return pipe(labels=labels, num_samples=len(positions), guidance_scale=scale, seed=batch_seed,
                    sampler=cfg.diffusion.sampler, steps=cfg.diffusion.sampling_steps)

    record = write_sample_folders(args.out, settings, jobs, scales, draw, video=len(pipe.latent_shape) == 4,
                                  context={"pipeline": args.pipeline, "threads": torch.get_num_threads(),
                                           "device": str(pipe.device)})
    print(json.dumps(record["folders"], indent=1))
    return record


if __name__ == "__main__":
    main()
