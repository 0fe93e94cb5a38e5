"""The one list of experiments behind the tables: each row of ours, what makes it, and what it is compared with.

A tokenizer row names a run ("tokenizer" or "tokenizer_<variant>"), the stage whose model it evaluates, and the
split (image -> rFID, video -> rFVD). A generation row names a generator, the data it learns from and its result
file (results/<scale>/<name>.json, written by the Makefile's target of the same name with dashes: tokenizer ->
codes or latents -> training -> sampling -> eval/ on the samples; FID for images, FVD for videos). From this list
come the tables' rows (eval/tables.py), the ablation comparisons (eval/ablations.py) and the Makefile's inputs and
dependencies: adding a tokenizer row is one entry here; a generation row also needs its Makefile target.

    python -m eval.experiments --scale small --make    # Make rules: the result files the tables read, and the
                                                       # runs each run waits for (init_from another run's stage)
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from shared.paths import eval_result, other_run_stage, run_result, seeded, tokenizer_run

METRIC = {"image": "rfid", "video": "rfvd"}


@dataclass(frozen=True)
class TokenizerRow:
    table: int
    label: str
    run: str
    stage: str
    split: str  # "image" (rFID) or "video" (rFVD)

    @property
    def metric(self) -> str:
        return METRIC[self.split]

    def result(self, scale: str, root: str | Path = "results") -> Path:
        return eval_result(scale, self.run, self.stage, root)


@dataclass(frozen=True)
class GenerationRow:
    """A generator's row: its result file results/<scale>/<name>.json, written by the Makefile's target `name` with
    dashes (tokenizer -> codes or latents -> training -> sampling -> eval/ on the samples -> the result file)."""
    table: int
    label: str
    name: str
    data: str  # "images" (FID) or "videos" (FVD): what the generator learns from

    @property
    def kind(self) -> str:
        return "image" if self.data == "images" else "video"

    @property
    def metric(self) -> str:
        return "fid" if self.kind == "image" else "fvd"

    @property
    def target(self) -> str:
        return self.name.replace("_", "-")

    def result(self, scale: str, root: str | Path = "results") -> Path:
        return run_result(scale, self.name, root)


GENERATION_ROWS: list[GenerationRow] = [
    GenerationRow(3, "Ours (AR, class-conditional images)", "lm_imagenet", "images"),
    GenerationRow(4, "Ours (AR, UCF-101 class-conditional)", "lm_ucf", "videos"),
    GenerationRow(4, "Ours (AR, K600 frame prediction)", "lm_k600", "videos"),
    GenerationRow(5, "Ours (DiT)", "dit_imagenet", "images"),
    GenerationRow(6, "Ours (Latte)", "latte_ucf", "videos"),
]


def _both(table: int, label: str, run: str, stage: str) -> list[TokenizerRow]:
    return [TokenizerRow(table, label, run, stage, "image"), TokenizerRow(table, label, run, stage, "video")]


DEFAULT, VARIANT = tokenizer_run(), tokenizer_run
ROWS: list[TokenizerRow] = [
    TokenizerRow(1, "Ours-VQVAE", DEFAULT, "joint", "image"), TokenizerRow(1, "Ours-VAE", DEFAULT, "kl", "image"),
    TokenizerRow(2, "Ours-VQVAE", DEFAULT, "joint", "video"), TokenizerRow(2, "Ours-VAE", DEFAULT, "kl", "video"),
    TokenizerRow(7, "Ours-Image (Fix)", DEFAULT, "image", "image"),  # stage 1 of the default schedule
    TokenizerRow(7, "Ours-Image (Multi)", VARIANT("image_multi"), "image", "image"),
    TokenizerRow(7, "Ours-Video (Fix)", VARIANT("video_fixed"), "video", "video"),
    TokenizerRow(7, "Ours-Video (Multi)", VARIANT("video_multi"), "video", "video"),
    *_both(7, "Ours-Joint (Fix)", VARIANT("joint_fixed"), "joint"),
    *_both(7, "Ours-Joint (Multi)", DEFAULT, "joint"),
    TokenizerRow(8, "Plain", VARIANT("spatial_plain"), "image", "image"),
    TokenizerRow(8, "Window", VARIANT("spatial_window"), "image", "image"),
    TokenizerRow(9, "Window / Plain", VARIANT("temporal_plain"), "joint", "video"),
    TokenizerRow(9, "Window / Causal", DEFAULT, "joint", "video"),
    *_both(10, "Joint (VQ-KL) VQVAE", DEFAULT, "joint"), *_both(10, "Joint (VQ-KL) VAE", DEFAULT, "kl"),
    *_both(10, "Joint (KL-VQ) VQVAE", VARIANT("kl_vq"), "vq"), *_both(10, "Joint (KL-VQ) VAE", VARIANT("kl_vq"), "kl"),
]
ROWS.sort(key=lambda r: r.table)  # stable: the order above within each table


def row(table: int, label: str, split: str) -> TokenizerRow:
    for r in ROWS:
        if (r.table, r.label, r.split) == (table, label, split):
            return r
    raise KeyError(f"no row ({table}, {label!r}, {split}) in eval/experiments.py")


# Two-setting comparisons of Tables 7-10, as (table, what, paper column, split, side, side); a side is
# (name, paper row, our row's label). A paper row is named by its first cell, or as (column, cell).
COMPARISONS = [
    (7, "image-only: fixed vs multi-resolution, rFID", "ImageNet 256", "image",
     ("fixed", "Ours-Image (Fix)", "Ours-Image (Fix)"), ("multi", "Ours-Image (Multi)", "Ours-Image (Multi)")),
    (7, "video-only: fixed vs multi-resolution, rFVD (paper: UCF 128)", "UCF 128", "video",
     ("fixed", "Ours-Video (Fix)", "Ours-Video (Fix)"), ("multi", "Ours-Video (Multi)", "Ours-Video (Multi)")),
    (7, "joint: fixed vs multi-resolution, rFID", "ImageNet 256", "image",
     ("fixed", "Ours-Joint (Fix)", "Ours-Joint (Fix)"), ("multi", "Ours-Joint (Multi)", "Ours-Joint (Multi)")),
    (7, "joint: fixed vs multi-resolution, rFVD (paper: UCF 128)", "UCF 128", "video",
     ("fixed", "Ours-Joint (Fix)", "Ours-Joint (Fix)"), ("multi", "Ours-Joint (Multi)", "Ours-Joint (Multi)")),
    (7, "image-only vs joint (both multi-resolution), rFID", "ImageNet 256", "image",
     ("image-only", "Ours-Image (Multi)", "Ours-Image (Multi)"), ("joint", "Ours-Joint (Multi)", "Ours-Joint (Multi)")),
    (7, "video-only vs joint (both multi-resolution), rFVD (paper: UCF 128)", "UCF 128", "video",
     ("video-only", "Ours-Video (Multi)", "Ours-Video (Multi)"), ("joint", "Ours-Joint (Multi)", "Ours-Joint (Multi)")),
    (8, "spatial attention: plain vs window, rFID", "rFID", "image",
     ("plain", "Plain", "Plain"), ("window", "Window", "Window")),
    (9, "temporal attention: plain vs causal, rFVD", "rFVD", "video",
     ("plain", ("Temporal", "Plain"), "Window / Plain"), ("causal", ("Temporal", "Causal"), "Window / Causal")),
    (10, "VQVAE: VQ-KL vs KL-VQ order, rFID", "ImageNet VQVAE", "image",
     ("VQ-KL", "Joint (VQ-KL)", "Joint (VQ-KL) VQVAE"), ("KL-VQ", "Joint (KL-VQ)", "Joint (KL-VQ) VQVAE")),
    (10, "VAE: VQ-KL vs KL-VQ order, rFID", "ImageNet VAE", "image",
     ("VQ-KL", "Joint (VQ-KL)", "Joint (VQ-KL) VAE"), ("KL-VQ", "Joint (KL-VQ)", "Joint (KL-VQ) VAE")),
    (10, "VQVAE: VQ-KL vs KL-VQ order, rFVD", "K600 VQVAE", "video",
     ("VQ-KL", "Joint (VQ-KL)", "Joint (VQ-KL) VQVAE"), ("KL-VQ", "Joint (KL-VQ)", "Joint (KL-VQ) VQVAE")),
    (10, "VAE: VQ-KL vs KL-VQ order, rFVD", "K600 VAE", "video",
     ("VQ-KL", "Joint (VQ-KL)", "Joint (VQ-KL) VAE"), ("KL-VQ", "Joint (KL-VQ)", "Joint (KL-VQ) VAE")),
]


def runs_in_config(scale: str) -> set[str]:
    """The tokenizer runs a scale's config can make: the default schedule and one per entry of its `variants`."""
    from tokenizer.train_config import train_config

    return {DEFAULT} | {VARIANT(v) for v in train_config(scale).variants}


def run_dependencies(scale: str) -> dict[str, set[str]]:
    """run -> the other runs it starts from (a stage's init_from naming another run's stage, "<run>/<stage>")."""
    from tokenizer.train_config import train_config

    cfg = train_config(scale)
    deps = {}
    for variant, stages in [(None, cfg.stages), *cfg.variants.items()]:
        found = {ref[0] for s in stages if (ref := other_run_stage(s.init_from))}
        deps[VARIANT(variant)] = found - {VARIANT(variant)}
    return deps


def make_rules(scale: str, root: str = "results", seeds: int = 1) -> str:
    """Make text: TABLE_INPUTS (the result files the tables read that this scale's config can make, for seeds
    0..seeds-1 of every tokenizer run) and the order of runs (a run waits for the run of the same seed whose stage
    it starts from); the Makefile's pattern rule trains any of them from its name."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    runs = runs_in_config(scale)
    inputs = sorted({str(eval_result(scale, seeded(r.run, k), r.stage, root)) for r in ROWS if r.run in runs
                     for k in range(seeds)})
    inputs += [str(r.result(scale, root)) for r in GENERATION_ROWS]  # the Makefile's generator rules make these
    lines = [f"TABLE_INPUTS := {' '.join(inputs)}"]
    for run, deps in sorted(run_dependencies(scale).items()):
        for k in range(seeds):
            if deps:
                waits = " ".join(str(run_result(scale, seeded(d, k), root)) for d in sorted(deps))
                lines.append(f"{run_result(scale, seeded(run, k), root)}: | {waits}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--results", default="results")
    ap.add_argument("--make", action="store_true", help="print Make rules for this scale")
    ap.add_argument("--seeds", type=int, default=1, help="with --make: seeds 0..N-1 of every tokenizer run")
    args = ap.parse_args(argv)
    if args.make:
        print(make_rules(args.scale, args.results, args.seeds), end="")


if __name__ == "__main__":
    main()
