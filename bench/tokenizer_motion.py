"""Whether a tokenizer's codes keep the clips' motion: the same real clips reconstructed by each tokenizer given,
each reconstruction scored by the clip judge (its share of each class, and the judge-feature Fréchet distance to a
second draw of real clips, with the class-average and still clips beside it), and by PSNR over the frames that frame
prediction predicts, against repeating the last given frame (the floor a frame predictor over these codes must beat).

    python -m bench.tokenizer_motion --scale small --tokenizers default=runs/small/tokenizer/joint/final \
        cb8192=<run>/joint/final --json docs/results/motion_codes.json --page docs/tokenizer.md

The clips are eval.judge_references' draws (seeds no training run uses), 16 of each class; the given frames are
those of a frame predictor with two given latent frames at temporal patch 4 (5 frames): PSNR is over frames 5 on.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

from eval.classifier import PRESETS, RealData, load_or_train
from eval.datasets import video_split
from eval.frame_prediction import clip_psnr
from shared.data.collate import collate
from eval.judge_references import reference_points, reconstruct_items, class_items, score
from shared.atomic import atomic_write_json, read_json_object
from shared.doc_blocks import Measured, write_block
from shared.metrics.reconstruction import psnr
from shared.provenance import file_sha256, machine_name

GIVEN_FRAMES = 5
BEGIN = "<!-- motion codes: written by `python -m bench.tokenizer_motion` from its result file; do not edit -->"
END = "<!-- end of motion codes -->"


def future_psnr(x_hat: torch.Tensor, x: torch.Tensor, given: int = GIVEN_FRAMES) -> float:
    """Mean PSNR (dB) over items and over the frames from index `given` on, of clips (B, 3, T, H, W)."""
    if x.shape[2] <= given:
        raise ValueError(f"clips of {x.shape[2]} frames have none after the {given} given")
    return float(clip_psnr(x_hat, x, given).mean())


def repeat_last(x: torch.Tensor, given: int = GIVEN_FRAMES) -> torch.Tensor:
    """Clips whose frames from `given` on repeat the last given frame."""
    return torch.cat([x[:, :, :given], x[:, :, given - 1 : given].expand(-1, -1, x.shape[2] - given, -1, -1)], 2)


def stage_validation(folder: str) -> dict | None:
    """The held-out photo and clip PSNR and block-edge ratio the tokenizer's training stage recorded (its
    summary.json beside the folder), or None."""
    summary = Path(folder).parent / "summary.json"
    if not summary.is_file():
        return None
    v = read_json_object(summary, "stage summary").get("validation") or {}
    return {kind: {"psnr": v[kind]["psnr"], "block_edge": v[kind]["block_edge"]} for kind in ("image", "video")
            if kind in v}


def measure(scale: str, tokenizers: dict[str, str], per_class: int, cache: str | None) -> dict:
    data = RealData("video", "embedded", 64, 17)
    net, record = load_or_train(data, PRESETS[scale]["video"], cache or f"results/{scale}/classifiers")
    known, names = record["known_classes"], record["classes"]
    clips, labels = class_items(data, known, per_class, draw=0)
    refs, space = reference_points(net, data, known, names, per_class, items=(clips, labels))
    rows = {name: {"share": r["share"], "weakest": min(r["per_class"], key=lambda c: c["share"]),
                   "frechet": r["feature_distance"]["frechet"]} for name, r in refs.items()}
    # frame prediction's held-out clips: the validation split (held-out photos, the real videos' last part)
    held_out = video_split("embedded", "classes", "val", 17, None, (64, 64))
    val = collate([held_out[i] for i in range(len(held_out))])["pixels"]
    rows["repeat_last_given"] = {"future_psnr": future_psnr(repeat_last(clips), clips),
                                 "held_out_future_psnr": future_psnr(repeat_last(val), val)}
    for name, folder in tokenizers.items():
        start = time.perf_counter()
        recon = reconstruct_items(clips, folder)
        r = score(net, recon, labels, known, names, space)
        rows[name] = {"tokenizer": folder, "tokenizer_sha256": file_sha256(Path(folder, SAFETENSORS_WEIGHTS_NAME)),
                      "share": r["share"],
                      "per_class": r["per_class"], "weakest": min(r["per_class"], key=lambda c: c["share"]),
                      "frechet": r["feature_distance"]["frechet"], "future_psnr": future_psnr(recon, clips),
                      "psnr": float(psnr(recon, clips).mean()),
                      "held_out_future_psnr": future_psnr(reconstruct_items(val, folder), val),
                      "stage_validation": stage_validation(folder),
                      "seconds": time.perf_counter() - start}
    return {"rows": rows, "tokenizers": list(tokenizers), "per_class": per_class, "given_frames": GIVEN_FRAMES,
            "judge_accuracy": record["held_out_accuracy"], "judge_sha256": record["weights_sha256"],
            "machine": machine_name(), "threads": torch.get_num_threads()}


def validation_cell(v: dict | None) -> str:
    if not v:
        return "-"
    return ", ".join(f"{v[k]['psnr']:.2f} / {v[k]['block_edge']:.2f}" for k in ("image", "video") if k in v)


def table_lines(result: dict) -> list[str]:
    rows, floor = result["rows"], result["rows"]["repeat_last_given"]["future_psnr"]
    held = result["rows"]["repeat_last_given"]["held_out_future_psnr"]
    lines = ["| clips | judge's share (weakest class) | judge-feature FD | PSNR over the predicted frames (dB): "
             "training photos and videos, fresh draws | the same, held-out photos and video parts | "
             "training's held-out PSNR / block-edge ratio: photos, clips |",
             "|---|---|---|---|---|---|"]
    for name in ("real", "class_average", "still"):
        r = rows[name]
        lines.append(f"| {name.replace('_', ' ')} | {r['share']:.0%} ({r['weakest']['name']} {r['weakest']['share']:.0%})"
                     f" | {r['frechet']:.1f} | | | |")
    lines.append(f"| last given frame repeated | | | {floor:.2f} | {held:.2f} | |")
    for name in result["tokenizers"]:
        r = rows[name]
        lines.append(f"| {name} | {r['share']:.0%} ({r['weakest']['name']} {r['weakest']['share']:.0%}) | "
                     f"{r['frechet']:.1f} | {r['future_psnr']:.2f} ({r['future_psnr'] - floor:+.2f}) | "
                     f"{r['held_out_future_psnr']:.2f} ({r['held_out_future_psnr'] - held:+.2f}) | "
                     f"{validation_cell(r.get('stage_validation'))} |")
    lines += ["", f"{result['per_class']} clips of each class, the judge's held-out accuracy "
                  f"{result['judge_accuracy']:.0%}; PSNR over frames {result['given_frames']} on, the "
                  "difference to repeating the last given frame in brackets."]
    return lines


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", choices=["small", "tiny"])
    ap.add_argument("--tokenizers", nargs="*", default=[], metavar="NAME=FOLDER", help="save_pretrained folders")
    ap.add_argument("--per-class", type=int, default=16)
    ap.add_argument("--cache", default=None, help="the judge's folder (default results/<scale>/classifiers)")
    ap.add_argument("--json", required=True, help="result JSON; with no --tokenizers the table is rendered from it")
    ap.add_argument("--page", default=None, help="a Markdown page holding the markers")
    args = ap.parse_args(argv)
    if args.tokenizers:
        pairs = dict(t.split("=", 1) for t in args.tokenizers)
        missing = [f for f in pairs.values() if not Path(f, SAFETENSORS_WEIGHTS_NAME).is_file()]
        if missing:
            raise SystemExit(f"not a tokenizer folder (no {SAFETENSORS_WEIGHTS_NAME}): {', '.join(missing)}")
        result = measure(args.scale, pairs, args.per_class, args.cache)
        atomic_write_json(args.json, result)
    else:
        result = read_json_object(args.json, "motion codes result")
    if args.page:
        write_block(args.page, BEGIN, END, table_lines(result),
                    Measured(args.scale, f"{result['machine']} ({result['threads']} threads)", "fp32"))
    print("\n".join(table_lines(result)))
    return result


if __name__ == "__main__":
    main()
