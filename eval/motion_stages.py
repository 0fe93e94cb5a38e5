"""Where a clip class is lost, stage by stage: the judge's share of real clips of each class, of their
reconstructions by the VAE and by the VQVAE, and of each video generator's samples; the reconstructions' PSNR per
frame index.

    python -m eval.motion_stages --scale small --vq runs/small/tokenizer/joint/final \
        --vae runs/small/tokenizer/kl/final --generators results/small/latte_ucf.json results/small/lm_ucf.json \
        --out results/small/motion_stages.json --page docs/tokenizer.md
    python -m eval.motion_stages --from-result results/small/motion_stages.json --page docs/tokenizer.md

The embedded clips' classes are camera motions over photos and real videos (eval/classifier.py: the judge sees
the camera's motion between consecutive frames besides the middle frame). A class the real clips keep and the
tokenizer's reconstructions lose is lost in the tokenizer (its codes or latents); one the reconstructions keep and the
generator's samples lose is lost in the generator. The same real clips (eval.judge_references' first draw) pass
through both tokenizers. The page's table is rendered from the result file; `--from-result` renders it from one
written before, measuring nothing.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from shared.atomic import read_json_object
from shared.doc_blocks import from_results, write_block
from shared.provenance import machine_name
from shared.metrics.reconstruction import psnr

from .classifier import PRESETS, RealData, device, load_or_train, predict
from .generator_result import GeneratorResult, ResultError, read_result
from .judge_references import class_items, reconstruct_items
from .results import write_result

BEGIN = "<!-- motion stages: written by `python -m eval.motion_stages` from its result file; do not edit -->"
END = "<!-- end of motion stages -->"


def per_class_share(predicted: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> dict[int, float]:
    """Class -> the share of its items the judge assigned to it."""
    return {c: float((predicted[labels == c] == c).double().mean()) for c in classes}


def psnr_by_frame(x_hat: torch.Tensor, x: torch.Tensor) -> list[float]:
    """Mean PSNR (dB) over items of each frame index of clips (B, 3, T, H, W)."""
    return psnr(x_hat, x).reshape(x.shape[0], x.shape[2]).mean(0).tolist()


def best_guidance_shares(result: GeneratorResult) -> tuple[str, float, dict[int, float]]:
    """A generator result's best guidance scale (by class consistency) and its per-class shares."""
    best = max(result.judged(), key=lambda m: m.class_consistency, default=None)
    if best is None:
        raise ValueError(f"{result.experiment}: the result holds no class consistency (an unconditional generator?)")
    return (f"{result.experiment} (guidance {best.guidance_scale:g})", best.class_consistency,
            {c.index: c.share for c in best.class_consistency_per_class})


def measure(scale: str, vq: str | None, vae: str | None, per_class: int, cache: str | None = None) -> dict:
    data = RealData("video", "embedded", 64 if scale != "tiny" else 16, 17 if scale != "tiny" else 5)
    net, record = load_or_train(data, PRESETS[scale]["video"], cache or f"results/{scale}/classifiers")
    known, names = record["known_classes"], record["classes"]
    clips, labels = class_items(data, known, per_class, draw=0)
    stages = {"real clips": (clips, None)}
    for name, folder in (("VAE reconstruction", vae), ("VQVAE reconstruction", vq)):
        if folder:
            stages[name] = (reconstruct_items(clips, folder), folder)
    rows = {}
    for name, (x, folder) in stages.items():
        predicted = torch.cat([predict(net, x[i : i + 32], known).argmax(-1) for i in range(0, len(x), 32)])
        rows[name] = {"share": float((predicted == labels).double().mean()),
                      "per_class": per_class_share(predicted, labels, known), "tokenizer": folder,
                      **({"psnr_by_frame": psnr_by_frame(x, clips)} if folder else {})}
    return {"stages": rows, "classes": {c: names[c] for c in known}, "per_class": per_class,
            "judge_accuracy": record["held_out_accuracy"], "judge": record["weights"],
            "judge_sha256": record["weights_sha256"]}


def table_lines(metrics: dict, generators: list[tuple[str, float, dict]]) -> list[str]:
    """The page's table: a row per class, a column per stage, then the per-frame PSNR of each reconstruction."""
    stages = metrics["stages"]
    heads = list(stages) + [g[0] for g in generators]
    lines = ["| class | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for c, name in metrics["classes"].items():
        cells = [f"{stages[s]['per_class'][c]:.0%}" for s in stages]
        cells += [f"{g[2][int(c)]:.0%}" if int(c) in g[2] else "-" for g in generators]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **all** | " + " | ".join([f"**{stages[s]['share']:.0%}**" for s in stages]
                                           + [f"**{g[1]:.0%}**" for g in generators]) + " |")
    lines += ["", f"The judge's share of each class (its held-out accuracy {metrics['judge_accuracy']:.0%}), "
                  f"{metrics['per_class']} real clips a class (the same clips through each tokenizer); the generators "
                  "at their best guidance scale. PSNR (dB) of the reconstructions by frame index:", ""]
    by_frame = {name: s["psnr_by_frame"] for name, s in stages.items() if "psnr_by_frame" in s}
    frames = len(next(iter(by_frame.values())))
    lines += ["| frame | " + " | ".join(str(i) for i in range(frames)) + " |", "|---" * (1 + frames) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |" for name, values in by_frame.items()]
    return lines


def write_page(record: dict, page: str, force: bool = False) -> bool:
    """The page's table from a result file's record (as written by main), between the markers; False where the page
    has none."""
    metrics = record["metrics"]
    generators = [(g["name"], g["share"], {int(c): share for c, share in g["per_class"].items()})
                  for g in metrics["generators"]]
    measured = from_results(record["scale"], [record.get("machine")], [record.get("threads")],
                            [record.get("precision")])
    return write_block(page, BEGIN, END, table_lines(metrics, generators), measured, force)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", choices=sorted(PRESETS))
    ap.add_argument("--vq", default=None, help="the VQVAE (a save_pretrained folder)")
    ap.add_argument("--vae", default=None, help="the VAE (a save_pretrained folder)")
    ap.add_argument("--generators", nargs="*", default=[], help="video generators' result files (missing: skipped)")
    ap.add_argument("--per-class", type=int, default=16, help="real clips of each class")
    ap.add_argument("--cache", default=None, help="the judge's folder (default results/<scale>/classifiers)")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="result JSON")
    where.add_argument("--from-result", help="a result JSON written before: its table to --page, nothing measured")
    ap.add_argument("--page", default=None, help="a Markdown page holding the markers: the table is written there")
    ap.add_argument("--force", action="store_true", help="replace a block measured at scale paper with another scale's")
    args = ap.parse_args(argv)
    if args.from_result:
        if not args.page:
            ap.error("--from-result renders the table of --page: give --page")
        record = read_json_object(args.from_result, "motion stages result")
    else:
        start = time.perf_counter()
        try:
            generators = [best_guidance_shares(read_result(f)) for f in args.generators if Path(f).is_file()]
        except (ResultError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from None
        metrics = measure(args.scale, args.vq, args.vae, args.per_class, args.cache)
        metrics["generators"] = [{"name": n, "share": s, "per_class": p} for n, s, p in generators]
        write_result(args.out, metrics, scale=args.scale, eval_seconds=time.perf_counter() - start,
                     threads=torch.get_num_threads(), machine=machine_name(),
                     precision="bf16" if device() == "cuda" else "fp32")
        record = read_json_object(args.out, "motion stages result")  # the page shows what the file holds
    if args.page and not write_page(record, args.page, args.force):
        print(f"{args.page}: no motion-stages markers, left alone")
    print(json.dumps({name: round(s["share"], 4) for name, s in record["metrics"]["stages"].items()}))
    return record["metrics"]


if __name__ == "__main__":
    main()
