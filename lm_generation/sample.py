"""Sample from a trained LM into the samples folders eval/ reads, with grids to look at.

    python -m lm_generation.sample --pipeline runs/small/lm_imagenet/final --out runs/small/lm_imagenet/samples \
        --scale small                                   # guidance scales, counts, top-k ... from the config
    python -m lm_generation.sample --pipeline runs/small/lm_k600/final --codes runs/small/codes/clips_val \
        --out runs/small/lm_k600/samples                # frame prediction: continues the given clips

Writes shared.sample_folders' layout, as the diffusion sampler does: `<out>/cfg<s>/<class:04d>/<index:05d>.png|mp4`
for each guidance scale s (class 0 when unconditional), a grid beside each folder and `<out>/samples.json` (the
settings, the sha256 of the LM and of its tokenizer, and per folder its count, seconds and files' sha256). A killed
run resumes with the same files; a folder of other settings is refused. Class-conditional models sample
`sample.per_class` items of every class seen in training (the first N with --classes); frame prediction continues
each clip of --codes (its first cond_frames latent frames), up to --limit clips: codes the pipeline's own tokenizer
extracted (compared by sha256), recorded by the sha256 of the codes given, wherever they were read from.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from shared.extraction import ShardDataset
from shared.provenance import tensors_sha256
from shared.sample_folders import add_sampling_flags, check_sampling_flags, write_sample_folders

from .config import LMSampleConfig, lm_config
from .pipeline import ARPipeline
from .sampling import decode_choices


def requests(pipe: ARPipeline, s: LMSampleConfig, classes: int | None, codes_dir: str | None,
             limit: int | None, conditional: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """What to sample: class per sample (-1 = null), given codes (frame prediction) or None, folder label."""
    layout = pipe.layout
    if layout.num_given:
        if codes_dir is None:
            raise SystemExit("this LM predicts frames: pass --codes with an extraction folder of clips to continue")
        data = ShardDataset(codes_dir)
        extracted_by, own = data.settings.get("tokenizer_sha256"), pipe.provenance.get("tokenizer_sha256")
        if extracted_by != own:
            raise SystemExit(f"{codes_dir}: codes extracted by tokenizer {str(extracted_by)[:12]}..., not by this "
                             f"pipeline's tokenizer ({str(own)[:12]}...): their indices mean other pictures; extract "
                             f"them with the pipeline's tokenizer/")
        if list(data.settings["grid"]) != list(layout.grid):
            raise SystemExit(f"{codes_dir}: codes of grid {data.settings['grid']}, the LM wants {list(layout.grid)}")
        codes, labels = data.arrays["codes"], data.arrays["labels"]
        n = len(codes) if limit is None else min(len(codes), limit)
        given = codes[:n].to(torch.int32).long().reshape(n, -1)[:, : layout.num_given]
        folder_label = labels[:n].long() if conditional else torch.zeros(n, dtype=torch.long)
        return (folder_label if conditional else torch.full((n,), -1)), given, folder_label
    if codes_dir is not None:
        raise SystemExit(f"--codes {codes_dir}: this LM generates from nothing (it was trained with no given frames); "
                         f"--codes is for a frame-prediction LM")
    if not conditional:
        n = s.per_class if limit is None else limit
        return torch.full((n,), -1), None, torch.zeros(n, dtype=torch.long)
    wanted = list(layout.seen_classes or range(layout.num_classes))[:classes]
    labels = torch.tensor(wanted).repeat_interleave(s.per_class)
    return labels, None, labels


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sampling_flags(ap)
    ap.add_argument("--codes", default=None, help="frame prediction: extraction folder of the clips to continue")
    ap.add_argument("--limit", type=int, default=None, help="frame prediction / unconditional: number of samples")
    args = ap.parse_args(argv)
    check_sampling_flags(args)
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit must be >= 1, got {args.limit}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = ARPipeline.from_pretrained(args.pipeline, device, args.precision)
    summary_file = Path(args.pipeline).parent / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    task = summary.get("task") or ("frames" if pipe.layout.num_given else "video" if pipe.layout.grid[0] > 1 else "image")
    overrides = args.overrides + ([f"sample.per_class={args.per_class}"] if args.per_class is not None else []) + \
        ([f"sample.seed={args.seed}"] if args.seed is not None else [])
    s = lm_config(args.scale, overrides, task).sample
    conditional = summary.get("config", {}).get("train", {}).get("conditional", True)
    scales = args.guidance or list(s.guidance_scales)
    if not conditional and any(g != 1.0 for g in scales):
        raise SystemExit(f"{args.pipeline}: an unconditional model has no classifier-free guidance; use --guidance 1")
    labels, given, folder_label = requests(pipe, s, args.classes, args.codes, args.limit, conditional)
    seen: dict[int, int] = {}
    jobs = []
    for label in folder_label.tolist():  # (class, index within the class)
        jobs.append((label, seen.get(label, 0)))
        seen[label] = seen.get(label, 0) + 1
    settings = {"generator": "lm", "task": task, "scale": args.scale, "classes": sorted(seen), **pipe.provenance,
                "per_class": s.per_class, "seed": s.seed, "batch_size": s.batch_size,
                "sampling": {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
                             "cfg_interval": s.cfg_interval},
                "given_codes_sha256": None if given is None else tensors_sha256(given, labels),
                "n": len(jobs), "precision": pipe.precision}

    choices: dict = {}  # compile="auto"'s decisions, per batch size: samples.json records them as they are made

    def draw(positions: list[int], batch_seed: int, scale: float) -> torch.Tensor:
        pixels = pipe(labels[positions], None if given is None else given[positions], guidance_scale=scale,
                      cfg_interval=s.cfg_interval, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                      seed=batch_seed, compile=s.compile).cpu()
        choices.update(decode_choices(pipe.lm))
        return pixels

    record = write_sample_folders(args.out, settings, jobs, scales, draw, video=pipe.layout.grid[0] > 1,
                                  context={"pipeline": args.pipeline, "given_codes_from": args.codes,
                                           "threads": torch.get_num_threads(), "device": device,
                                           "compile": s.compile, "decode_choices": choices})
    print(json.dumps(record["folders"], indent=1))
    return record


if __name__ == "__main__":
    main()
