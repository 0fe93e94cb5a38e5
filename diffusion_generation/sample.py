"""Sample a trained pipeline into folders for evaluation, with grids to look at.

    python -m diffusion_generation.sample --pipeline runs/small/dit_imagenet/final --out runs/small/dit_imagenet/samples \
        --scale small --experiment dit                       # guidance scales, counts, sampler from the config
    python -m diffusion_generation.sample --pipeline runs/paper/dit_imagenet/final --out samples/ --guidance 1.5 \
        --per-class 50 --set diffusion.sampler=ddim --set diffusion.sampling_steps=50

For each guidance scale s it writes `<out>/cfg<s>/<class:04d>/<index:05d>.png` (images) or `.mp4` (clips,
lossless RGB H.264, which decord reads back exactly), the layout `eval.sample_metrics` and
`eval.class_consistency` read (class 0 for an unconditional model), a grid beside the folder
(`<out>/cfg<s>.png`, or `.gif` for clips; a row per class, up to 24 x 8) and `<out>/samples.json` with the settings.
Every batch has its own seed, so a killed run skips the batches already written and gives the same files; a
folder sampled with another sampler, step count, seed or model (by its weights' sha256) is refused, never mixed:
samples.json holds the settings before the first file is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shared.atomic import atomic_write_json, remove_temporary_files
from shared.media import grid, read_sample, write_sample
from shared.provenance import file_sha256

from .config import experiment_config
from .pipeline import LatentDiffusionPipeline


GRID_ROWS, GRID_COLUMNS = 24, 8


def sample_folder(pipe: LatentDiffusionPipeline, folder: Path, classes: list[int], per_class: int,
                  guidance_scale: float, batch_size: int, seed: int) -> tuple[torch.Tensor, int]:
    """Write per_class samples of each class into folder; returns the grid's samples (the first GRID_COLUMNS of
    each of the first GRID_ROWS classes, row by row) and its row length."""
    video = len(pipe.latent_shape) == 4
    suffix = ".mp4" if video else ".png"
    jobs = [(c, i) for c in classes for i in range(per_class)]
    conditional = pipe.model.config.num_classes > 0
    columns = min(per_class, GRID_COLUMNS)
    in_grid = lambda c, i: c in classes[:GRID_ROWS] and i < columns  # noqa: E731
    shown: dict[tuple[int, int], torch.Tensor] = {}
    for c in classes:  # what a killed run's unfinished writes left
        remove_temporary_files(folder / f"{c:04d}")
    for b, start in enumerate(tqdm(range(0, len(jobs), batch_size), desc=f"cfg {guidance_scale}", unit="batch")):
        batch = jobs[start : start + batch_size]
        paths = [folder / f"{c:04d}" / f"{i:05d}{suffix}" for c, i in batch]
        if all(p.is_file() for p in paths):  # written by an earlier run: only read back what the grid shows
            shown.update({(c, i): read_sample(p) for (c, i), p in zip(batch, paths) if in_grid(c, i)})
            continue
        labels = [c for c, _ in batch] if conditional else None
        pixels = pipe(labels=labels, num_samples=len(batch), guidance_scale=guidance_scale, seed=seed * 100_003 + b)
        for (c, i), path, x in zip(batch, paths, pixels):
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file():
                write_sample(x, path)
            if in_grid(c, i):
                shown[(c, i)] = x.cpu()
    return torch.stack([shown[k] for k in sorted(shown)]), columns


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", required=True, help="a pipeline folder (the trainer's final/)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--scale", default="small", help="config for the sampling settings: tiny | small | paper | YAML")
    ap.add_argument("--experiment", default=None, choices=["dit", "latte"],
                    help="config section (default: from the pipeline's model)")
    ap.add_argument("--guidance", type=float, action="append", default=None,
                    help="guidance scale (repeatable; default: the config's sample.guidance_scales)")
    ap.add_argument("--per-class", type=int, default=None)
    ap.add_argument("--classes", type=int, default=None,
                    help="sample the first N classes of those the model was trained on (default: all)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value")
    args = ap.parse_args(argv)
    pipe = LatentDiffusionPipeline.from_pretrained(args.pipeline)
    experiment = args.experiment or ("latte" if len(pipe.latent_shape) == 4 else "dit")
    cfg = experiment_config(args.scale, experiment, args.overrides)
    pipe.diffusion = dataclasses.replace(pipe.diffusion, sampler=cfg.diffusion.sampler,
                                         sampling_steps=cfg.diffusion.sampling_steps)
    num_classes = pipe.model.config.num_classes
    # a class-conditional model samples the classes it was trained on (first N with --classes); unconditional: 0
    classes = (pipe.info.get("trained_classes") or list(range(num_classes))) if num_classes else [0]
    for flag, value in (("--classes", args.classes), ("--per-class", args.per_class)):
        if value is not None and value < 1:
            raise SystemExit(f"{flag} must be >= 1, got {value}")
    first = args.classes if args.classes is not None else cfg.sample.classes
    classes = classes[: len(classes) if first is None else first]
    per_class = cfg.sample.per_class if args.per_class is None else args.per_class
    scales = args.guidance or list(cfg.sample.guidance_scales)
    if not num_classes and any(s != 1.0 for s in scales):
        raise ValueError(f"{args.pipeline}: an unconditional model has no classifier-free guidance; use --guidance 1")
    out = Path(args.out)
    record = {"pipeline": args.pipeline, "model": pipe.info, "model_sha256": file_sha256(Path(args.pipeline) / "model"),
              "sampler": cfg.diffusion.sampler,
              "sampling_steps": cfg.diffusion.sampling_steps, "classes": len(classes), "per_class": per_class,
              "seed": cfg.sample.seed, "batch_size": cfg.sample.batch_size, "threads": torch.get_num_threads(),
              "precision": "fp32", "device": str(pipe.device), "folders": {}}
    earlier = json.loads((out / "samples.json").read_text()) if (out / "samples.json").is_file() else None
    if earlier is not None:  # files of another sampler / seed / model are never mixed with these
        keys = ("pipeline", "model", "model_sha256", "sampler", "sampling_steps", "classes", "per_class", "seed",
                "batch_size")
        changed = {k: (earlier.get(k), record[k]) for k in keys if earlier.get(k) != record[k]}
        if "model_sha256" in changed:  # the weights' hash, not the whole digest, in the message
            changed["model_sha256"] = tuple(v and v[:12] for v in changed["model_sha256"])
        if changed:
            raise ValueError(f"{out / 'samples.json'}: these folders were sampled with other settings {changed}; "
                             f"choose another --out or delete it")
        record["folders"] = earlier.get("folders", {})
    # the settings are on disk before the first sample is: a killed run's files are always accounted for
    atomic_write_json(out / "samples.json", record)
    for s in scales:
        t0 = time.perf_counter()
        folder = out / f"cfg{s:g}"
        shown, columns = sample_folder(pipe, folder, classes, per_class, s, cfg.sample.batch_size, cfg.sample.seed)
        picture = grid(shown, out / f"cfg{s:g}", per_row=columns)
        before = (earlier or {}).get("folders", {}).get(f"{s:g}", {}).get("seconds", 0.0)  # runs that wrote files
        record["folders"][f"{s:g}"] = {"folder": str(folder), "grid": str(picture), "guidance_scale": s,
                                       "n": len(classes) * per_class, "seconds": before + time.perf_counter() - t0}
        atomic_write_json(out / "samples.json", record)
    print(json.dumps(record["folders"], indent=1))
    return record


if __name__ == "__main__":
    main()
