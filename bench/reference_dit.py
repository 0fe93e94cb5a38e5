"""Our DiT training step beside facebookresearch/DiT's, same shapes and the same weights, in one process.

    python -m bench.reference_dit --dit-repo /path/to/DiT --out bench/out/reference_dit.json --doc docs/speed.md

A checkout of https://github.com/facebookresearch/DiT (its `models.py` and `diffusion/`, importable with timm) is
imported from --dit-repo; nothing of it is copied into the project. For each model size (S/2, B/2: 8-channel
16 x 16 latents, batch 8) and precision (fp32; bf16 autocast where the CPU has it), both sides get our weights
(mapped one to one: the fused qkv is our q, k, v stacked), and the step times forward, the MSE + VB loss,
backward and AdamW (each side's own loss code; the optimizers as each trainer makes them). The two take turns
step by step for several rounds; the median of each side's steps counts. The outputs of one forward are compared
first (they agree to float tolerance, or the bench stops). Without --dit-repo our side runs alone. With --doc, the
table goes into that page between its markers (DOC_BEGIN / DOC_END).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.flops import machine_name, matmul_gflops
from diffusion_generation.config import DiffusionConfig
from diffusion_generation.diffusion import GaussianDiffusion
from diffusion_generation.dit import DiT
from diffusion_generation.train import make_optimizer
from shared.atomic import atomic_rewrite_block, atomic_write_json
from shared.provenance import stamp

SIZES = {"S/2": (384, 12, 6), "B/2": (768, 12, 12)}  # hidden size, depth, heads (DiT's table)
DOC_BEGIN = "<!-- DiT beside its reference: written by `python -m bench.reference_dit --doc`; do not edit -->"
DOC_END = "<!-- end of DiT beside its reference -->"


def reference_model(repo: Path, size: str):
    sys.path.insert(0, str(repo))  # the reference's own modules: models.py, diffusion/
    from models import DiT_models  # noqa: PLC0415

    from diffusion import create_diffusion  # noqa: PLC0415

    return DiT_models[f"DiT-{size}"](input_size=16, in_channels=8, num_classes=1000, learn_sigma=True), \
        create_diffusion(timestep_respacing="")


def map_weights(ours: DiT, ref) -> None:
    """Copy our weights into the reference model (its fixed position table is its own)."""
    s = ours.state_dict()
    out = {"x_embedder.proj.weight": s["patch_embed.weight"], "x_embedder.proj.bias": s["patch_embed.bias"],
           "t_embedder.mlp.0.weight": s["condition.time_embed.linear_1.weight"],
           "t_embedder.mlp.0.bias": s["condition.time_embed.linear_1.bias"],
           "t_embedder.mlp.2.weight": s["condition.time_embed.linear_2.weight"],
           "t_embedder.mlp.2.bias": s["condition.time_embed.linear_2.bias"],
           "y_embedder.embedding_table.weight": s["condition.label_embed.embedding_table.weight"],
           "final_layer.linear.weight": s["final.linear.weight"], "final_layer.linear.bias": s["final.linear.bias"],
           "final_layer.adaLN_modulation.1.weight": s["final.adaLN_modulation.1.weight"],
           "final_layer.adaLN_modulation.1.bias": s["final.adaLN_modulation.1.bias"]}
    for i in range(len(ours.blocks)):
        b, r = f"blocks.{i}.", f"blocks.{i}."
        out[r + "attn.qkv.weight"] = torch.cat([s[b + f"attn.to_{k}.weight"] for k in "qkv"])
        out[r + "attn.qkv.bias"] = torch.cat([s[b + f"attn.to_{k}.bias"] for k in "qkv"])
        out[r + "attn.proj.weight"], out[r + "attn.proj.bias"] = s[b + "attn.to_out.0.weight"], s[b + "attn.to_out.0.bias"]
        out[r + "mlp.fc1.weight"], out[r + "mlp.fc1.bias"] = s[b + "mlp.net.0.proj.weight"], s[b + "mlp.net.0.proj.bias"]
        out[r + "mlp.fc2.weight"], out[r + "mlp.fc2.bias"] = s[b + "mlp.net.2.weight"], s[b + "mlp.net.2.bias"]
        out[r + "adaLN_modulation.1.weight"] = s[b + "adaLN_modulation.1.weight"]
        out[r + "adaLN_modulation.1.bias"] = s[b + "adaLN_modulation.1.bias"]
    missing = ref.load_state_dict(out, strict=False)
    if set(missing.missing_keys) - {"pos_embed"} or missing.unexpected_keys:
        raise RuntimeError(f"weight map incomplete: {missing}")


def randomise(model) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)


class Side:
    """One model's training step: its forward, its loss code, backward, its optimizer."""

    def __init__(self, model, loss, optimizer, precision: str):
        self.model, self.loss, self.opt, self.precision = model.train(), loss, optimizer, precision
        self.times: list[float] = []

    def step(self, x, t, y, noise) -> None:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            loss = self.loss(self.model, x, t, y, noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.times.append(time.perf_counter() - start)


def compare(size: str, precision: str, repo: Path | None, batch: int, rounds: int) -> dict:
    hidden, depth, heads = SIZES[size]
    torch.manual_seed(0)
    ours = DiT(in_channels=8, patch_size=2, hidden_size=hidden, depth=depth, num_heads=heads, num_classes=1000)
    randomise(ours)
    diffusion = GaussianDiffusion(DiffusionConfig())
    sides = {"ours": Side(ours, lambda m, x, t, y, n: diffusion.training_losses(m, x, t, y, n)["loss"].mean(),
                          make_optimizer(ours, lr=1e-4, weight_decay=0.0), precision)}
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(batch, 8, 16, 16, generator=g), torch.randn(batch, 8, 16, 16, generator=g)
    t, y = torch.randint(0, 1000, (batch,), generator=g), torch.randint(0, 1000, (batch,), generator=g)
    agreement = None
    if repo is not None:
        ref, ref_diffusion = reference_model(repo, size)
        map_weights(ours, ref)
        with torch.no_grad():
            a, b = ours.eval()(x, t, y), ref.eval()(x, t, y)
        agreement = (a - b).abs().max().item()
        if agreement > 1e-3 * b.abs().max().item():
            raise RuntimeError(f"{size}: outputs differ by {agreement} with mapped weights")
        sides["reference"] = Side(ref, lambda m, x, t, y, n: ref_diffusion.training_losses(
            m, x, t, model_kwargs={"y": y}, noise=n)["loss"].mean(),
            torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0), precision)  # as its train.py
    for side in sides.values():  # warm-up
        side.step(x, t, y, noise)
        side.times.clear()
    for _ in range(rounds):
        for side in sides.values():
            side.step(x, t, y, noise)
    seconds = {k: statistics.median(s.times) for k, s in sides.items()}
    out = {"size": size, "precision": precision, "batch": batch, "rounds": rounds, "median_seconds": seconds,
           "forward_max_abs_difference": agreement}
    if "reference" in seconds:
        out["speedup"] = seconds["reference"] / seconds["ours"]
    return out


def doc_lines(report: dict) -> list[str]:
    """The page's table: per size and precision, each side's median step and the ratio."""
    lines = [f"DiT training step (forward, MSE + VB loss, backward, AdamW; batch {report['cases'][0]['batch']}, "
             f"8-channel 16 x 16 latents, the same weights), median of {report['cases'][0]['rounds']} steps taken in "
             f"turns; {report['machine']}, {report['threads']} threads; reference: {report['reference']}.", "",
             "| size | precision | ours (ms) | facebookresearch/DiT (ms) | ours vs reference | forward max diff |",
             "|---|---|---|---|---|---|"]
    for r in report["cases"]:
        ours, ref, diff = r["median_seconds"]["ours"], r["median_seconds"].get("reference"), r["forward_max_abs_difference"]
        cells = ["-", "-"] if ref is None else [f"{ref * 1000:.0f}", f"{r['speedup']:.2f}x"]
        lines.append(f"| {r['size']} | {r['precision']} | {ours * 1000:.0f} | {cells[0]} | {cells[1]} | "
                     f"{'-' if diff is None else f'{diff:.1e}'} |")
    return lines


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dit-repo", default=None, help="a checkout of facebookresearch/DiT")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", required=True)
    ap.add_argument("--doc", default=None, help="a Markdown page with the markers: the table goes there")
    args = ap.parse_args(argv)
    repo = Path(args.dit_repo) if args.dit_repo else None
    if repo is not None and not (repo / "models.py").is_file():
        raise SystemExit(f"{repo}: not a checkout of facebookresearch/DiT (no models.py)")
    precisions = ["fp32"] + (["bf16"] if matmul_gflops("cpu", torch.bfloat16) > 1.2 * matmul_gflops("cpu") else [])
    rows = [compare(size, p, repo, args.batch, args.rounds) for size in args.sizes for p in precisions]
    report = {"machine": machine_name(), "threads": torch.get_num_threads(),
              "reference": str(repo) if repo else "not given: our side alone", "cases": rows, **stamp()}
    atomic_write_json(args.out, report)
    if args.doc:
        atomic_rewrite_block(args.doc, DOC_BEGIN, DOC_END, doc_lines(report))
    for r in rows:
        print(f"{r['size']} {r['precision']}: ours {r['median_seconds']['ours'] * 1000:.0f} ms"
              + (f", reference {r['median_seconds']['reference'] * 1000:.0f} ms, {r['speedup']:.2f}x"
                 if "speedup" in r else ""))
    return report


if __name__ == "__main__":
    main()
