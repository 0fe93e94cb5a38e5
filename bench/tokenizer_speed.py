"""Encode + decode throughput, FLOPs and peak memory of OmniTokenizer (issue 3). Writes JSON.

Each case runs in its own process so that its peak resident memory is its own. FLOPs come from
torch.utils.flop_counter with SDPA's CPU kernel counted too (bench/flops.py); the machine's matmul rate in the
precision used is measured in the same run, and every figure is a fraction of it.

    python bench/tokenizer_speed.py --out bench/out/tokenizer_speed.json [--scale paper] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.flops import count_flops, matmul_gflops, sync  # noqa: E402
from tokenizer import OmniTokenizer  # noqa: E402

CASES = {  # name: (batch, frames, size, max_tokens, repeats)
    "image_256": (1, 1, 256, None, 3),
    "clip_17x256": (1, 17, 256, None, 2),
    "clip_129x256_chunked": (1, 129, 256, 8192, 1),
}


def run_case(name: str, scale: str, device: str, dtype: str) -> dict:
    b, frames, size, max_tokens, repeats = CASES[name]
    model = OmniTokenizer.from_config(scale).to(device).eval()
    x = torch.rand(b, 3, frames, size, size, device=device) * 2 - 1
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=dtype == "bf16")

    def step():
        with torch.inference_mode(), autocast:
            enc = model.encode(x, max_tokens=max_tokens)
            return model.decode(enc.latents, max_tokens=max_tokens)

    flops = count_flops(step)
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    best = min(times)
    out = {"case": name, "batch": b, "frames": frames, "size": size, "max_tokens": max_tokens,
           "seconds_per_call": best, "gflop_per_call": flops / 1e9, "achieved_gflops": flops / best / 1e9,
           "items_per_s": b / best, "frames_per_s": b * frames / best,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}
    if device.startswith("cuda"):
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1024**3
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/out/tokenizer_speed.json")
    ap.add_argument("--scale", default="paper")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="fp32 (CPU default) or bf16 (CUDA default; on a CPU: autocast)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = ap.parse_args()
    dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.case:
        print(json.dumps(run_case(args.case, args.scale, args.device, dtype)))
        return
    results = []
    for name in args.cases.split(","):
        cmd = [sys.executable, __file__, "--case", name, "--scale", args.scale, "--device", args.device, "--dtype", dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    rate = matmul_gflops(args.device, torch.bfloat16 if dtype == "bf16" else torch.float32)
    for r in results:
        r["fraction_of_matmul_rate"] = r["achieved_gflops"] / rate
    report = {"scale": args.scale, "device": args.device, "dtype": dtype, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
              "matmul_gflops": rate, "cases": results}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"matmul {rate:.1f} GFLOP/s; wrote {args.out}")


if __name__ == "__main__":
    main()
