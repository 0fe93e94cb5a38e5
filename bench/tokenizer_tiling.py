"""Tiled encoding and decoding (OmniTokenizer.enable_tiling): what the seams cost, and the memory a tile bounds.

    python -m bench.tokenizer_tiling --part small --doc docs/tokenizer.md
    python -m bench.tokenizer_tiling --part paper --doc docs/tokenizer.md
    python -m bench.tokenizer_tiling --from-result docs/results/tokenizer_tiling.json --doc docs/tokenizer.md

`small`: the trained `small` tokenizers (the VQ of the joint stage and the VAE of the KL stage) reconstruct held-out
embedded photos and clips at a size larger than a tile, in one pass and in tiles (by default 128² frames in 64²
tiles, a size the models trained at, 48 apart: 16 pixels of overlap); the seam cost is the PSNR of the untiled
reconstructions minus that of the tiled ones (the target: within 0.3 dB), beside the PSNR of the tiled
reconstructions against the untiled ones. `paper`: peak memory and time of encode + decode at the `paper` shapes (random weights,
fp32) for 512² and 1024² images and a 129-frame 256² clip, in one pass and with enable_tiling() at its defaults
(256² tiles 192 apart; within a tile, 16 latent frames at a time), each case in its own process so that its peak
resident memory (CUDA: its peak allocation) is its own. Each part replaces its own entry of the report
(docs/results/tokenizer_tiling.json) and, with --doc, the page's block of every part the report holds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from bench.flops import machine_name
from bench.report import add_report_arguments, report_of
from shared.data import EmbeddedClips, EmbeddedPhotos
from shared.data.collate import collate
from shared.atomic import read_json_object
from shared.doc_blocks import Measured, write_blocks
from shared.metrics.reconstruction import psnr
from shared.timing import timed
from tokenizer import OmniTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL_BEGIN = "<!-- tiling seams: written by `python -m bench.tokenizer_tiling --part small --doc`; do not edit -->"
SMALL_END = "<!-- end of tiling seams -->"
PAPER_BEGIN = "<!-- tiling memory: written by `python -m bench.tokenizer_tiling --part paper --doc`; do not edit -->"
PAPER_END = "<!-- end of tiling memory -->"
CASES = {"image_512": (1, 512), "image_1024": (1, 1024), "clip_129x256": (129, 256)}  # name: (frames, side)


# ----------------------------------------------------------------------------- small: the seams


@torch.no_grad()
def seam_cost(model: OmniTokenizer, dataset, tile: int, stride: int, batch_size: int) -> dict:
    """PSNR of one-pass and of tiled reconstructions of a dataset, and of the tiled against the one-pass ones."""
    untiled, tiled, between = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        x = batch["pixels"]
        model.disable_tiling()
        whole = model.decode(model.encode(x).latents).sample.clamp(-1, 1)
        model.enable_tiling(tile, tile, stride, stride)
        tiles = model.decode(model.encode(x).latents).sample.clamp(-1, 1)
        untiled.append(psnr(whole, x))
        tiled.append(psnr(tiles, x))
        between.append(psnr(tiles, whole))
    model.disable_tiling()
    mean = lambda values: torch.cat(values).mean().item()  # noqa: E731
    return {"psnr_untiled": mean(untiled), "psnr_tiled": mean(tiled), "seam_cost_db": mean(untiled) - mean(tiled),
            "psnr_tiled_vs_untiled": mean(between), "items": len(dataset)}


def small_part(args) -> dict:
    torch.manual_seed(0)
    sets = {"photos": EmbeddedPhotos("val", args.resolution),
            "clips": EmbeddedClips("val", args.resolution, num_frames=args.frames)}
    rows = []
    for head, folder in (("vq", args.vq), ("kl", args.vae)):
        model = OmniTokenizer.from_pretrained(folder).eval()
        for data, dataset in sets.items():
            items = Subset(dataset, range(min(len(dataset), args.items if data == "photos" else args.clips)))
            rows.append({"head": head, "model": str(folder), "data": data,
                         "frames": 1 if data == "photos" else args.frames,
                         **seam_cost(model, items, args.tile, args.stride, args.batch_size)})
            print(json.dumps(rows[-1]), flush=True)
    return {"resolution": args.resolution, "tile": args.tile, "stride": args.stride, "rows": rows,
            "machine": machine_name(), "threads": torch.get_num_threads(), "precision": "fp32"}


def small_table(part: dict) -> list[str]:
    lines = ["| head | held-out data | PSNR untiled | PSNR tiled | seam cost | tiled against untiled |",
             "|---|---|---|---|---|---|"]
    for r in part["rows"]:
        what = f"{r['items']} photos" if r["frames"] == 1 else f"{r['items']} clips of {r['frames']} frames"
        lines.append(f"| {r['head'].upper()} | {what} | {r['psnr_untiled']:.2f} dB | {r['psnr_tiled']:.2f} dB | "
                     f"{r['seam_cost_db']:+.2f} dB | {r['psnr_tiled_vs_untiled']:.1f} dB |")
    worst = max(abs(r["seam_cost_db"]) for r in part["rows"])
    lines += ["", f"Frames of {part['resolution']}² in tiles of {part['tile']}², {part['stride']} apart "
                  f"({part['tile'] - part['stride']} pixels of overlap); the seam cost is the untiled PSNR minus the "
                  f"tiled one: {worst:.2f} dB at most here, against a target of 0.3 dB. "
                  f"Machine: {part['machine']}, {part['threads']} threads, fp32."]
    return lines


# ----------------------------------------------------------------------------- paper: the memory


def run_case(name: str, tiled: bool, device: str) -> dict:
    frames, side = CASES[name]
    model = OmniTokenizer.from_scale("paper").to(device).eval()
    if tiled:
        model.enable_tiling()
    x = torch.empty(1, 3, frames, side, side, device=device).uniform_(-1, 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def call():
        with torch.inference_mode():
            return model.decode(model.encode(x).latents).sample

    seconds = timed(call, device)
    out = {"case": name, "tiled": tiled, "frames": frames, "side": side, "seconds": seconds,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, "rss_before_call_gb": before,
           "tile": [model.tile_sample_min_height, model.tile_sample_stride_height, model.tile_max_tokens] if tiled else None}
    if device.startswith("cuda"):
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1024**3
    return out


def paper_part(args) -> dict:
    cases = []
    for name in args.cases.split(","):
        for tiled in (False, True):
            cmd = [sys.executable, "-m", "bench.tokenizer_tiling", "--case", name, "--device", args.device]
            proc = subprocess.run(cmd + (["--tiled"] if tiled else []), capture_output=True, text=True, cwd=REPO_ROOT,
                                  env=os.environ)
            if proc.returncode:
                raise SystemExit(f"tokenizer_tiling case {name} (tiled {tiled}) failed:\n{proc.stderr[-3000:]}")
            cases.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(cases[-1]), flush=True)
    return {"device": args.device, "machine": machine_name(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None, "precision": "fp32",
            "cases": cases}


def paper_table(part: dict) -> list[str]:
    cuda = part["device"].startswith("cuda")
    memory = (lambda c: f"{c['peak_cuda_gb']:.2f} GB allocated") if cuda else (  # noqa: E731
        lambda c: f"{c['peak_rss_gb']:.2f} GB RSS ({c['peak_rss_gb'] - c['rss_before_call_gb']:+.2f} GB over the model "
                  f"and input)")
    names = {"image_512": "image 512²", "image_1024": "image 1024²", "clip_129x256": "clip 129 x 256²"}
    lines = ["| case | one pass: peak, time | tiled: peak, time |", "|---|---|---|"]
    by_case: dict[str, dict] = {}
    for c in part["cases"]:
        by_case.setdefault(c["case"], {})[c["tiled"]] = c
    for name, pair in by_case.items():
        cells = [f"{memory(pair[t])}, {pair[t]['seconds']:.1f} s" if t in pair else "-" for t in (False, True)]
        lines.append(f"| {names.get(name, name)} | {cells[0]} | {cells[1]} |")
    tile = next((c["tile"] for c in part["cases"] if c["tile"]), None)
    lines += ["", "encode + decode at the `paper` preset (random weights), fp32, batch 1"
              + (f"; tiled: enable_tiling() at its defaults, tiles of {tile[0]}² {tile[1]} apart, at most {tile[2]} "
                 f"tokens at once within a tile (the clip's 256² frames are one tile: only its temporal chunks apply)"
                 if tile else "") + f". Machine: {part['machine']}, {part['threads']} threads, {part['device']}"
              + (f" ({part['gpu']})" if part.get("gpu") else "") + "."]
    return lines


# ----------------------------------------------------------------------------- main


PARTS = {"small": (SMALL_BEGIN, SMALL_END, small_table), "paper": (PAPER_BEGIN, PAPER_END, paper_table)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=list(PARTS), help="the part to measure (not with --from-result)")
    add_report_arguments(ap, "docs/results/tokenizer_tiling.json")
    ap.add_argument("--vq", default="runs/small/tokenizer/joint/final", help="small: the VQ tokenizer")
    ap.add_argument("--vae", default="runs/small/tokenizer/kl/final", help="small: the KL tokenizer")
    ap.add_argument("--resolution", type=int, default=128, help="small: frame side")
    ap.add_argument("--tile", type=int, default=64, help="small: tile side")
    ap.add_argument("--stride", type=int, default=48, help="small: tile stride")
    ap.add_argument("--frames", type=int, default=17, help="small: frames of a clip")
    ap.add_argument("--items", type=int, default=32, help="small: held-out photos")
    ap.add_argument("--clips", type=int, default=8, help="small: held-out clips")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--cases", default=",".join(CASES), help="paper: the cases")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one paper case in this process
    ap.add_argument("--tiled", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        result = run_case(args.case, args.tiled, args.device)
        print(json.dumps(result))
        return result
    if (args.part is None) == (args.from_result is None):
        ap.error("--part small or --part paper (measure), or --from-result (render a report written before)")

    def measure() -> dict:  # the part measured replaces its own entry of the report
        out = Path(args.out)
        report = read_json_object(out, "tiling report") if out.is_file() else {}
        return {**report, args.part: small_part(args) if args.part == "small" else paper_part(args)}

    report = report_of(args, measure)
    if args.doc:  # each part the report holds: its block
        blocks = [(begin, end, table(report[name]),
                   Measured(name, f"{report[name]['machine']} ({report[name]['threads']} threads, "
                                  f"{report[name].get('device', 'cpu')})", "fp32"))
                  for name, (begin, end, table) in PARTS.items() if name in report]
        if not write_blocks(args.doc, blocks, args.force):
            raise SystemExit(f"{args.doc}: lacks the block of a part of the report ({', '.join(b[0] for b in blocks)})")
    print(f"tiling report: {args.from_result or args.out}")
    return report


if __name__ == "__main__":
    main()
