"""Do our ablations point the same way as the paper's? Each comparison pits two settings on one metric (lower
is better for rFID and rFVD), takes the paper's two numbers from its table and ours from the result files,
and says which setting wins in each, and by how much."""
from __future__ import annotations

import json
from pathlib import Path

from .paper_tables import PAPER_TABLES

# (table, what is compared, (name, paper row, paper column, our run, stage, split, metric) for each side);
# a paper row is named by its first cell, or as (column, cell)
COMPARISONS = [
    (7, "image-only: fixed vs multi-resolution, rFID",
     ("fixed", "Ours-Image (Fix)", "ImageNet 256", "tokenizer", "image", "image", "rfid"),
     ("multi", "Ours-Image (Multi)", "ImageNet 256", "tokenizer_image_multi", "image", "image", "rfid")),
    (7, "video-only: fixed vs multi-resolution, rFVD (paper: UCF 128)",
     ("fixed", "Ours-Video (Fix)", "UCF 128", "tokenizer_video_fixed", "video", "video", "rfvd"),
     ("multi", "Ours-Video (Multi)", "UCF 128", "tokenizer_video_multi", "video", "video", "rfvd")),
    (7, "joint: fixed vs multi-resolution, rFID",
     ("fixed", "Ours-Joint (Fix)", "ImageNet 256", "tokenizer_joint_fixed", "joint", "image", "rfid"),
     ("multi", "Ours-Joint (Multi)", "ImageNet 256", "tokenizer", "joint", "image", "rfid")),
    (7, "joint: fixed vs multi-resolution, rFVD (paper: UCF 128)",
     ("fixed", "Ours-Joint (Fix)", "UCF 128", "tokenizer_joint_fixed", "joint", "video", "rfvd"),
     ("multi", "Ours-Joint (Multi)", "UCF 128", "tokenizer", "joint", "video", "rfvd")),
    (7, "image-only vs joint (both multi-resolution), rFID",
     ("image-only", "Ours-Image (Multi)", "ImageNet 256", "tokenizer_image_multi", "image", "image", "rfid"),
     ("joint", "Ours-Joint (Multi)", "ImageNet 256", "tokenizer", "joint", "image", "rfid")),
    (7, "video-only vs joint (both multi-resolution), rFVD (paper: UCF 128)",
     ("video-only", "Ours-Video (Multi)", "UCF 128", "tokenizer_video_multi", "video", "video", "rfvd"),
     ("joint", "Ours-Joint (Multi)", "UCF 128", "tokenizer", "joint", "video", "rfvd")),
    (8, "spatial attention: plain vs window, rFID",
     ("plain", "Plain", "rFID", "tokenizer_spatial_plain", "image", "image", "rfid"),
     ("window", "Window", "rFID", "tokenizer_spatial_window", "image", "image", "rfid")),
    (9, "temporal attention: plain vs causal, rFVD",
     ("plain", ("Temporal", "Plain"), "rFVD", "tokenizer_temporal_plain", "joint", "video", "rfvd"),
     ("causal", ("Temporal", "Causal"), "rFVD", "tokenizer", "joint", "video", "rfvd")),
    (10, "VQVAE: VQ-KL vs KL-VQ order, rFID",
     ("VQ-KL", "Joint (VQ-KL)", "ImageNet VQVAE", "tokenizer", "joint", "image", "rfid"),
     ("KL-VQ", "Joint (KL-VQ)", "ImageNet VQVAE", "tokenizer_kl_vq", "vq", "image", "rfid")),
    (10, "VAE: VQ-KL vs KL-VQ order, rFID",
     ("VQ-KL", "Joint (VQ-KL)", "ImageNet VAE", "tokenizer", "kl", "image", "rfid"),
     ("KL-VQ", "Joint (KL-VQ)", "ImageNet VAE", "tokenizer_kl_vq", "kl", "image", "rfid")),
    (10, "VQVAE: VQ-KL vs KL-VQ order, rFVD",
     ("VQ-KL", "Joint (VQ-KL)", "K600 VQVAE", "tokenizer", "joint", "video", "rfvd"),
     ("KL-VQ", "Joint (KL-VQ)", "K600 VQVAE", "tokenizer_kl_vq", "vq", "video", "rfvd")),
    (10, "VAE: VQ-KL vs KL-VQ order, rFVD",
     ("VQ-KL", "Joint (VQ-KL)", "K600 VAE", "tokenizer", "kl", "video", "rfvd"),
     ("KL-VQ", "Joint (KL-VQ)", "K600 VAE", "tokenizer_kl_vq", "kl", "video", "rfvd")),
]
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
    for table, what, side_a, side_b in COMPARISONS:
        (name_a, prow_a, pcol_a, *ours_a), (name_b, prow_b, pcol_b, *ours_b) = side_a, side_b
        pa, pb = paper_value(table, prow_a, pcol_a), paper_value(table, prow_b, pcol_b)
        paper_text, paper_winner = _verdict(name_a, pa, name_b, pb)
        oa, ob = our_value(Path(results), *ours_a), our_value(Path(results), *ours_b)
        if oa is None or ob is None:
            rows.append([str(table), what, paper_text, "not run", "", ""])
            continue
        our_text, our_winner = _verdict(name_a, oa[0], name_b, ob[0])
        psnr_winner = name_a if oa[1] > ob[1] else name_b if ob[1] > oa[1] else "neither"
        rows.append([str(table), what, paper_text, our_text, "yes" if our_winner == paper_winner else "no",
                     f"{name_a} {oa[1]:.2f} vs {name_b} {ob[1]:.2f}: {psnr_winner} better by {abs(oa[1] - ob[1]):.2f}"])
    return rows
