"""Build TABLES.md (and tables.json, tables.csv): the paper's Tables 1-10 with our figures beneath each.

    python -m eval.tables --scale small          # reads results/small/; `make tables` first makes what is missing

Our rows come from the result files that `make tables` makes (results/<scale>/eval/<run>/<stage>.json,
results/<scale>/<run>.json). Each says its data, scale, resolution and feature network; numbers from a
random-init feature network say so; a row with no result says "not run".
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from shared.atomic import atomic_write, atomic_write_json

from . import ablations
from .paper_tables import PAPER_TABLES

# our rows: table -> [(label, run, stage, kind, metric)]; run "tokenizer" is the default schedule
OUR_ROWS = {
    1: [("Ours-VQVAE", "tokenizer", "joint", "image", "rfid"), ("Ours-VAE", "tokenizer", "kl", "image", "rfid")],
    2: [("Ours-VQVAE", "tokenizer", "joint", "video", "rfvd"), ("Ours-VAE", "tokenizer", "kl", "video", "rfvd")],
    7: [("Ours-Image (Fix)", "tokenizer", "image", "image", "rfid"),  # stage 1 of the default schedule
        ("Ours-Image (Multi)", "tokenizer_image_multi", "image", "image", "rfid"),
        ("Ours-Video (Fix)", "tokenizer_video_fixed", "video", "video", "rfvd"),
        ("Ours-Video (Multi)", "tokenizer_video_multi", "video", "video", "rfvd"),
        ("Ours-Joint (Fix)", "tokenizer_joint_fixed", "joint", "image", "rfid"),
        ("Ours-Joint (Fix)", "tokenizer_joint_fixed", "joint", "video", "rfvd"),
        ("Ours-Joint (Multi)", "tokenizer", "joint", "image", "rfid"),
        ("Ours-Joint (Multi)", "tokenizer", "joint", "video", "rfvd")],
    8: [("Plain", "tokenizer_spatial_plain", "image", "image", "rfid"),
        ("Window", "tokenizer_spatial_window", "image", "image", "rfid")],
    9: [("Window / Plain", "tokenizer_temporal_plain", "joint", "video", "rfvd"),
        ("Window / Causal", "tokenizer", "joint", "video", "rfvd")],
    10: [("Joint (VQ-KL) VQVAE", "tokenizer", "joint", "image", "rfid"), ("Joint (VQ-KL) VAE", "tokenizer", "kl", "image", "rfid"),
         ("Joint (VQ-KL) VQVAE", "tokenizer", "joint", "video", "rfvd"), ("Joint (VQ-KL) VAE", "tokenizer", "kl", "video", "rfvd"),
         ("Joint (KL-VQ) VQVAE", "tokenizer_kl_vq", "vq", "image", "rfid"), ("Joint (KL-VQ) VAE", "tokenizer_kl_vq", "kl", "image", "rfid"),
         ("Joint (KL-VQ) VQVAE", "tokenizer_kl_vq", "vq", "video", "rfvd"), ("Joint (KL-VQ) VAE", "tokenizer_kl_vq", "kl", "video", "rfvd")],
}
NOT_BUILT = {3: "lm_generation/ (the autoregressive generator) has not landed",
             4: "lm_generation/ (the autoregressive generator) has not landed",
             5: "diffusion_generation/ (DiT) has not landed", 6: "diffusion_generation/ (Latte) has not landed"}
OUR_COLUMNS = ["Row", "Metric (network)", "Value", "PSNR", "SSIM", "Data", "Scale",
               "Minutes (training of this model and of the stages it starts from, + its evaluation; threads per job)"]


def runs_in_config(scale: str) -> set[str]:
    """The runs a scale's config can make: the default schedule and one per entry of its `variants`."""
    from tokenizer.train_config import train_config

    return {"tokenizer"} | {f"tokenizer_{v}" for v in train_config(scale).variants}


def required_results(scale: str) -> list[str]:
    """The eval files the tables read that the scale's config can make, relative to results/<scale>/ (for the
    Makefile)."""
    runs = runs_in_config(scale)
    return sorted({f"eval/{run}/{stage}.json" for rows in OUR_ROWS.values() for _, run, stage, _, _ in rows
                   if run in runs})


def _training_seconds(results: Path, run: str, stage: str) -> float | None:
    """Training time behind a stage's model: the stage, and the stages it starts from (init_from), following
    them into other runs (runs/<scale>/<run>/<stage>/final); None when a run's result file is missing."""
    run_file = results / f"{run}.json"
    if not run_file.is_file():
        return None
    summary = json.loads(run_file.read_text()).get("stages", {}).get(stage)
    if summary is None:
        return None
    seconds = summary.get("wall_seconds", 0.0)
    source = (summary.get("config") or {}).get("init_from")
    if source:
        parts = Path(source).parts
        earlier = (_training_seconds(results, run, source) if len(parts) == 1
                   else _training_seconds(results, parts[-3], parts[-2]) if len(parts) >= 3 else None)
        if earlier is None:
            return None
        seconds += earlier
    return seconds


def _our_row(results: Path, runs: set[str], label: str, run: str, stage: str, kind: str, metric: str) -> list[str]:
    eval_file = results / "eval" / run / f"{stage}.json"
    if not eval_file.is_file():
        variant = run.removeprefix("tokenizer_")
        why = "" if run in runs else f" (the {results.name} config has no variant '{variant}')"
        return [label, metric, f"not run{why}", "", "", "", results.name, ""]
    rec = json.loads(eval_file.read_text())
    m = rec["metrics"].get(kind)
    if m is None:
        return [label, metric, f"not run ({kind} split not evaluated)", "", "", "", rec.get("scale") or "", ""]
    value = m[metric]["value"]
    network = m[metric]["network"]
    label_net = "RANDOM-INIT network, not comparable to the paper" if "RANDOM-INIT" in network else network
    minutes = ""
    training = _training_seconds(results, run, stage)
    if training is not None:
        threads = rec.get("threads")
        minutes = f"{(training + rec.get('eval_seconds', 0.0)) / 60:.1f}" + (f" ({threads} thr.)" if threads else "")
    data = rec.get("data", {}).get("images" if kind == "image" else "videos", "")
    data = f"{data} {kind}s, val, n={m['items']}, {rec.get('resolution')}px" + (f", {rec.get('frames')} frames" if kind == "video" else "")
    return [label, f"{metric} ({label_net}; n={m[metric]['n'][0]}, d={m[metric]['dim']})", f"{value:.2f}",
            f"{m['psnr']:.2f}", f"{m['ssim']:.3f}", data, rec.get("scale") or results.name, minutes]


def build(scale: str, results_root: str | Path = "results", out_dir: str | Path = ".") -> dict:
    results = Path(results_root) / scale
    runs = runs_in_config(scale)
    tables = {}
    for number, paper in PAPER_TABLES.items():
        ours = [_our_row(results, runs, *row) for row in OUR_ROWS.get(number, [])]
        tables[number] = {**paper, "ours_columns": OUR_COLUMNS, "ours": ours, "note": NOT_BUILT.get(number)}
    out_dir = Path(out_dir)
    lines = [f"# The paper's tables, with ours (scale `{scale}`)", "",
             "Paper rows are as published (ImageNet / UCF-101 / K600 ... at 256 px, real Inception-v3 and I3D). "
             "Ours are labelled with the data, scale and feature network they came from; numbers from random-init "
             "feature networks (no weights offline) rank models trained and evaluated alike, and are not comparable "
             "to the paper's.", ""]
    for number, t in tables.items():
        lines += [f"## Table {number}: {t['title']}", "", _md(t["columns"], t["rows"]), ""]
        if t["note"]:
            lines += [f"Ours: not run: {t['note']}.", ""]
        elif t["ours"]:
            lines += [f"Ours at scale `{scale}`:", "", _md(t["ours_columns"], t["ours"]), ""]
    directions = ablations.compare(results)
    lines += ["## Do our ablations point the same way as the paper's?", "",
              "Each row pits two settings of Tables 7-10 on one metric (lower is better), in the paper and in our "
              "runs above. Our rFID/rFVD come from random-init feature networks on a few dozen validation items. On "
              "the project's 2-core machine the default `small` run trained twice (2 threads, then 1 thread: only "
              "the floating-point order differs) gave rFID 0.73 vs 0.89, rFVD 18.2 vs 14.5 and image PSNR 18.11 vs "
              "18.35 dB, so differences smaller than ~25 % or ~0.3 dB are within run-to-run spread. PSNR needs no "
              "feature network and is shown beside them.",
              "", _md(ablations.COLUMNS, directions), ""]
    atomic_write(out_dir / "TABLES.md", lambda tmp: Path(tmp).write_text("\n".join(lines)))
    atomic_write_json(out_dir / "tables.json", {"scale": scale, "tables": tables, "ablations": directions})

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["table", "source"] + OUR_COLUMNS)
            for number, t in tables.items():
                for row in t["rows"]:
                    w.writerow([number, "paper", " | ".join(row)])
                for row in t["ours"]:
                    w.writerow([number, f"ours ({scale})"] + row)

    atomic_write(out_dir / "tables.csv", write_csv)
    return tables


def _md(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", default=".")
    ap.add_argument("--list-required", action="store_true", help="print the result files the tables read")
    args = ap.parse_args(argv)
    if args.list_required:
        print(" ".join(f"{args.results}/{args.scale}/{f}" for f in required_results(args.scale)))
        return
    build(args.scale, args.results, args.out)
    print(f"wrote {Path(args.out) / 'TABLES.md'}, tables.json, tables.csv")


if __name__ == "__main__":
    main()
