"""Our DiT training step and guided sampling beside facebookresearch/DiT's, same shapes and weights, in one process.

    python -m bench.reference_dit --dit-repo /path/to/DiT --out bench/out/reference_dit.json --doc docs/speed.md

A checkout of https://github.com/facebookresearch/DiT (its `models.py` and `diffusion/`, importable with timm) is
imported from --dit-repo; nothing of it is copied into the project. For each model size (S/2, B/2: 8-channel
16 x 16 latents, batch 8) and precision (fp32; bf16 autocast where the CPU has it), both sides get our weights
(mapped one to one: the fused qkv is our q, k, v stacked), and the step times forward, the MSE + VB loss,
backward and AdamW (each side's own loss code; the optimizers as each trainer makes them). The two take turns
step by step for several rounds; the median of each side's steps counts. The outputs of one forward are compared
first (they agree to float tolerance, or the bench stops). Then guided sampling at --sampling-sizes, DDPM (learned
variance) and DDIM with --sampling-steps model calls each: our sampler (diffusers' schedulers in our loop) against the reference's
p_sample_loop / ddim_sample_loop over its forward_with_cfg, the runs in turns. Without --dit-repo our side runs
alone. With --doc, the tables go into that page between its markers (DOC_BEGIN / DOC_END). The parts shared with
the Latte bench are in reference_pair.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from bench.reference_pair import (Side, agreement, alternate, checkout, doc_table, load_mapped, parser, precisions,
                                  randomise, reference_state, take_turns, with_compiled, write_report)
from diffusion_generation.config import DiffusionConfig
from diffusion_generation.diffusion import GaussianDiffusion, make_scheduler, sample
from diffusion_generation.dit import DiT
from diffusion_generation.train import make_optimizer
from shared.training.precision import autocast

SIZES = {"S/2": (384, 12, 6), "B/2": (768, 12, 12)}  # hidden size, depth, heads (DiT's table)
GUIDANCE = 4.0
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


def compare(size: str, precision: str, repo: Path | None, batch: int, rounds: int,
            compiled: bool = False) -> dict:
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
    return take_turns({"size": size, "precision": precision, "batch": batch},
                      with_compiled(sides) if compiled else sides, rounds, difference)


def sampling(size: str, precision: str, repo: Path | None, batch: int, steps: int, rounds: int) -> list[dict]:
    """Guided sampling, DDPM (learned variance) and DDIM, `steps` model calls on a doubled batch each: our sampler
    against the reference's p_sample_loop / ddim_sample_loop over its forward_with_cfg, the same weights, in turns."""
    hidden, depth, heads = SIZES[size]
    torch.manual_seed(0)
    ours = DiT(in_channels=8, patch_size=2, hidden_size=hidden, depth=depth, num_heads=heads, num_classes=1000)
    randomise(ours)
    ours.eval()
    labels = torch.arange(batch) % 1000
    shape = (batch, 8, 16, 16)
    if repo is not None:
        ref, _ = reference_model(repo, size)
        map_weights(ours, ref)
        ref.eval()
        from diffusion import create_diffusion  # noqa: PLC0415 (the reference's, on its path now)

        ref_diffusion = create_diffusion(str(steps))
        ref_kwargs = dict(y=torch.cat([labels, torch.full_like(labels, 1000)]), cfg_scale=GUIDANCE)
    rows = []
    for sampler in ("ddpm", "ddim"):
        scheduler = make_scheduler(DiffusionConfig(), learn_sigma=True, sampler=sampler, steps=steps)

        def ours_run(scheduler=scheduler):
            with autocast(precision, "cpu"):
                return sample(ours, scheduler, shape, labels, GUIDANCE, generator=torch.Generator().manual_seed(0))

        runs = {"ours": ours_run}
        if repo is not None:
            loop = ref_diffusion.p_sample_loop if sampler == "ddpm" else ref_diffusion.ddim_sample_loop

            def ref_run(loop=loop):
                z = torch.randn(shape, generator=torch.Generator().manual_seed(0))
                with torch.no_grad(), autocast(precision, "cpu"):
                    return loop(ref.forward_with_cfg, (2 * batch, *shape[1:]), torch.cat([z, z]), clip_denoised=False,
                                model_kwargs=ref_kwargs, progress=False, device="cpu")

            runs["reference"] = ref_run
        seconds = alternate(runs, rounds)
        row = {"size": size, "precision": precision, "sampler": sampler, "batch": batch, "steps": steps,
               "guidance_scale": GUIDANCE, "rounds": rounds, "median_seconds": seconds}
        if "reference" in seconds:
            row["speedup"] = seconds["reference"] / seconds["ours"]
        rows.append(row)
    return rows


def doc_lines(report: dict) -> list[str]:
    """The page's tables: per size and precision, each side's median training step and guided sampling run, and the
    ratios."""
    lines = doc_table(report, f"DiT training step (forward, MSE + VB loss, backward, AdamW; batch "
                              f"{report['cases'][0]['batch']}, 8-channel 16 x 16 latents, the same weights)", REPO_NAME)
    rows = report.get("sampling", [])
    if rows:
        first = rows[0]
        lines += ["", f"Guided sampling (guidance {first['guidance_scale']:g}, batch {first['batch']} doubled for "
                  f"guidance, {first['steps']} model calls; ours: diffusers' schedulers in our loop; the reference: its "
                  f"p_sample_loop / ddim_sample_loop over forward_with_cfg, which guides 3 of the 8 latent channels, "
                  f"ours all: the same model calls), median of {first['rounds']} runs taken in turns:", "",
                  f"| size | precision | sampler | ours (s) | {REPO_NAME} (s) | ours vs reference |", "|---|---|---|---|---|---|"]
        for r in rows:
            ref = r["median_seconds"].get("reference")
            lines.append(f"| {r['size']} | {r['precision']} | {r['sampler'].upper()} | {r['median_seconds']['ours']:.2f} | "
                         + ("- | - |" if ref is None else f"{ref:.2f} | {r['speedup']:.2f}x |"))
    return lines


def main(argv=None) -> dict:
    ap = parser(__doc__, "--dit-repo", REPO_NAME, SIZES, batch=8, compiled=True)
    ap.add_argument("--sampling-sizes", nargs="*", default=["S/2"], choices=list(SIZES),
                    help="sizes whose guided sampling is timed too (B/2's take many minutes on a CPU)")
    ap.add_argument("--sampling-steps", type=int, default=25, help="model calls per guided sampling run")
    ap.add_argument("--sampling-rounds", type=int, default=3)
    args = ap.parse_args(argv)

    def measure():
        repo = checkout(args.dit_repo, REPO_NAME, "models.py", needs=("timm",))
        kinds = precisions()
        rows = [compare(size, p, repo, args.batch, args.rounds, args.compiled) for size in args.sizes for p in kinds]
        runs = [r for size in args.sampling_sizes for p in kinds
                for r in sampling(size, p, repo, args.batch, args.sampling_steps, args.sampling_rounds)]
        return rows, repo, ", ".join(args.sizes), {"sampling": runs}

    return write_report(args, (DOC_BEGIN, DOC_END), doc_lines, measure)


if __name__ == "__main__":
    main()
