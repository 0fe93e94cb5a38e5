"""Our LM beside FoundationVision/LlamaGen's GPT: guided sampling and the training step, same shapes and weights.

    python -m bench.reference_llamagen --llamagen-repo /path/to/LlamaGen --out bench/out/reference_llamagen.json \
        --doc docs/speed.md

A checkout of https://github.com/FoundationVision/LlamaGen (its `autoregressive/models/gpt.py` and `generate.py`,
and `utils/`) is imported from --llamagen-repo; nothing of it is copied into the project. For each shape (the
`small` LM: 4 layers, width 192; GPT-B: 12 layers, width 768), on ImageNet's vocabulary (8,192 codes, 1,000
classes) and a 16 x 16 grid (256 codes):

- sampling: batch 8 with guidance 4 (16 rows a step, the batch doubled on both sides), temperature 1, no top-k,
  ours `lm_generation.sampling.sample_codes` against LlamaGen's `generate()`; in fp32, and with both models' weights
  cast to bf16 (the path `ARPipeline(..., precision=)` takes where the CPU measures bf16 faster). Each decode step is
  also set against its memory-bandwidth bound: the bytes of weights and KV cache it reads over the read bandwidth
  measured in the same run (with 16 rows a step is bound by memory more than by the matmul rate).
- training: forward, loss, backward, gradient clipping and AdamW, each side as its trainer does it (ours
  `lm_generation.train.make_optimizer`, LlamaGen's fused AdamW with decay on matrices, as its `train_c2i.py`), in
  fp32 and under bf16 autocast; dropout off on both sides (the same arithmetic).

Both models get our weights (mapped one to one: LlamaGen's wqkv is our q, k, v stacked; its token and class
tables are the two parts of our one vocabulary). LlamaGen uses a 2-D rotary embedding, ours a 1-D one (the same
FLOPs), and zeroes the class token's rotation, so only the first prediction can agree: it is compared first (one key,
so the rotation does not matter there), or the bench stops. The two sides take turns, run after run; the median of
each side counts. Without --llamagen-repo our side runs alone and the JSON says the reference was not given.
With --compiled each side runs compiled too (four sides in turns; the first compiled run's seconds, compilation
included, are recorded apart): ours through sample_codes(compile=True) and train.compile's torch.compile over the
model and loss, LlamaGen's model under torch.compile (as its sample_c2i.py --compile); best_speedup sets the faster
of each side's two against the other's.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from bench.flops import machine_name
from bench.lm_speed import sampling_flops
from bench.reference_pair import (Side, added_peak_gb, alternate, best_speedup, checkout, matmul_rate, randomise,
                                  with_compiled)
from bench.report import add_report_arguments, report_of
from lm_generation.config import GPTShape
from lm_generation.model import CodeLayout, build_lm, lm_loss
from lm_generation.sampling import sample_codes
from lm_generation.train import make_optimizer
from shared.doc_blocks import Measured, joined, write_block
from shared.provenance import stamp
from shared.timing import timed

SHAPES = {"small": GPTShape(layers=4, heads=6, width=192, intermediate=512),
          "GPT-B": GPTShape(layers=12, heads=12, width=768, intermediate=2048)}  # LlamaGen's GPT_B, its FFN width
LAYOUT = CodeLayout(codebook_size=8192, num_classes=1000, grid=(1, 16, 16), size=(1, 256, 256))
GUIDANCE = 4.0
DOC_BEGIN = "<!-- LM beside LlamaGen: written by `python -m bench.reference_llamagen --doc`; do not edit -->"
DOC_END = "<!-- end of LM beside LlamaGen -->"


def reference_modules(repo: Path):
    sys.path.insert(0, str(repo))  # the reference's own packages: autoregressive/, utils/
    from autoregressive.models import generate, gpt  # noqa: PLC0415

    return gpt, generate.generate


def reference_model(gpt, shape: GPTShape, norm_eps: float):
    args = gpt.ModelArgs(dim=shape.width, norm_eps=norm_eps, n_layer=shape.layers, n_head=shape.heads, vocab_size=LAYOUT.codebook_size,
                         num_classes=LAYOUT.num_classes, block_size=LAYOUT.num_codes, cls_token_num=1,
                         token_dropout_p=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0, class_dropout_prob=0.1)
    return gpt.Transformer(args)


def map_weights(ours, ref) -> None:
    """Copy our weights into LlamaGen's model (strict: every tensor of theirs comes from one of ours)."""
    s, k, c = ours.state_dict(), LAYOUT.codebook_size, LAYOUT.num_classes
    table = s["model.embed_tokens.weight"]
    out = {"tok_embeddings.weight": table[:k], "cls_embedding.embedding_table.weight": table[k: k + c + 1],
           "norm.weight": s["model.norm.weight"], "output.weight": s["lm_head.weight"][:k]}
    for i in range(ours.config.num_hidden_layers):
        a, r = f"model.layers.{i}.", f"layers.{i}."
        out[r + "attention.wqkv.weight"] = torch.cat([s[a + f"self_attn.{p}_proj.weight"] for p in "qkv"])
        out[r + "attention.wo.weight"] = s[a + "self_attn.o_proj.weight"]
        out[r + "feed_forward.w1.weight"] = s[a + "mlp.gate_proj.weight"]
        out[r + "feed_forward.w3.weight"] = s[a + "mlp.up_proj.weight"]
        out[r + "feed_forward.w2.weight"] = s[a + "mlp.down_proj.weight"]
        out[r + "attention_norm.weight"] = s[a + "input_layernorm.weight"]
        out[r + "ffn_norm.weight"] = s[a + "post_attention_layernorm.weight"]
    ref.load_state_dict(out, strict=True)


def first_prediction_gap(ours, ref) -> float:
    """Largest difference of the code logits after the class token (the first prediction) between the two."""
    labels = torch.arange(4)
    with torch.no_grad():
        a = ours.eval()(input_ids=LAYOUT.class_tokens(labels)[:, None]).logits[:, -1, :LAYOUT.codebook_size]
        ref.eval().setup_caches(max_batch_size=4, max_seq_length=LAYOUT.seq_len, dtype=torch.float32)
        b = ref(None, labels, input_pos=torch.arange(1))[0][:, -1]
    return (a.float() - b.float()).abs().max().item()


def read_bandwidth() -> float:
    """GB/s of reading a 512 MB fp32 tensor (a sum), best of 5: the memory-bandwidth limit of a decode step."""
    x = torch.ones(128 * 2**20)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best / 1e9


def step_bytes(model, rows: int, bytes_per_value: int) -> float:
    """Bytes a decode step reads on average over the sequence: every matrix of the blocks and the head, and the KV
    cache at the mean context length."""
    c = model.config
    weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    mean_context = (LAYOUT.seq_len + 1) / 2
    cache = 2 * c.num_hidden_layers * rows * mean_context * c.hidden_size
    return (weights + cache) * bytes_per_value


def sampling(shape_name: str, precision: str, repo: Path | None, batch: int, rounds: int, bandwidth: float,
             compiled: bool = False) -> dict:
    shape = SHAPES[shape_name]
    torch.manual_seed(0)
    ours = build_lm(shape, LAYOUT).eval()
    randomise(ours, vector_mean=1.0)  # norm scales near 1
    labels = torch.arange(batch) % LAYOUT.num_classes
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    fns = {"ours": lambda: sample_codes(ours, labels, guidance_scale=GUIDANCE, seed=0)}
    out = {"shape": shape_name, "precision": f"{precision} weights", "batch": batch, "rows": 2 * batch,
           "new_tokens": LAYOUT.num_codes, "guidance_scale": GUIDANCE, "parameters": sum(p.numel() for p in
                                                                                            ours.parameters())}
    if repo is not None:
        gpt, generate = reference_modules(repo)
        ref = reference_model(gpt, shape, ours.config.rms_norm_eps)
        map_weights(ours, ref)
        out["first_prediction_gap"] = first_prediction_gap(ours, ref)
        if out["first_prediction_gap"] > 1e-4:
            raise RuntimeError(f"{shape_name}: the first prediction differs by {out['first_prediction_gap']}")
        ref.to(dtype)
        fns["reference"] = lambda: generate(ref, labels, LAYOUT.num_codes, cfg_scale=GUIDANCE, temperature=1.0,
                                            top_k=0, top_p=1.0, sample_logits=True)
    ours.to(dtype)
    if compiled:  # ours: the compiled decode step over a static cache; LlamaGen: its model under torch.compile, as
        # its sample_c2i.py --compile does (its own static KV cache), the generate() loop the same
        fns["ours compiled"] = lambda: sample_codes(ours, labels, guidance_scale=GUIDANCE, seed=0, compile=True)
        if repo is not None:
            ref_compiled = torch.compile(ref)
            fns["reference compiled"] = lambda: generate(ref_compiled, labels, LAYOUT.num_codes, cfg_scale=GUIDANCE,
                                                         temperature=1.0, top_k=0, top_p=1.0, sample_logits=True)
        out["compile_seconds_by_side"] = {k: timed(fn, "cpu") for k, fn in fns.items() if k.endswith("compiled")}
    seconds = alternate(fns, rounds)
    peak = {k: added_peak_gb(fn) for k, fn in fns.items()}
    flops = sampling_flops(ours, 2 * batch, LAYOUT.num_codes)
    bound = step_bytes(ours, 2 * batch, 2 if precision == "bf16" else 4) / (bandwidth * 1e9)
    for name, s in seconds.items():
        out[name] = {"seconds": s, "tokens_per_s": batch * LAYOUT.num_codes / s,
                     "share_of_matmul_rate": flops / s / 1e9 / matmul_rate(precision),
                     "step_ms": 1e3 * s / LAYOUT.num_codes, "bandwidth_bound_step_ms": 1e3 * bound,
                     "share_of_bandwidth_bound": bound / (s / LAYOUT.num_codes), "peak_added_gb": peak[name]}
    if "reference" in seconds:
        out["speedup"] = seconds["reference"] / seconds["ours"]
        if compiled:
            out["best_speedup"] = best_speedup(seconds)
    return out


def training(shape_name: str, precision: str, repo: Path | None, batch: int, rounds: int,
             compiled: bool = False) -> dict:
    shape = SHAPES[shape_name]
    torch.manual_seed(0)
    ours = build_lm(shape, LAYOUT).train()
    randomise(ours, vector_mean=1.0)  # norm scales near 1
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, LAYOUT.codebook_size, (batch, *LAYOUT.grid), generator=g)
    labels = torch.randint(0, LAYOUT.num_classes, (batch,), generator=g)
    sides = {"ours": Side(ours, lambda m, c, y: lm_loss(m, c, y, LAYOUT),
                          make_optimizer(ours, lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95)), precision,
                          (codes, labels), clip=1.0)}
    if repo is not None:
        gpt, _ = reference_modules(repo)
        ref = reference_model(gpt, shape, ours.config.rms_norm_eps).train()
        map_weights(ours, ref)
        decay = [p for p in ref.parameters() if p.dim() >= 2]
        rest = [p for p in ref.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                                lr=1e-4, betas=(0.9, 0.95), fused=True)  # as its train_c2i.py
        flat = codes.reshape(batch, -1)
        sides["reference"] = Side(ref, lambda m, z, y: m(z[:, :-1], y, targets=z)[1], opt, precision, (flat, labels),
                                  clip=1.0)
    if compiled:
        sides = with_compiled(sides)
    seconds = alternate({k: side.step for k, side in sides.items()}, rounds)
    peak = {k: added_peak_gb(side.step) for k, side in sides.items()}
    tokens = batch * LAYOUT.seq_len
    flops = 6 * sum(p.numel() for n, p in ours.named_parameters() if p.dim() == 2 and "embed" not in n) * tokens
    out = {"shape": shape_name, "precision": "bf16 autocast" if precision == "bf16" else "fp32", "batch": batch,
           "sequence": LAYOUT.seq_len}
    for name, s in seconds.items():
        out[name] = {"seconds": s, "tokens_per_s": tokens / s,
                     "share_of_matmul_rate": flops / s / 1e9 / matmul_rate(precision), "peak_added_gb": peak[name]}
    if compiled:
        out["compile_seconds_by_side"] = {k: side.compile_seconds for k, side in sides.items() if k.endswith("compiled")}
    if "reference" in seconds:
        out["speedup"] = seconds["reference"] / seconds["ours"]
        if compiled:
            out["best_speedup"] = best_speedup(seconds)
    return out


def doc_lines(report: dict) -> list[str]:
    def ratio(case: dict) -> str:
        return f"{case['speedup']:.2f}x" if "speedup" in case else "reference not given"

    def side(case: dict, name: str, extra: str = "") -> str:
        if name not in case:
            return "-"
        s = case[name]
        memory = "" if s["peak_added_gb"] is None else f"; adds {s['peak_added_gb']:.2f} GB at its peak"
        return (f"{s['tokens_per_s']:.1f} tokens/s ({100 * s['share_of_matmul_rate']:.0f} % of the rate"
                f"{extra.format(**s)}{memory})")

    def compiled_row(case: dict, what: str, extra: str) -> list[str]:
        """With --compiled: both sides compiled, and the best of each side against the other's best."""
        if "compile_seconds_by_side" not in case:
            return []
        best = f"best vs best {case['best_speedup']:.2f}x" if "best_speedup" in case else "reference not given"
        compiling = ", ".join(f"{k} {v:.0f} s" for k, v in case["compile_seconds_by_side"].items())
        return [f"| {what} (compiled in: {compiling}) | {case['precision']} | {side(case, 'ours compiled', extra)} | "
                f"{side(case, 'reference compiled', extra)} | {best} |"]

    lines = ["| case | precision | ours | LlamaGen | ours vs LlamaGen |", "|---|---|---|---|---|"]
    bw = "; a step {step_ms:.1f} ms, its bandwidth bound {bandwidth_bound_step_ms:.1f} ms"
    for c in report["sampling"]:
        lines.append(f"| sampling, {c['shape']} (batch {c['batch']} x {c['new_tokens']} tokens, guidance "
                     f"{c['guidance_scale']:g}) | {c['precision']} | {side(c, 'ours', bw)} | "
                     f"{side(c, 'reference', bw)} | {ratio(c)} |")
        lines += compiled_row(c, f"sampling, {c['shape']}, compiled", bw)
    for c in report["training"]:
        lines.append(f"| training step, {c['shape']} (batch {c['batch']} x {c['sequence']}) | {c['precision']} | "
                     f"{side(c, 'ours')} | {side(c, 'reference')} | {ratio(c)} |")
        lines += compiled_row(c, f"training step, {c['shape']}, compiled", "")
    gains, rates = report["sampling_bf16_vs_fp32"], report["matmul_gflops"]
    lines += ["", f"Machine: {report['machine']}, {report['threads']} threads, torch {report['torch']}; matmul rates "
              f"(2048², each share is of its precision's): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items())
              + f"; read bandwidth {report['read_gb_per_s']:.1f} GB/s. Ours with bf16 weights against ours in fp32: "
              + (", ".join(f"{k} {v:.2f}x" for k, v in gains.items()) or "not measured")
              + f". Reference: {report['reference']}. Timing: {report['timing']}. Memory: the peak resident "
              "memory one run adds over what is resident before it (the weights are; the KV cache, activations and "
              "gradients are not), each side's peak reset before its run."]
    return lines


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llamagen-repo", default=None, help="a checkout of FoundationVision/LlamaGen")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--batch", type=int, default=8, help="sampling batch (rows with guidance: twice this)")
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compiled", action="store_true", help="also each side compiled: ours through sample.compile / "
                    "train.compile's torch.compile, LlamaGen's model under torch.compile")
    add_report_arguments(ap, "bench/out/reference_llamagen.json")
    args = ap.parse_args(argv)
    report = report_of(args, lambda: measure(args))
    if args.doc:
        measured = Measured(", ".join(report["shapes"]), f"{report['machine']} (cpu, {report['threads']} threads)",
                            joined(c["precision"] for c in report["sampling"] + report["training"]))
        done = write_block(args.doc, DOC_BEGIN, DOC_END, doc_lines(report), measured, args.force)
        print(f"{args.doc}: LM beside LlamaGen {'written' if done else 'not written (no markers)'}")
    for line in doc_lines(report):
        print(line)
    return report


def measure(args: argparse.Namespace) -> dict:
    repo = checkout(args.llamagen_repo, "FoundationVision/LlamaGen", "autoregressive/models/gpt.py")
    rates = {p: matmul_rate(p) for p in args.precisions}
    bandwidth = read_bandwidth()
    report = {"machine": machine_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "shapes": args.shapes, "reference": str(repo) if repo else "not given: our side alone",
              "matmul_gflops": rates, "read_gb_per_s": bandwidth,
              "timing": f"median of {args.rounds} runs a side, the sides alternating, after a warm-up run",
              "sampling": [sampling(s, p, repo, args.batch, args.rounds, bandwidth, args.compiled)
                           for s in args.shapes for p in args.precisions],
              "training": [training(s, p, repo, args.train_batch, args.rounds, args.compiled)
                           for s in args.shapes for p in args.precisions]}
    by = {(c["shape"], c["precision"]): c for c in report["sampling"]}
    report["sampling_bf16_vs_fp32"] = {s: by[(s, "fp32 weights")]["ours"]["seconds"] / by[(s, "bf16 weights")]["ours"]
                                       ["seconds"] for s in args.shapes
                                       if (s, "fp32 weights") in by and (s, "bf16 weights") in by}
    return {**report, **stamp()}

if __name__ == "__main__":
    main()
