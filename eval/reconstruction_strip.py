"""A picture of what the tokenizer's numbers mean: held-out photos, their bicubic 8x down-and-up, and the VQVAE's
and the VAE's reconstructions, one row each, with each row's PSNR and block-edge ratio on those photos.

    python -m eval.reconstruction_strip --run runs/small/tokenizer --out docs/img/reconstructions_small.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from shared.data import EmbeddedPhotos
from shared.data.transforms import to_uint8
from shared.metrics.bicubic import bicubic_down_up
from shared.metrics.block_edge import block_edge_ratio
from shared.metrics.reconstruction import psnr
from tokenizer import OmniTokenizer

ROWS = (("VQVAE (joint stage)", "joint"), ("VAE (kl stage)", "kl"))


def photos(resolution: int, count: int) -> torch.Tensor:
    """`count` held-out embedded photos spread over the split, (N, 3, H, W) in [-1, 1]."""
    split = EmbeddedPhotos("val", resolution)
    picks = torch.linspace(0, len(split) - 1, count).round().long().tolist()
    return torch.stack([split[i]["pixels"][:, 0] for i in picks])


@torch.no_grad()
def strip_rows(run: Path, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(label, images) per row: the inputs, bicubic 8x, then each stage of ROWS that the run has finished."""
    rows = [("input", x), ("bicubic 8x down-and-up", bicubic_down_up(x, 8.0))]
    for label, stage in ROWS:
        folder = run / stage / "final"
        if (folder / "config.json").is_file():
            model = OmniTokenizer.from_pretrained(folder).eval()
            rows.append((label, model(x)[0].clamp(-1, 1)))
    return rows


def draw(rows: list[tuple[str, torch.Tensor]], patch: int, out: Path, caption: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = rows[0][1]
    fig, axes = plt.subplots(len(rows), 1, figsize=(x.shape[0] * 1.3, len(rows) * 1.55))
    for ax, (label, images) in zip(axes, rows):
        tiles = torch.cat(list(to_uint8(images)), -1).permute(1, 2, 0).numpy()
        ax.imshow(tiles, interpolation="nearest")
        figures = "" if images is x else (f": PSNR {psnr(images, x).mean().item():.1f} dB, block-edge ratio "
                                          f"{block_edge_ratio(images, patch):.2f}")
        ax.set_title(label + (f" (block-edge ratio {block_edge_ratio(x, patch):.2f})" if images is x else figures),
                     fontsize=9, loc="left")
        ax.axis("off")
    fig.suptitle(caption, fontsize=8, y=0.01, va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a tokenizer run folder (its joint/ and kl/ stages)")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--count", type=int, default=8, help="held-out photos shown")
    args = ap.parse_args(argv)
    run = Path(args.run)
    x = photos(args.resolution, args.count)
    rows = strip_rows(run, x)
    if len(rows) == 2:
        raise SystemExit(f"{run}: no finished joint/ or kl/ stage to show")
    patch = OmniTokenizer.from_pretrained(run / ROWS[len(rows) - 3][1] / "final").config.patch_size
    caption = (f"held-out embedded photos at {args.resolution} px, never seen in training; figures on these "
               f"{args.count} photos; block-edge ratio: mean step across the {patch}-pixel patch grid / inside it")
    out = draw(rows, patch, Path(args.out), caption)
    print(out)
    return out


if __name__ == "__main__":
    main()
