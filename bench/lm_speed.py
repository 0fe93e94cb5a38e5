"""Speed of the LM generator. Writes JSON.

Cached sampling with classifier-free guidance (one doubled batch, our loop), against (a) recomputing the whole
prefix at every token and (b) transformers' `generate(guidance_scale=...)` on the same model, plus training
tokens/s, for the `small` model and the paper's 227M shape, both on ImageNet's layout (8192 codes + 1000
classes + null, 1 + 32x32 = 1025 tokens). The fp32 matmul rate is measured in the same run, and sampling's
FLOP rate is given as a fraction of it.

FLOPs of sampling are counted from the shapes: a row of the (doubled) batch costs, per generated token,
2 * (the transformer's matmul weights + the output head) + 4 * layers * width * (context length) for attention.
Besides the square 2048^2 rate, the rate of the decode step's own product ((2 x batch) x width @ width x
SwiGLU width) is measured: with 16 rows a CPU runs it at a fraction of the square rate, and that is the most
a decode step can reach at batch 8.

    python -m bench.lm_speed --out bench/out/lm_speed.json --doc docs/lm_generation.md    # CPU, fp32
    python -m bench.lm_speed --device cuda --dtype bf16 --out bench/out/lm_speed_cuda.json

On a CPU the 227M shape generates fewer tokens than 1024 (--tokens-227m); the JSON says how many. With --doc, the
table goes into that page between its markers (DOC_BEGIN / DOC_END).
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from bench.flops import DTYPES, machine_name, matmul_gflops
from bench.report import add_report_arguments, report_of
from shared.doc_blocks import Measured, write_block
from shared.timing import sync, timed
from lm_generation.config import lm_config
from lm_generation.model import CodeLayout, build_lm, lm_loss
from lm_generation.sampling import sample_codes

DOC_BEGIN = "<!-- LM speed: written by `python -m bench.lm_speed --doc` from its JSON; do not edit -->"
DOC_END = "<!-- end of LM speed -->"
IMAGENET = CodeLayout(codebook_size=8192, num_classes=1000, grid=(1, 32, 32), size=(1, 256, 256))


def skinny_matmul_gflops(rows: int, width: int, inner: int, device: str, dtype: torch.dtype,
                         repeats: int = 50) -> float:
    """The rate of the model's own decode-step product, (rows x width) @ (width x inner): the most a step can
    reach with so few rows (on a CPU far below the square 2048^2 rate)."""
    a = torch.randn(rows, width, device=device, dtype=dtype)
    w = torch.randn(inner, width, device=device, dtype=dtype)
    for _ in range(3):
        torch.nn.functional.linear(a, w)
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.linear(a, w)
    sync(device)
    return 2 * rows * width * inner * repeats / (time.perf_counter() - t) / 1e9


def layout_for(new_tokens: int) -> CodeLayout:
    """ImageNet's vocabulary with a sequence of 1 + new_tokens (1025 for the whole 32x32 grid)."""
    return CodeLayout(IMAGENET.codebook_size, IMAGENET.num_classes, (1, 1, new_tokens), (1, 8, 8 * new_tokens))


def sampling_flops(model, rows: int, new_tokens: int) -> float:
    c = model.config
    matmul = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    attention = sum(4 * c.num_hidden_layers * c.hidden_size * ctx for ctx in range(1, new_tokens + 1))
    return rows * (2 * matmul * new_tokens + attention)


def bench_sampling(shape, new_tokens: int, uncached_tokens: int, batch: int, device: str, dtype: str,
                   matmul_rate: float) -> dict:
    torch.manual_seed(0)
    layout = layout_for(new_tokens)
    model = build_lm(shape, layout).to(device).eval()
    torch.nn.init.normal_(model.lm_head.weight, std=0.02)
    labels = torch.arange(batch) % layout.num_classes
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda") and dtype == "bf16")
    n_layer_params = sum(p.numel() for p in model.parameters())

    def ours(use_cache: bool, m=model):
        with autocast:
            sample_codes(m, labels, guidance_scale=4.0, seed=0, use_cache=use_cache)

    ours(True)  # warm-up (allocations, kernels)
    cached_s = timed(lambda: ours(True), device)
    out = {"parameters": n_layer_params, "new_tokens": new_tokens, "batch": batch, "rows_with_guidance": 2 * batch}
    flops = sampling_flops(model, 2 * batch, new_tokens)
    skinny = skinny_matmul_gflops(2 * batch, shape.width, shape.intermediate, device,
                                  DTYPES[dtype])
    out["cached"] = {"seconds": cached_s, "tokens_per_s": batch * new_tokens / cached_s,
                     "gflop": flops / 1e9, "gflop_per_s": flops / cached_s / 1e9,
                     "fraction_of_matmul_rate": flops / cached_s / 1e9 / matmul_rate,
                     "batch_matmul_gflop_per_s": skinny,
                     "fraction_of_batch_matmul_rate": flops / cached_s / 1e9 / skinny}

    # (a) recomputing the prefix every token, on the first `uncached_tokens` tokens
    short = build_lm(shape, layout_for(uncached_tokens)).to(device).eval()
    short.load_state_dict(model.state_dict())
    cached_short = timed(lambda: ours(True, short), device)
    uncached_short = timed(lambda: ours(False, short), device)
    out["recompute_prefix"] = {"new_tokens": uncached_tokens, "seconds": uncached_short,
                               "tokens_per_s": batch * uncached_tokens / uncached_short,
                               "cached_seconds_same_tokens": cached_short,
                               "cached_speedup": uncached_short / cached_short}

    # (b) transformers' generate() with its own guidance (a second forward pass), top_k=0 so it samples the same way
    prompt = layout.class_tokens(labels.to(device))[:, None]
    null = torch.full_like(prompt, layout.null_token)

    def hf_generate():
        with torch.no_grad(), autocast:
            model.generate(input_ids=prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True,
                           top_k=0, top_p=1.0, temperature=1.0, guidance_scale=4.0, negative_prompt_ids=null,
                           pad_token_id=layout.null_token)

    hf_s = timed(hf_generate, device)
    out["generate"] = {"seconds": hf_s, "tokens_per_s": batch * new_tokens / hf_s, "ours_speedup": hf_s / cached_s}
    return out


def bench_training(shape, layout: CodeLayout, batch: int, steps: int, device: str, dtype: str) -> dict:
    torch.manual_seed(0)
    model = build_lm(shape, layout).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    codes = torch.randint(0, layout.codebook_size, (batch, *layout.grid), device=device)
    labels = torch.randint(0, layout.num_classes, (batch,), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda") and dtype == "bf16")

    def step():
        with autocast:
            loss = lm_loss(model, codes, labels, layout)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    seconds = timed(lambda: [step() for _ in range(steps)], device)
    tokens = batch * layout.seq_len * steps
    return {"batch": batch, "sequence": layout.seq_len, "steps": steps, "seconds": seconds,
            "tokens_per_s": tokens / seconds}


def doc_lines(report: dict) -> list[str]:
    """Markdown: one row per model shape (sampling against recomputing and generate(), training); the conditions."""
    names = {"small": ("small", "small_images_64px"), "227M": ("227M", "227M_imagenet_256")}
    rows = ["| model | cached sampling (batch, tokens) | FLOP rate: share of the 2048² rate / of the decode step's "
            "product rate | vs recomputing the prefix | vs transformers' `generate(guidance_scale=4)` | training |",
            "|---|---|---|---|---|---|"]
    for label, (sampling, training) in names.items():
        s, t = report["sampling"][sampling], report["training"][training]
        c, r, g = s["cached"], s["recompute_prefix"], s["generate"]
        rows.append(f"| {label} ({s['parameters'] / 1e6:.1f}M with this vocabulary) | {c['tokens_per_s']:.1f} "
                    f"tokens/s ({s['batch']} x {s['new_tokens']}) | {c['gflop_per_s']:.1f} GFLOP/s: "
                    f"{100 * c['fraction_of_matmul_rate']:.0f} % / {100 * c['fraction_of_batch_matmul_rate']:.0f} % | "
                    f"{r['cached_speedup']:.1f}x ({r['new_tokens']} tokens) | {g['ours_speedup']:.1f}x "
                    f"({g['tokens_per_s']:.1f} tokens/s) | {t['tokens_per_s']:,.0f} tokens/s (batch {t['batch']} x "
                    f"{t['sequence']}) |")
    m = report["machine"]
    rows += ["", f"Machine: {m['processor']}, {m['device']}{' (' + m['gpu'] + ')' if m.get('gpu') else ''}, "
             f"{m['threads']} threads, torch {m['torch']}, {report['dtype']}; the 2048² matmul rate measured "
             f"{report['matmul_gflop_per_s']:.0f} GFLOP/s before the run and {report['matmul_gflop_per_s_after']:.0f} "
             f"after; guidance doubles the batch (rows = 2 x batch). FLOPs: {report['flops_rule']}."]
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_report_arguments(ap, "bench/out/lm_speed.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens-small", type=int, default=1024)
    ap.add_argument("--tokens-227m", type=int, default=1024)
    ap.add_argument("--uncached-tokens", type=int, default=64, help="tokens of the recompute-the-prefix comparison")
    ap.add_argument("--train-batch-227m", type=int, default=8)
    args = ap.parse_args(argv)
    result = report_of(args, lambda: measure(args))
    if args.from_result is None:
        print(json.dumps(result, indent=2))
    if args.doc:
        m = result["machine"]
        measured = Measured("small, paper", f"{m['processor']} ({m['gpu'] or m['device']}, {m['threads']} threads)",
                            result["dtype"])  # the small model and the paper's 227M
        done = write_block(args.doc, DOC_BEGIN, DOC_END, doc_lines(result), measured, args.force)
        print(f"{args.doc}: LM speed table {'written' if done else 'not written (no markers)'}")
    return result


def measure(args: argparse.Namespace) -> dict:
    dev = args.device
    matmul_dtype = DTYPES[args.dtype]
    rate = matmul_gflops(dev, matmul_dtype)
    small, paper = lm_config("small"), lm_config("paper")
    return {
        "machine": {"platform": platform.platform(), "processor": machine_name(), "device": dev,
                    "gpu": torch.cuda.get_device_name() if dev.startswith("cuda") else None,
                    "threads": torch.get_num_threads(), "torch": torch.__version__},
        "dtype": args.dtype, "matmul_gflop_per_s": rate,
        "flops_rule": "per generated token and row: 2 * matmul weights (incl. head) + 4 * layers * width * context",
        "sampling": {
            "small": bench_sampling(small.model, args.tokens_small, args.uncached_tokens, args.batch, dev, args.dtype, rate),
            "227M": bench_sampling(paper.shape("227M"), args.tokens_227m, args.uncached_tokens, args.batch, dev,
                                   args.dtype, rate),
        },
        "training": {
            "small_images_64px": bench_training(small.model, CodeLayout(1024, 22, (1, 8, 8), (1, 64, 64)),
                                                small.train.batch_size, 5, dev, args.dtype),
            "227M_imagenet_256": bench_training(paper.shape("227M"), IMAGENET, args.train_batch_227m, 2, dev,
                                                args.dtype),
        },
        "matmul_gflop_per_s_after": matmul_gflops(dev, matmul_dtype),
    }

if __name__ == "__main__":
    main()
