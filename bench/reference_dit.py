"""Our DiT training step beside facebookresearch/DiT's, same shapes and the same weights, in one process.

    python -m bench.reference_dit --dit-repo /path/to/DiT --out bench/out/reference_dit.json --doc docs/speed.md

A checkout of https://github.com/facebookresearch/DiT (its `models.py` and `diffusion/`, importable with timm) is
imported from --dit-repo; nothing of it is copied into the project. For each model size (S/2, B/2: 8-channel
16 x 16 latents, batch 8) and precision (fp32; bf16 autocast where the CPU has it), both sides get our weights
(mapped one to one: the fused qkv is our q, k, v stacked), and the step times forward, the MSE + VB loss,
backward and AdamW (each side's own loss code; the optimizers as each trainer makes them). The two take turns
step by step for several rounds; the median of each side's steps counts. The outputs of one forward are compared
first (they agree to float tolerance, or the bench stops). Without --dit-repo our side runs alone. With --doc, the
table goes into that page between its markers (DOC_BEGIN / DOC_END). The parts shared with the Latte bench are in
reference_pair.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from bench.reference_pair import (Side, agreement, checkout, doc_table, load_mapped, parser, precisions, randomise,
                                  reference_state, take_turns, write_report)
from diffusion_generation.config import DiffusionConfig
from diffusion_generation.diffusion import GaussianDiffusion
from diffusion_generation.dit import DiT
from diffusion_generation.train import make_optimizer

SIZES = {"S/2": (384, 12, 6), "B/2": (768, 12, 12)}  # hidden size, depth, heads (DiT's table)
REPO_NAME = "facebookresearch/DiT"
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
    load_mapped(ref, reference_state(ours), fixed={"pos_embed"})


def compare(size: str, precision: str, repo: Path | None, batch: int, rounds: int) -> dict:
    hidden, depth, heads = SIZES[size]
    torch.manual_seed(0)
    ours = DiT(in_channels=8, patch_size=2, hidden_size=hidden, depth=depth, num_heads=heads, num_classes=1000)
    randomise(ours)
    diffusion = GaussianDiffusion(DiffusionConfig())
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(batch, 8, 16, 16, generator=g), torch.randn(batch, 8, 16, 16, generator=g)
    t, y = torch.randint(0, 1000, (batch,), generator=g), torch.randint(0, 1000, (batch,), generator=g)
    sides = {"ours": Side(ours, lambda m, x, t, y, n: diffusion.training_losses(m, x, t, y, n)["loss"].mean(),
                          make_optimizer(ours, lr=1e-4, weight_decay=0.0), precision, (x, t, y, noise))}
    difference = None
    if repo is not None:
        ref, ref_diffusion = reference_model(repo, size)
        map_weights(ours, ref)
        with torch.no_grad():
            difference = agreement(size, ours.eval()(x, t, y), ref.eval()(x, t, y))
        sides["reference"] = Side(ref, lambda m, x, t, y, n: ref_diffusion.training_losses(
            m, x, t, model_kwargs={"y": y}, noise=n)["loss"].mean(),
            torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0),  # as its train.py makes it
            precision, (x, t, y, noise))
    return take_turns({"size": size, "precision": precision, "batch": batch}, sides, rounds, difference)


def doc_lines(report: dict) -> list[str]:
    """The page's table: per size and precision, each side's median step and the ratio."""
    return doc_table(report, f"DiT training step (forward, MSE + VB loss, backward, AdamW; batch "
                             f"{report['cases'][0]['batch']}, 8-channel 16 x 16 latents, the same weights)", REPO_NAME)


def main(argv=None) -> dict:
    args = parser(__doc__, "--dit-repo", REPO_NAME, SIZES, batch=8).parse_args(argv)
    repo = checkout(args.dit_repo, REPO_NAME, "models.py")
    kinds = precisions()
    rows = [compare(size, p, repo, args.batch, args.rounds) for size in args.sizes for p in kinds]
    return write_report(rows, repo, args, (DOC_BEGIN, DOC_END), doc_lines)


if __name__ == "__main__":
    main()
