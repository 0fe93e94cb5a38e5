"""Do our ablations point the same way as the paper's? Each comparison pits two settings on one metric (lower
is better for rFID and rFVD), takes the paper's two numbers from its table and ours from the result files,
and says which setting wins in each, and by how much."""
from __future__ import annotations

import json
from pathlib import Path

from .paper_tables import PAPER_TABLES

# (table, what is compared, paper column, our split, then for each side: (name, paper row, our run, stage)); a
# paper row is named by its first cell, or as (column, cell). The metric follows the split: rFID for images,
# rFVD for videos.
COMPARISONS = [
    (7, "image-only: fixed vs multi-resolution, rFID", "ImageNet 256", "image",
     ("fixed", "Ours-Image (Fix)", "tokenizer", "image"), ("multi", "Ours-Image (Multi)", "tokenizer_image_multi", "image")),
    (7, "video-only: fixed vs multi-resolution, rFVD (paper: UCF 128)", "UCF 128", "video",
     ("fixed", "Ours-Video (Fix)", "tokenizer_video_fixed", "video"),
     ("multi", "Ours-Video (Multi)", "tokenizer_video_multi", "video")),
    (7, "joint: fixed vs multi-resolution, rFID", "ImageNet 256", "image",
     ("fixed", "Ours-Joint (Fix)", "tokenizer_joint_fixed", "joint"), ("multi", "Ours-Joint (Multi)", "tokenizer", "joint")),
    (7, "joint: fixed vs multi-resolution, rFVD (paper: UCF 128)", "UCF 128", "video",
     ("fixed", "Ours-Joint (Fix)", "tokenizer_joint_fixed", "joint"), ("multi", "Ours-Joint (Multi)", "tokenizer", "joint")),
    (7, "image-only vs joint (both multi-resolution), rFID", "ImageNet 256", "image",
     ("image-only", "Ours-Image (Multi)", "tokenizer_image_multi", "image"),
     ("joint", "Ours-Joint (Multi)", "tokenizer", "joint")),
    (7, "video-only vs joint (both multi-resolution), rFVD (paper: UCF 128)", "UCF 128", "video",
     ("video-only", "Ours-Video (Multi)", "tokenizer_video_multi", "video"),
     ("joint", "Ours-Joint (Multi)", "tokenizer", "joint")),
    (8, "spatial attention: plain vs window, rFID", "rFID", "image",
     ("plain", "Plain", "tokenizer_spatial_plain", "image"), ("window", "Window", "tokenizer_spatial_window", "image")),
    (9, "temporal attention: plain vs causal, rFVD", "rFVD", "video",
     ("plain", ("Temporal", "Plain"), "tokenizer_temporal_plain", "joint"),
     ("causal", ("Temporal", "Causal"), "tokenizer", "joint")),
    (10, "VQVAE: VQ-KL vs KL-VQ order, rFID", "ImageNet VQVAE", "image",
     ("VQ-KL", "Joint (VQ-KL)", "tokenizer", "joint"), ("KL-VQ", "Joint (KL-VQ)", "tokenizer_kl_vq", "vq")),
    (10, "VAE: VQ-KL vs KL-VQ order, rFID", "ImageNet VAE", "image",
     ("VQ-KL", "Joint (VQ-KL)", "tokenizer", "kl"), ("KL-VQ", "Joint (KL-VQ)", "tokenizer_kl_vq", "kl")),
    (10, "VQVAE: VQ-KL vs KL-VQ order, rFVD", "K600 VQVAE", "video",
     ("VQ-KL", "Joint (VQ-KL)", "tokenizer", "joint"), ("KL-VQ", "Joint (KL-VQ)", "tokenizer_kl_vq", "vq")),
    (10, "VAE: VQ-KL vs KL-VQ order, rFVD", "K600 VAE", "video",
     ("VQ-KL", "Joint (VQ-KL)", "tokenizer", "kl"), ("KL-VQ", "Joint (KL-VQ)", "tokenizer_kl_vq", "kl")),
]
METRIC = {"image": "rfid", "video": "rfvd"}
COLUMNS = ["Table", "Comparison", "Paper", "Ours", "Same direction?", "Ours, PSNR of the same split (dB, higher is better)"]


def paper_value(table: int, row: str | tuple[str, str], column: str) -> float:
    """The paper's number under `column` in the row whose first cell is `row` (or whose `row[0]` cell is `row[1]`)."""
    t = PAPER_TABLES[table]
    key, cell = (t["columns"][0], row) if isinstance(row, str) else row
    k, col = t["columns"].index(key), t["columns"].index(column)
    for r in t["rows"]:
        if r[k] == cell:
            return float(r[col])
    raise KeyError(f"Table {table} has no row with {key} = {cell!r}")


def our_value(results: Path, run: str, stage: str, split: str, metric: str) -> tuple[float, float] | None:
    """(metric, PSNR) of a stage's model on a split, from its eval file; None when not evaluated."""
    f = results / "eval" / run / f"{stage}.json"
    if not f.is_file():
        return None
    m = json.loads(f.read_text())["metrics"].get(split)
    return None if m is None else (float(m[metric]["value"]), float(m["psnr"]))


def _verdict(name_a: str, a: float, name_b: str, b: float) -> tuple[str, str | None]:
    """'A x vs B y: B better by z %' and the winner (None on a tie)."""
    if a == b:
        return f"{name_a} {a:.2f} = {name_b} {b:.2f}", None
    winner, gap = (name_a, (b - a) / b) if a < b else (name_b, (a - b) / a)
    return f"{name_a} {a:.2f} vs {name_b} {b:.2f}: {winner} better by {100 * gap:.0f} %", winner


def compare(results: str | Path) -> list[list[str]]:
    rows = []
    for table, what, column, split, (name_a, paper_a, run_a, stage_a), (name_b, paper_b, run_b, stage_b) in COMPARISONS:
        paper_text, paper_winner = _verdict(name_a, paper_value(table, paper_a, column),
                                            name_b, paper_value(table, paper_b, column))
        oa = our_value(Path(results), run_a, stage_a, split, METRIC[split])
        ob = our_value(Path(results), run_b, stage_b, split, METRIC[split])
        if oa is None or ob is None:
            rows.append([str(table), what, paper_text, "not run", "", ""])
            continue
        our_text, our_winner = _verdict(name_a, oa[0], name_b, ob[0])
        psnr_winner = name_a if oa[1] > ob[1] else name_b if ob[1] > oa[1] else "neither"
        rows.append([str(table), what, paper_text, our_text, "yes" if our_winner == paper_winner else "no",
                     f"{name_a} {oa[1]:.2f} vs {name_b} {ob[1]:.2f}: {psnr_winner} better by {abs(oa[1] - ob[1]):.2f}"])
    return rows
