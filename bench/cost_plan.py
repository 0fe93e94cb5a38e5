"""What each paper target costs, before booking a cluster: generated into docs/cost_plan.md from the dry run's
measurements (dry_run.json: FLOPs, memory, the machine) and the loaders' (data_throughput.json), which `make dry-run
SCALE=paper` keeps in docs/results/dry_run_paper/ (`make docs` draws the page from them again).

    python -m bench.cost_plan --dry-run docs/results/dry_run_paper/dry_run.json \
        --data docs/results/dry_run_paper/data_throughput.json --doc docs/cost_plan.md   # at scale paper: the page
    python -m bench.cost_plan --dry-run bench/out/dry_run.json --out bench/out/cost_plan_tiny.md   # any scale

--doc rewrites the blocks of a page (shared.doc_blocks: a block measured at scale paper is replaced by another
scale's only with --force); --out writes a page of its own holding the two blocks (`make dry-run` at a scale other
than paper: bench/out/cost_plan_<scale>.md).

GPU time assumes a model FLOP utilisation (MFU, of an 80 GB H100's dense bf16 peak) until one is measured on a
GPU (bench.dry_run on CUDA: its fraction_of_matmul_rate is then the measured MFU's stand-in). Steps, batches and GPU
counts come from the paper, the public release or this project's configs, as the SOURCE column says.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from shared.atomic import atomic_write
from shared.doc_blocks import Block, Measured, block_text, joined, write_blocks

BEGIN = "<!-- cost plan: written by `python -m bench.cost_plan` from the dry run's JSON; do not edit -->"
END = "<!-- end of cost plan -->"
LOADER_BEGIN = "<!-- loader throughput: written by `python -m bench.cost_plan` from the loaders' JSON; do not edit -->"
LOADER_END = "<!-- end of loader throughput -->"

GPU = {"name": "H100 SXM 80 GB", "bf16_dense_flops": 989.4e12, "memory_bytes": 80e9}
ASSUMED_MFU = 0.40

# target -> steps, per-GPU batch, GPUs, and where each number comes from; the loader its items come through
PLAN = {
    "tokenizer_image": dict(steps=500_000, per_gpu=8, gpus=8, source="steps: paper; batch 8 per GPU: release; 8 GPUs: paper",
                            loader="imagenet_jpeg_500x375"),
    "tokenizer_joint": dict(steps=500_000, per_gpu=2, gpus=8, source="steps: paper; every step counted as a clip step "
                            "(batch 2 per GPU: release; its image steps, batch 8, cost a little less); 8 GPUs: paper",
                            loader="ucf101_avi_320x240_interval1"),
    "tokenizer_kl": dict(steps=100_000, per_gpu=2, gpus=8, source="steps: ours (the paper does not state them); "
                         "batch: release", loader="ucf101_avi_320x240_interval1"),
    "lm_227M_image": dict(steps=300_000, per_gpu=8, gpus=32, source="steps: ours (not published); batch 8 x 32 GPUs: "
                          "release", loader=None),
    "lm_650M_image": dict(steps=300_000, per_gpu=8, gpus=32, source="as the 227M", loader=None),
    "lm_227M_video": dict(steps=300_000, per_gpu=8, gpus=32, source="as the image LM", loader=None),
    "lm_650M_video": dict(steps=300_000, per_gpu=8, gpus=32, source="as the image LM", loader=None),
    "dit": dict(steps=400_000, per_gpu=32, gpus=8, source="DiT: 400k steps at global batch 256 (8 x 32)", loader=None),
    "latte": dict(steps=1_000_000, per_gpu=5, gpus=8, source="Latte's UCF-101 config: local batch 5; steps and "
                  "8 GPUs: this project's paper config (not published)", loader=None),
}
EXTRACTION_LOADER = {"dit": "imagenet_jpeg_500x375", "lm_227M_image": "imagenet_jpeg_500x375",
                     "lm_650M_image": "imagenet_jpeg_500x375", "latte": "ucf101_avi_320x240_interval3",
                     "lm_227M_video": "ucf101_avi_320x240_interval1", "lm_650M_video": "ucf101_avi_320x240_interval1"}
ENCODER_OF = {"dit": "tokenizer_image", "lm_227M_image": "tokenizer_image", "lm_650M_image": "tokenizer_image",
              "latte": "tokenizer_kl", "lm_227M_video": "tokenizer_joint", "lm_650M_video": "tokenizer_joint"}


def gib(n: float) -> str:
    return f"{n / 2**30:.1f}"


def plan_rows(dry: dict, data: dict, mfu: float) -> list[str]:
    rate = GPU["bf16_dense_flops"] * mfu
    loaders = data.get("cases", {})
    lines = ["| target | the step measured | FLOPs per item | steps x global batch | total FLOPs | GPU-hours at "
             f"{mfu:.0%} MFU | GPUs (release) | memory per GPU at its batch (weights + optimizer + the rest) | fits 80 GB "
             "with DDP | loader workers per GPU | source |", "|" + "---|" * 11]
    for name, plan in PLAN.items():
        r = dry.get("targets", {}).get(name)
        if not r or "error" in r:
            lines.append(f"| {name} | {'failed: ' + str(r['error']) if r else 'not run'} |" + " |" * 10)
            continue
        batch = dry.get("batch") or 1
        per_item = r["flops_per_step"] / batch
        total = per_item * plan["steps"] * plan["per_gpu"] * plan["gpus"]
        hours = total / rate / 3600
        mem = r["memory_bytes"]
        grads = mem["weights"]  # fp32 gradients, as many bytes as the fp32 weights
        activations = max(0.0, mem["rest"] - grads) / batch
        need = mem["weights"] + mem["optimizer_state"] + grads + activations * plan["per_gpu"]
        fits = "yes" if need < 0.9 * GPU["memory_bytes"] else "no: FSDP or activation checkpointing"
        items_per_s = plan["per_gpu"] / (per_item * plan["per_gpu"] / rate)
        if plan["loader"]:
            per_worker = loaders.get(plan["loader"], {}).get("items_per_second")
            workers = f"{math.ceil(items_per_s / per_worker)} ({items_per_s:.0f} items/s; {plan['loader']})" if per_worker else "-"
        else:
            encoder = (dry["targets"].get(ENCODER_OF[name]) or {}).get("sampling") or {}
            per_worker = loaders.get(EXTRACTION_LOADER[name], {}).get("items_per_second")
            extract = ""
            if encoder.get("encode_flops_per_item") and per_worker:
                enc_rate = rate / encoder["encode_flops_per_item"]
                extract = f"; extraction: {math.ceil(enc_rate / per_worker)} to feed the encoder ({enc_rate:.0f} items/s)"
            workers = "0: trains on memory-mapped extracted shards" + extract
        lines.append(f"| {name} | {r['what']} | {per_item / 1e9:.0f} GFLOP | {plan['steps']:,} x "
                     f"{plan['per_gpu'] * plan['gpus']:,} | {total:.2e} | {hours:,.0f} | {plan['gpus']} | "
                     f"{gib(need)} GiB ({gib(mem['weights'])} + {gib(mem['optimizer_state'])} + "
                     f"{gib(grads + activations * plan['per_gpu'])}) | {fits} | {workers} | {plan['source']} |")
    measured = {n: r for n, r in dry.get("targets", {}).items() if "error" not in r}
    inexact = [n for n, r in measured.items() if not r["resume_exact"]]
    unrepeatable = [n for n in inexact if not measured[n].get("step_repeatable", True)]
    resume = "every target's resumed step was bitwise the uninterrupted one" if not inexact else (
        f"the resumed step was not bitwise the uninterrupted one for {', '.join(inexact)}"
        + (f"; of these, {', '.join(unrepeatable)} do not repeat their own step bitwise in this precision on this "
           f"machine (two resumes from one checkpoint differ as much), so no resume could be exact there"
           if unrepeatable else ""))
    precisions = sorted({r["precision"] for r in measured.values()})
    lines += ["", f"Measured by `python -m bench.dry_run` on {dry.get('machine')} ({dry.get('device')}, batch "
                  f"{dry.get('batch')}, {dry.get('threads')} threads, {'/'.join(precisions)}); {resume}. "
                  f"GPU-hours assume {mfu:.0%} MFU of the {GPU['name']}'s {GPU['bf16_dense_flops'] / 1e12:.0f} TFLOP/s "
                  f"dense bf16 peak (an assumption until measured on a GPU). Memory: weights (with the EMA copy where "
                  f"the trainer keeps one) and optimizer state as measured; gradients as many bytes as the weights; the "
                  f"rest of the measured peak (activations, workspace) scaled from the measured batch to the per-GPU "
                  f"batch. Measured on a CPU this rest is an upper bound for a GPU: the CPU's attention kernel with a "
                  f"causal mask keeps each layer's full score matrix (1 + 5 x 32 x 32 tokens squared, per head), which "
                  f"CUDA's flash attention never stores; `make dry-run` on the GPU measures the real figure."]
    return lines


def loader_rows(data: dict) -> list[str]:
    lines = ["| loader | kind | items/s per worker (1 thread) |", "|---|---|---|"]
    for name, c in data.get("cases", {}).items():
        lines.append(f"| {c['dataset']} (`{name}`) | {c['kind']} | {c['items_per_second']:.1f} |")
    lines += ["", f"Measured by `python -m bench.data_throughput` on {data.get('machine')}: the project's datasets with "
                  f"their training transforms at {data.get('resolution')} px, one process reading items one after "
                  f"another (one loader worker)."]
    return lines


def blocks(dry: dict, data: dict, mfu: float) -> list[Block]:
    """The page's blocks (the plan; the loaders' where measured), each with what it was measured from: the dry run's
    scale (the loaders measured for that scale's plan)."""
    precision = joined(r.get("precision") for r in dry.get("targets", {}).values())
    out = [(BEGIN, END, plan_rows(dry, data, mfu), Measured(
        dry["scale"], f"{dry.get('machine')} ({dry.get('device')}, {dry.get('threads')} threads)", precision))]
    if data:
        out.append((LOADER_BEGIN, LOADER_END, loader_rows(data), Measured(
            dry["scale"], f"{data.get('machine')} (one loader worker, 1 thread)", "uint8 decoding")))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", default="bench/out/dry_run.json")
    ap.add_argument("--data", default="bench/out/data_throughput.json")
    ap.add_argument("--mfu", type=float, default=ASSUMED_MFU, help="model FLOP utilisation to plan with")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--doc", help="a page with the markers (docs/cost_plan.md): its blocks are rewritten")
    where.add_argument("--out", help="a page of its own for the plan (bench/out/cost_plan_<scale>.md)")
    ap.add_argument("--force", action="store_true", help="replace a block measured at scale paper with another scale's")
    args = ap.parse_args(argv)
    if not 0 < args.mfu <= 1:
        raise SystemExit(f"--mfu must be in (0, 1], got {args.mfu}")
    dry = json.loads(Path(args.dry_run).read_text())
    data = json.loads(Path(args.data).read_text()) if Path(args.data).is_file() else {}
    parts = blocks(dry, data, args.mfu)
    if args.out:
        page = [f"# Cost plan from a dry run at scale {dry['scale']}", "",
                f"Written by `python -m bench.cost_plan` from {args.dry_run}"
                + (f" and {args.data}" if data else "") + "; docs/cost_plan.md holds the paper scale's.", ""]
        page += [block_text(*part) + "\n" for part in parts]
        atomic_write(args.out, lambda tmp: Path(tmp).write_text("\n".join(page)))
        print(f"cost plan of scale {dry['scale']}: written to {args.out}")
        return
    wrote = write_blocks(args.doc, parts, args.force)
    print(f"{args.doc}: {'written' if wrote else 'markers missing, left alone'}")


if __name__ == "__main__":
    main()
