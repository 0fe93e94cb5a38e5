"""Sample from a trained LM into the agreed samples layout, with grids to look at and a result record.

    python -m lm_generation.sample --model runs/small/lm_imagenet/final --out runs/small/lm_imagenet/cfg2 \
        --scale small --set sample.cfg_scale=2.0 --result results/small/lm_imagenet.json
    python -m lm_generation.sample --model runs/small/lm_k600/final --codes runs/small/codes/clips_val \
        --out runs/small/lm_k600/samples_out                                   # frame prediction: given frames

`<out>/samples/<class:04d>/<index:05d>.png|mp4` (what eval.sample_metrics and eval.class_consistency read;
class 0 when unconditional; emptied first, so that no earlier run's file is scored with these), `<out>/grids/class_XXXX.png|gif` (one row of samples per class), `<out>/grid.png|gif` (a row per class, up to 24), and with
--result a JSON record: model, tokenizer and hash, training steps and seconds, sampling settings and seconds.
Class-conditional models sample `sample.per_class` items of every class seen in training (or --classes);
frame prediction continues each clip of --codes (its first cond_frames latent frames), up to --limit clips.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shared.atomic import atomic_write_json
from shared.extraction import ShardDataset
from shared.media import grid, sample_path, write_sample

from .config import SampleConfig, lm_config
from .pipeline import ARPipeline


def requests(pipe: ARPipeline, s: SampleConfig, classes: list[int] | None, codes_dir: str | None,
             limit: int | None, conditional: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """What to sample: class per sample (-1 = null), given codes (frame prediction) or None, folder label."""
    layout = pipe.layout
    if layout.num_given:
        if codes_dir is None:
            raise SystemExit("this LM predicts frames: pass --codes with an extraction folder of clips to continue")
        data = ShardDataset(codes_dir)
        if list(data.settings["grid"]) != list(layout.grid):
            raise SystemExit(f"{codes_dir}: codes of grid {data.settings['grid']}, the LM wants {list(layout.grid)}")
        codes, labels = data.arrays["codes"], data.arrays["labels"]
        n = len(codes) if limit is None else min(len(codes), limit)
        given = codes[:n].to(torch.int32).long().reshape(n, -1)[:, : layout.num_given]
        folder_label = labels[:n].long() if conditional else torch.zeros(n, dtype=torch.long)
        return (folder_label if conditional else torch.full((n,), -1)), given, folder_label
    if not conditional:
        n = s.per_class if limit is None else limit
        return torch.full((n,), -1), None, torch.zeros(n, dtype=torch.long)
    wanted = classes if classes is not None else list(layout.seen_classes or range(layout.num_classes))
    labels = torch.tensor(wanted).repeat_interleave(s.per_class)
    return labels, None, labels


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="pipeline folder (a training run's final/)")
    ap.add_argument("--out", required=True, help="writes <out>/samples/ and <out>/grids/")
    ap.add_argument("--scale", default="small", help="config whose sample: section gives the defaults")
    ap.add_argument("--set", action="append", default=[], metavar="sample.FIELD=VALUE", help="config override")
    ap.add_argument("--classes", default=None, help="comma-separated class labels (default: those seen in training)")
    ap.add_argument("--codes", default=None, help="frame prediction: extraction folder of the clips to continue")
    ap.add_argument("--limit", type=int, default=None, help="frame prediction / unconditional: number of samples")
    ap.add_argument("--result", default=None, help="write the run's record to this JSON")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit must be >= 1, got {args.limit}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = ARPipeline.from_pretrained(args.model, device)
    summary_file = Path(args.model).parent / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    task = summary.get("task") or ("frames" if pipe.layout.num_given else "video" if pipe.layout.grid[0] > 1 else "image")
    s = lm_config(args.scale, args.set, task).sample
    conditional = summary.get("config", {}).get("train", {}).get("conditional", True)
    classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    labels, given, folder_label = requests(pipe, s, classes, args.codes, args.limit, conditional)
    out = Path(args.out)
    samples_dir = out / "samples"
    # a previous sampling run's files are never mixed with these; only the sampler's own files go (`out` may be the
    # training run's folder, whose grids/step_*.png are the trainer's)
    shutil.rmtree(samples_dir, ignore_errors=True)
    for old in (out / "grids").glob("class_*"):
        old.unlink()
    settings = {k: v for k, v in dataclasses.asdict(s).items() if k not in ("per_class", "grid_classes", "batch_size")}
    settings["cfg_scale"] = s.cfg_scale if conditional else None
    start = time.perf_counter()
    by_class: dict[int, list[torch.Tensor]] = {}
    for first in tqdm(range(0, len(labels), s.batch_size), desc="sample"):
        sl = slice(first, first + s.batch_size)
        batch = dict(settings, seed=s.seed + first)  # each batch its own seed: any batch can be redone alone
        pixels = pipe(labels[sl], None if given is None else given[sl], **batch).cpu()
        for j, clip in enumerate(pixels):
            label = int(folder_label[first + j])
            index = first + j
            write_sample(clip, sample_path(samples_dir, label, index, clip.shape[1] > 1))
            by_class.setdefault(label, []).append(clip)
    seconds = time.perf_counter() - start
    for label, clips in by_class.items():
        grid(torch.stack(clips[:8]), out / "grids" / f"class_{label:04d}", per_row=8)
    # one sheet to look at: a row per class (at most 24), up to 8 samples each, empty cells black
    rows = [torch.stack(clips[:8] + [torch.full_like(clips[0], -1)] * (8 - len(clips[:8])))
            for _, clips in sorted(by_class.items())[:24]]
    sheet = grid(torch.cat(rows), out / "grid", per_row=8)
    record = {"model": str(Path(args.model).resolve()), "task": task, "scale": args.scale,
              "parameters": summary.get("parameters"), "codes": summary.get("codes"),
              "tokenizer": summary.get("tokenizer"), "tokenizer_sha256": summary.get("tokenizer_sha256"),
              "train_steps": summary.get("steps"), "train_seconds": summary.get("train_seconds"),
              "train_precision": summary.get("precision"), "samples": str(samples_dir.resolve()),
              "n_samples": len(labels), "classes": sorted(by_class), "sampling": settings, "grid": str(sheet),
              "sample_seconds": seconds, "threads": torch.get_num_threads(), "device": device,
              "precision": "fp32", "given_codes_from": args.codes,
              "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if args.result:
        atomic_write_json(args.result, record)
    print(json.dumps({"samples": record["samples"], "n_samples": record["n_samples"],
                      "sample_seconds": round(seconds, 1)}))
    return record


if __name__ == "__main__":
    main()
