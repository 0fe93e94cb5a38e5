"""Encode + decode throughput, FLOPs and peak memory of OmniTokenizer. Writes JSON.

Each case runs in its own process so that its peak resident memory is its own. Two spatial layouts at the `paper`
width: the `paper` preset (window attention in every spatial block, the paper's text) and the public release's
layout (encoder `ggww`, decoder `gggg`: global attention in 6 of 8 spatial blocks), so that a comparison with
the release compares like with like. FLOPs come from torch.utils.flop_counter with SDPA's CPU kernel counted
too (bench/flops.py). Each precision runs every case: fp32, and bf16 autocast where the machine has it (CUDA, or a
CPU whose bf16 matmul measures faster: shared.training.precision); each case's figure is a fraction of the 2048²
matmul rate of its precision measured in its own process, in every round and after the last (the best). Beside it,
the case's own GEMMs (linear layers, attention products) replayed alone at its shapes (bench/flops.py): their rate
says what the 2048² rate overstates for these shapes (the fraction they alone reach is the most fusing the rest
could give with these kernels), and their share of the call what the rest (norms, softmax, GELU, elementwise ops,
copies, autocast's casts) costs. The 129-frame case runs once more with glibc's mmap threshold fixed at 1 MB
(MALLOC_MMAP_THRESHOLD_): the peak memory glibc's heap keeps from freed chunk-sized tensors.

    python -m bench.tokenizer_speed --out bench/out/tokenizer_speed.json [--precisions fp32,bf16] [--device cpu]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

from bench.flops import DTYPES, count_flops, gemm_seconds, machine_name, matmul_gflops
from shared.timing import timed
from shared.training.precision import autocast, choose_precision
from tokenizer import OmniTokenizer
from tokenizer.model import GEGLU

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = {"paper": {}, "release": {"encoder_spatial": "ggww", "decoder_spatial": "gggg"}}
CASES = {  # name: (layout, batch, frames, size, max_tokens, rounds)
    "image_256": ("paper", 1, 1, 256, None, 3),
    "clip_17x256": ("paper", 1, 17, 256, None, 2),
    "release_image_256": ("release", 1, 1, 256, None, 3),
    "release_clip_17x256": ("release", 1, 17, 256, None, 2),
    "clip_129x256_chunked": ("paper", 1, 129, 256, 8192, 1),
    "clip_129x256_chunked_mmap1mb": ("paper", 1, 129, 256, 8192, 1),
    "image_256_compiled": ("paper", 1, 1, 256, None, 3),
    "clip_17x256_compiled": ("paper", 1, 17, 256, None, 2),
}
# OmniTokenizer.compile_for_inference (torch.compile, weights frozen); not the 129-frame case: measured 230 s to
# compile its chunk loops for 1.15x
COMPILED = {"image_256_compiled", "clip_17x256_compiled"}
# glibc raises its mmap threshold to the size of each freed mmapped block (up to 32 MB), so later chunk-sized
# tensors come from the heap, whose freed holes stay resident; a fixed threshold returns them on free
CASE_ENV = {"clip_129x256_chunked_mmap1mb": {"MALLOC_MMAP_THRESHOLD_": str(2**20)}}


def case_command(name: str, device: str, precision: str) -> list[str]:
    """The command that runs one case in its own process (from REPO_ROOT, where `bench` is importable)."""
    return [sys.executable, "-m", "bench.tokenizer_speed", "--case", name, "--device", device, "--precision", precision]


def run_case(name: str, device: str, precision: str) -> dict:
    layout, b, frames, size, max_tokens, rounds = CASES[name]
    model = OmniTokenizer.from_scale("paper", **LAYOUTS[layout]).to(device).eval()
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # torch + the weights
    x = torch.empty(b, 3, frames, size, size, device=device).uniform_(-1, 1)

    def call(m, cast=precision):
        with torch.inference_mode(), autocast(cast, device):
            enc = m.encode(x, max_tokens=max_tokens)
            return m.decode(enc.latents, max_tokens=max_tokens).sample

    eager = lambda: call(model)  # noqa: E731
    step, compile_seconds, paired = eager, None, {}
    if name in COMPILED:  # its FLOPs are the eager call's; its GEMMs (packed oneDNN ones) are not replayed
        compiled = copy.deepcopy(model).compile_for_inference()
        step, paired["eager"] = (lambda: call(compiled)), eager
        compile_seconds = timed(step, device)
    if precision == "bf16":
        paired["eager_fp32"] = lambda: call(model, "fp32")

    # This CPU's speed drifts (its 2048² bf16 rate has read 570 and 2180 GFLOP/s in one run): each round times one
    # call, measures the 2048² matmul rate, times the calls it is compared with (`paired`: the eager call, the fp32
    # one) and replays its GEMMs, so that all see the machine alike; the rate is the best of the rounds' probes and
    # one more after the last, the times the best of rounds. Ratios between cases come from these pairs, not from
    # separate processes
    times, gemms, peak, peak_cuda, rates = [], [], None, None, []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    paired_times = {k: [] for k in paired}
    for _ in range(rounds):
        times.append(timed(step, device))
        if peak is None:  # the first call's peak, before the matmul probe, replays and FLOP count allocate (and
            # leave the heap) in their own ways
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            if device.startswith("cuda"):
                peak_cuda = torch.cuda.max_memory_allocated() / 1024**3
        rates.append(matmul_gflops(device, DTYPES[precision]))
        for k, fn in paired.items():
            paired_times[k].append(timed(fn, device))
        if compile_seconds is None:
            gemms.append(gemm_seconds(step, device))
    rates.append(matmul_gflops(device, DTYPES[precision]))
    for ff in model.modules():  # useful FLOPs: not the GEGLU's zero padding (2 % more products at `paper`)
        if isinstance(ff, GEGLU):
            ff.pad = 0
    flops = count_flops(eager)
    best, gemm, rate = min(times), min(gemms, default=None), max(rates)
    out = {"case": name, "layout": layout, "precision": precision, "batch": b, "frames": frames, "size": size,
           "max_tokens": max_tokens, "env": CASE_ENV.get(name, {}), "seconds_per_call": best,
           "gflop_per_call": flops / 1e9, "achieved_gflops": flops / best / 1e9, "items_per_s": b / best,
           "frames_per_s": b * frames / best, "matmul_gflops": rate, "fraction_of_matmul_rate": flops / best / 1e9 / rate,
           "gemm_seconds": gemm, "gemm_share": gemm and gemm / best, "gemm_gflops": gemm and flops / gemm / 1e9,
           # the fraction the call would reach if everything but its GEMMs took no time: what fusing the rest can
           # give while the GEMMs run eager's kernels
           "gemm_fraction_of_matmul_rate": gemm and flops / gemm / 1e9 / rate,
           "peak_rss_gb": peak, "rss_before_input_gb": baseline_rss, "compile_seconds": compile_seconds,
           "paired_seconds_per_call": {k: min(v) for k, v in paired_times.items()}}
    if peak_cuda is not None:
        out["peak_cuda_gb"] = peak_cuda
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/out/tokenizer_speed.json")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precisions", default=None,
                    help="comma list of fp32 / bf16; default: fp32, plus bf16 where the machine runs it faster")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    ap.add_argument("--precision", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.device, args.precision)))
        return
    auto, why = choose_precision("auto", args.device)
    precisions = args.precisions.split(",") if args.precisions else (["fp32", "bf16"] if auto == "bf16" else ["fp32"])
    results = []
    for precision in precisions:
        for name in args.cases.split(","):
            env = {**os.environ, **CASE_ENV.get(name, {})}
            proc = subprocess.run(case_command(name, args.device, precision), capture_output=True, text=True,
                                  env=env, cwd=REPO_ROOT)
            if proc.returncode:
                raise SystemExit(f"tokenizer_speed case {name} ({precision}) failed:\n{proc.stderr[-3000:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    report = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": machine_name(),
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
              "automatic_precision": auto, "automatic_precision_reason": why,
              "precisions": precisions, "cases": results}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"automatic precision {auto} ({why}); wrote {args.out}")


if __name__ == "__main__":
    main()
