"""Our Latte training step beside Vchitect/Latte's, same shapes and the same weights, in one process.

    python -m bench.reference_latte --latte-repo /path/to/Latte --out bench/out/reference_latte.json --doc docs/speed.md

A checkout of https://github.com/Vchitect/Latte (its `models/latte.py` and `diffusion/`, importable with timm and
einops) is imported from --latte-repo; nothing of it is copied into the project. `models/latte.py` is imported on its
own: the `models` package also imports the text-to-video model, which needs an older diffusers than ours. For each
model size (S/2, B/2 as its Latte_S_2 and Latte_B_2: depth counts spatial and temporal blocks together) and
precision (fp32; bf16 autocast where the CPU has it), both sides get our weights, mapped one to one as in the DiT
bench (Latte keeps DiT's names: the fused qkv is our q, k, v stacked), on --batch class-conditional clips (101
classes, as UCF-101) of --frames 8-channel 16 x 16 latents (4 by default; the reference takes any count, fixed when
it is built). The step times forward, the MSE + VB loss, backward and AdamW (each side's own loss code; the
optimizers as each trainer makes them; gradient clipping, which both trainers apply late in training, is left out of
both). The two take turns step by step for several rounds; the median of each side's steps counts. The outputs of
one forward are compared first (they agree to float tolerance, or the bench stops). Without --latte-repo our side
runs alone. With --doc, the table goes into that page between its markers (DOC_BEGIN / DOC_END).

The two models compute the same function: the same spatial / temporal alternation (even blocks spatial, odd
temporal), frame positions (1-D sin-cos) added before the first temporal block, and one timestep + class embedding
given to every block and the final layer. What differs is the interface and the attention kernel (DIFFERENCES, also
in the JSON): the reference is built for one clip shape and takes its clips frames first, so it is given the same
clips transposed (outside the timed step), and it is built with its class-conditional setting.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from bench.reference_pair import (Side, agreement, checkout, doc_table, load_mapped, parser, precisions, randomise,
                                  reference_state, take_turns, with_compiled, write_report)
from diffusion_generation.config import DiffusionConfig
from diffusion_generation.diffusion import GaussianDiffusion
from diffusion_generation.latte import Latte
from diffusion_generation.train import make_optimizer

SIZES = {"S/2": (384, 12, 6), "B/2": (768, 12, 12)}  # hidden size, depth, heads (Latte's models/latte.py)
CLASSES = 101
REPO_NAME = "Vchitect/Latte"
DIFFERENCES = [
    "layout: the reference takes and returns clips as (N, F, C, H, W), ours as (N, C, T, H, W); it gets the same "
    "clips and noise transposed (contiguous, made before the timed steps), and its output is compared transposed back",
    "class conditioning: the reference is built with extras=2 (its class-conditional setting, its UCF-101 config's); "
    "its default extras=1 has no label embedding at all",
    "shape: the reference's position tables and conditioning repeats are fixed when it is built (input_size, "
    "num_frames), so it takes that clip shape only; ours takes any frame count and grid",
    "attention: the reference's attention_mode 'math' (what its get_models builds: softmax(q k^T) v in explicit "
    "matmuls, the attention matrix kept for backward); ours torch's scaled_dot_product_attention, and on the CPU in "
    "bf16 diffusers' explicit processor (its softmax in fp32)",
]
DOC_BEGIN = "<!-- Latte beside its reference: written by `python -m bench.reference_latte --doc`; do not edit -->"
DOC_END = "<!-- end of Latte beside its reference -->"


def reference_model(repo: Path, size: str, frames: int):
    sys.path[:0] = [str(repo), str(repo / "models")]  # the reference's own modules: diffusion/, models/latte.py
    from latte import Latte_models  # noqa: PLC0415

    from diffusion import create_diffusion  # noqa: PLC0415

    return Latte_models[f"Latte-{size}"](input_size=16, num_frames=frames, in_channels=8, num_classes=CLASSES,
                                         learn_sigma=True, extras=2), create_diffusion(timestep_respacing="")


def map_weights(ours: Latte, ref) -> None:
    """Copy our weights into the reference model (its fixed position tables, per patch and per frame, are its own)."""
    load_mapped(ref, reference_state(ours), fixed={"pos_embed", "temp_embed"})


def frames_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).contiguous()


def compare(size: str, precision: str, repo: Path | None, batch: int, frames: int, rounds: int,
            compiled: bool = False) -> dict:
    hidden, depth, heads = SIZES[size]
    torch.manual_seed(0)
    ours = Latte(in_channels=8, patch_size=2, hidden_size=hidden, depth=depth, num_heads=heads, num_classes=CLASSES)
    randomise(ours)
    diffusion = GaussianDiffusion(DiffusionConfig())
    g = torch.Generator().manual_seed(0)
    shape = (batch, 8, frames, 16, 16)
    x, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    t, y = torch.randint(0, 1000, (batch,), generator=g), torch.randint(0, CLASSES, (batch,), generator=g)
    sides = {"ours": Side(ours, lambda m, x, t, y, n: diffusion.training_losses(m, x, t, y, n)["loss"].mean(),
                          make_optimizer(ours, lr=1e-4, weight_decay=0.0), precision, (x, t, y, noise))}
    difference = None
    if repo is not None:
        ref, ref_diffusion = reference_model(repo, size, frames)
        map_weights(ours, ref)
        with torch.no_grad():
            difference = agreement(size, ours.eval()(x, t, y), ref.eval()(frames_first(x), t, y).transpose(1, 2))
        sides["reference"] = Side(ref, lambda m, x, t, y, n: ref_diffusion.training_losses(
            m, x, t, model_kwargs={"y": y}, noise=n)["loss"].mean(),
            torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0),  # as its train.py makes it
            precision, (frames_first(x), t, y, frames_first(noise)))
    case = {"size": size, "precision": precision, "batch": batch, "frames": frames}
    return take_turns(case, with_compiled(sides) if compiled else sides, rounds, difference)


def doc_lines(report: dict) -> list[str]:
    """The page's table: per size and precision, each side's median step and the ratio."""
    first = report["cases"][0]
    return doc_table(report, f"Latte training step (forward, MSE + VB loss, backward, AdamW; batch {first['batch']} "
                             f"clips of {first['frames']} frames of 8-channel 16 x 16 latents, {CLASSES} classes, the "
                             f"same weights)", REPO_NAME)


def main(argv=None) -> dict:
    ap = parser(__doc__, "--latte-repo", REPO_NAME, SIZES, batch=4, compiled=True)
    ap.add_argument("--frames", type=int, default=4, help="latent frames per clip")
    args = ap.parse_args(argv)

    def measure():
        repo = checkout(args.latte_repo, REPO_NAME, "models/latte.py", needs=("timm",))
        kinds = precisions()
        rows = [compare(size, p, repo, args.batch, args.frames, args.rounds, args.compiled)
                for size in args.sizes for p in kinds]
        return rows, repo, ", ".join(args.sizes), {"differences": DIFFERENCES}

    return write_report(args, (DOC_BEGIN, DOC_END), doc_lines, measure)


if __name__ == "__main__":
    main()
