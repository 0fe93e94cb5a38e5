"""How new a generator's samples are: each sample's nearest training item, beside fresh real items' own.

    python -m eval.novelty --record runs/small/lm_imagenet/samples --run runs/small/lm_imagenet --scale small \
        --out results/small/eval/lm_imagenet/novelty.json

A class-consistency judge cannot tell a generator from a lookup table of its training items; this tells them
apart. For every sample, the distance to its nearest training item (the rows the generator was trained on) in two
spaces:
- `latent`: the tokenizer's own representation: the VQ code indices (distance: the share of codes that differ,
  1 - agreement) or the KL posterior mean (Euclidean, per latent number);
- `judge`: the pooled features of the class-consistency judge (eval/classifier.py; Euclidean).

Every item is compared in one form, as the samples are stored: 8-bit pixels, encoded by the generator's tokenizer.
The training items are the extraction's rows decoded by that tokenizer (what the generator saw); the reference is
fresh real items of the same classes (the embedded data: random crops / clips at seeds the extraction never uses;
a folder: its held-out split), encoded and decoded by the same tokenizer: the samples a generator that makes new
items of this data would give through that decoder.

The figure, per guidance scale: the share of samples nearer to a training item than the `COPY_QUANTILE` (5 %)
quantile of the fresh items' nearest-training distances, "nearer than fresh". Fresh items score 5 % by
construction; a generator that returns its training items scores 100 %. With VQ codes also the share of samples
with at least `NEAR_COPY` (90 %) of their codes equal to one training row, and of exact copies (every code).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from tqdm.auto import tqdm

from shared.atomic import read_json_object
from shared.data.errors import DataError
from shared.data.transforms import to_uint8, to_unit_range
from shared.extraction import ShardDataset
from shared.guidance import guidance_key
from shared.provenance import check_sha256, file_sha256
from shared.sample_folders import checked_folder, read_samples_record

from .class_consistency import list_samples, load_sample
from .classifier import PRESETS, RealData, autocast, device, load_or_train
from .judge_references import class_items, judge_features
from .results import write_result

COPY_QUANTILE = 0.05  # the fresh items' nearest-training distance below which a sample counts as nearer than fresh
NEAR_COPY = 0.9  # VQ codes: a sample with at least this share of its codes equal to one training row
FRESH_DRAW = 4  # eval.judge_references.class_items' draws 0-3 are the judge's reference points


# --------------------------------------------------------------------------------------------------------------
# Nearest training item
# --------------------------------------------------------------------------------------------------------------

def nearest_euclidean(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) queries, (M, D) bank -> each query's Euclidean distance to its nearest bank row, and that row."""
    if len(bank) == 0:
        raise ValueError("no training items to compare with")
    queries, bank = queries.double(), bank.double()
    dist, index = [], []
    for i in range(0, len(queries), chunk):
        d, j = torch.cdist(queries[i : i + chunk], bank).min(1)
        dist.append(d)
        index.append(j)
    return torch.cat(dist).float(), torch.cat(index)


def nearest_agreement(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L) code rows, (M, L) bank -> each query's largest share of positions equal to one bank row, and that row."""
    if len(bank) == 0:
        raise ValueError("no training items to compare with")
    if queries.shape[1:] != bank.shape[1:]:
        raise ValueError(f"code rows of {tuple(queries.shape[1:])} against training rows of {tuple(bank.shape[1:])}")
    best, index = [], []
    for i in range(0, len(queries), chunk):
        equal, j = (queries[i : i + chunk, None, :] == bank[None]).sum(-1).max(1)
        best.append(equal / queries.shape[1])
        index.append(j)
    return torch.cat(best), torch.cat(index)


def nearer_than_fresh(samples: torch.Tensor, fresh: torch.Tensor, quantile: float = COPY_QUANTILE) -> dict:
    """Distances to the nearest training item of samples and of fresh real items -> the share of each below the
    fresh items' `quantile` (the samples' figure; fresh: about `quantile` by construction), with the medians."""
    if len(samples) == 0 or len(fresh) == 0:
        raise ValueError(f"need samples and fresh items, got {len(samples)} and {len(fresh)}")
    threshold = float(torch.quantile(fresh.double(), quantile))
    return {"nearer_than_fresh": float((samples < threshold).double().mean()),
            "fresh_nearer_than_fresh": float((fresh < threshold).double().mean()), "threshold": threshold,
            "quantile": quantile, "median": float(samples.median()), "fresh_median": float(fresh.median()),
            "n": len(samples), "fresh_n": len(fresh)}


# --------------------------------------------------------------------------------------------------------------
# Items in the tokenizer's form and the judge's
# --------------------------------------------------------------------------------------------------------------

def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] rounded to the 256 levels a stored sample has (the samples' own conversion both ways)."""
    return to_unit_range(to_uint8(x.float()))


class Representation:
    """A tokenizer's view of pixel items: code indices (VQ) or posterior means (KL)."""

    def __init__(self, tokenizer):
        self.tok, self.vq = tokenizer, tokenizer.config.quantizer == "vq"
        self.dev = next(tokenizer.parameters()).device

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> long code indices (B, T', h, w) or float posterior means (B, C, T', h, w)."""
        with autocast(self.dev.type):
            enc = self.tok.encode(pixels.to(self.dev))
        return enc.indices.long().cpu() if self.vq else enc.latent_dist.mean.float().cpu()

    @torch.no_grad()
    def decode(self, rows: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        """encode's rows, or an extraction's (image means without the frame axis) -> 8-bit pixels (B, 3, T, H, W)."""
        with autocast(self.dev.type):
            if self.vq:
                x = self.tok.decode_indices(rows.long().to(self.dev), size=size).sample
            else:
                z = rows.float().to(self.dev)
                x = self.tok.decode(z if z.dim() == 5 else z[:, :, None], size=size).sample
        return to_8bit(x.float().cpu())

    def distance(self, queries: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest-bank distance of flattened rows (VQ: 1 - agreement; KL: Euclidean per latent number, so that
        grids of any size compare) and the bank row."""
        queries, bank = queries.flatten(1), bank.flatten(1)
        if self.vq:
            agreement, index = nearest_agreement(queries, bank)
            return 1 - agreement, index
        dist, index = nearest_euclidean(queries, bank)
        return dist / queries.shape[1] ** 0.5, index


def stored_rows(folder: str | Path) -> tuple[torch.Tensor, str]:
    """An extraction folder's rows as the tokenizer decodes them: VQ codes, or the KL posterior means."""
    data = ShardDataset(folder)
    for name in ("codes", "mean"):
        if name in data.arrays:
            return data.arrays[name].load(), name
    raise DataError(Path(folder), f"an extraction folder holds codes or latent means; this one holds "
                                  f"{sorted(data.arrays)}")


@torch.no_grad()
def training_bank(rep: Representation, net, rows: torch.Tensor, size: tuple[int, int, int],
                  batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Every training row decoded, stored as 8 bits and encoded again: (latent rows, judge features)."""
    latents, features = [], []
    for i in tqdm(range(0, len(rows), batch_size), desc="training items", unit="batch", leave=False):
        x = rep.decode(rows[i : i + batch_size], size)
        latents.append(rep.encode(x))
        features.append(torch.from_numpy(judge_features(net, x)))
    return torch.cat(latents), torch.cat(features)


def through_tokenizer(rep: Representation, pixels: torch.Tensor, size: tuple[int, int, int],
                      batch_size: int = 64) -> torch.Tensor:
    """Real items encoded and decoded by the tokenizer, as 8-bit pixels (what a generator of new items would give)."""
    return torch.cat([rep.decode(rep.encode(to_8bit(pixels[i : i + batch_size])), size)
                      for i in range(0, len(pixels), batch_size)])


def fresh_items(data: RealData, known: list[int], per_class: int) -> tuple[torch.Tensor, str]:
    """Real items of the known classes that the extraction never encoded, and what they are."""
    if data.source == "embedded":
        pixels, _ = class_items(data, known, per_class, draw=FRESH_DRAW)
        return pixels, f"{per_class} fresh random {'crops' if data.kind == 'image' else 'clips'} per class (seeds the " \
                       f"extraction never uses)"
    dataset, keys, what = data.held_out(per_class * len(known))
    return torch.stack([dataset[k]["pixels"] for k in keys]), what


def run_decoders(run: Path, summary: dict) -> set[str]:
    """The sha256 a samples record may give for the tokenizer that decoded a run's samples: the tokenizer the run was
    trained on, and a diffusion pipeline's copy of it (final/vae: the same weights, its config's scaling_factor set to
    the run's latent scale, so its folder hashes apart), once the final folder and the weights are checked."""
    decoders = {summary["tokenizer_sha256"]}
    vae = run / "final" / "vae"
    if vae.is_dir():
        check_sha256(run / "final", summary["final_sha256"], run / "summary.json")
        check_sha256(vae / SAFETENSORS_WEIGHTS_NAME, file_sha256(Path(summary["tokenizer"]) / SAFETENSORS_WEIGHTS_NAME),
                     summary["tokenizer"], remedy="The pipeline's VAE is not the tokenizer the run was trained on")
        decoders.add(file_sha256(vae))
    return decoders


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------

def measure(folders: list[tuple[float, str, str | None]], run: Path, scale: str, per_class: int | None = None,
            cache: str | None = None, decoded_by: str | None = None) -> dict:
    """Every samples folder's (guidance scale, folder, its files' sha256) nearest-training figures in both spaces,
    with the fresh items' reference. decoded_by: the sha256 of the tokenizer the samples were decoded by (their
    samples.json's), refused unless it is the run's."""
    from tokenizer import OmniTokenizer

    summary = read_json_object(run / "summary.json", "training summary")
    if decoded_by is not None and decoded_by not in run_decoders(run, summary):
        raise ValueError(f"the samples were decoded by tokenizer {decoded_by[:12]}..., {run / 'summary.json'} was "
                         f"trained on the codes or latents of {summary['tokenizer_sha256'][:12]}...: these samples are "
                         f"not of this run; give the run that made them")
    settings = read_json_object(Path(summary["data"]) / "manifest.json", "extraction manifest")["settings"]
    check_sha256(summary["tokenizer"], summary["tokenizer_sha256"], run / "summary.json")
    kind, frames, resolution = settings["kind"], settings["frames"], settings["resolution"]
    size = (frames, resolution, resolution)
    data = RealData(kind, settings["source"], resolution, frames, settings.get("video_layout") or "ucf101")
    net, record = load_or_train(data, PRESETS[scale][kind], cache or f"results/{scale}/classifiers")
    known = record["known_classes"]
    rep = Representation(OmniTokenizer.from_pretrained(summary["tokenizer"]).to(device()).eval())
    rows, stored = stored_rows(summary["data"])
    bank_latent, bank_judge = training_bank(rep, net, rows, size)
    first = list_samples(folders[0][1], kind)
    per_class = per_class or max(sum(c == first[0][1] for _, c in first), 32)
    real, fresh_what = fresh_items(data, known, per_class)
    fresh = through_tokenizer(rep, real, size)
    fresh_dist, _ = rep.distance(rep.encode(fresh), bank_latent)
    fresh_judge, _ = nearest_euclidean(torch.from_numpy(judge_features(net, fresh)), bank_judge)
    out = []
    for guidance_scale, folder, sha in folders:
        files = list_samples(folder, kind)
        pixels = torch.stack([load_sample(p, resolution, frames) for p, _ in files])
        latent = torch.cat([rep.encode(pixels[i : i + 64]) for i in range(0, len(pixels), 64)])
        latent_dist, _ = rep.distance(latent, bank_latent)
        judge_dist, _ = nearest_euclidean(torch.from_numpy(judge_features(net, pixels)), bank_judge)
        row = {"guidance_scale": guidance_scale, "samples": str(folder), "samples_sha256": sha, "n": len(files),
               "latent": nearer_than_fresh(latent_dist, fresh_dist), "judge": nearer_than_fresh(judge_dist, fresh_judge)}
        if rep.vq:
            agreement = 1 - latent_dist
            row["codes"] = {"near_copies": float((agreement >= NEAR_COPY).double().mean()),
                            "exact_copies": float((agreement == 1).double().mean()),
                            "mean_agreement": float(agreement.mean()), "fresh_mean_agreement": float(1 - fresh_dist.mean()),
                            "fresh_near_copies": float((1 - fresh_dist >= NEAR_COPY).double().mean())}
        out.append(row)
    return {"novelty": out, "training_rows": len(rows), "training_data": summary["data"], "stored": stored,
            "latent_space": "VQ code indices (1 - agreement)" if rep.vq else "KL posterior mean (Euclidean / sqrt(dim))",
            "judge_space": f"the judge's pooled features ({record['weights']})", "fresh_items": fresh_what,
            "fresh_per_class": per_class, "classifier_sha256": record["weights_sha256"],
            "tokenizer": summary["tokenizer"], "tokenizer_sha256": summary["tokenizer_sha256"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", required=True, help="a generator's samples folder (samples.json)")
    ap.add_argument("--run", required=True, help="the training run (summary.json: its training data and tokenizer)")
    ap.add_argument("--scale", default="small", choices=sorted(PRESETS), help="the judge's preset and cache")
    ap.add_argument("--per-class", type=int, default=None,
                    help="fresh real items per class (default: the samples per class, at least 32)")
    ap.add_argument("--cache", default=None, help="classifier folder (default results/<scale>/classifiers)")
    ap.add_argument("--out", required=True, help="result JSON")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        record = read_samples_record(args.record)
        folders = [(f["guidance_scale"], str(checked_folder(args.record, f)), f["sha256"])
                   for f in record["folders"].values()]
        if not folders:
            raise DataError(Path(args.record), "samples.json names no samples folder")
        metrics = measure(folders, Path(args.run), args.scale, args.per_class, args.cache,
                          record.get("tokenizer_sha256", record.get("vae_sha256")))
    except (DataError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    write_result(args.out, metrics, scale=args.scale, eval_seconds=time.perf_counter() - start,
                 threads=torch.get_num_threads(), device=device())
    print(json.dumps({guidance_key(r["guidance_scale"]): {"latent": round(r["latent"]["nearer_than_fresh"], 4),
                                             "judge": round(r["judge"]["nearer_than_fresh"], 4),
                                             **({"near_copies": round(r["codes"]["near_copies"], 4)} if "codes" in r
                                                else {})} for r in metrics["novelty"]}, indent=1))
    return metrics


if __name__ == "__main__":
    main()
