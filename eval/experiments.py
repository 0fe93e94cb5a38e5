"""The one list of experiments behind the tables: each row of ours, what makes it, and what it is compared with.

A tokenizer row names a run ("tokenizer" or "tokenizer_<variant>"), the stage whose model it evaluates, and the
split (image -> rFID, video -> rFVD). A generation row names a generator, the data it learns from and its result
file (results/<scale>/<name>.json, written by its make target: tokenizer -> codes or latents -> training ->
sampling -> eval/ on the samples; FID for images, FVD for videos). From this list come the tables' rows
(eval/tables.py), the ablation comparisons (eval/ablations.py), the Makefile's inputs and dependencies and its
generator targets: adding a row is one entry here.

    python -m eval.experiments --scale small --make    # Make rules: the result files the tables read, and the
                                                       # runs each run waits for (init_from another run's stage)
    python -m eval.experiments --generators            # the generator targets and their recipes
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
    """A generator's row: its result file results/<scale>/<name>.json and the make target `name` with dashes that
    writes it (tokenizer -> codes or latents -> training -> sampling -> eval/ on the samples -> the result file)."""
    table: int
    label: str
    name: str
    generator: str  # "lm" (lm_generation, on the VQ codes) or a diffusion experiment ("dit", "latte"; on VAE latents)
    data: str  # "images" or "videos": what it learns from (DATA_IMAGES / DATA_VIDEOS, default the embedded data)
    video_layout: str | None = None  # how a video folder names classes (shared.data.video_folder)
    task: str | None = None  # the LM's task when not the data's kind: "frames" (prediction, unconditional)
    eval_frames: int | None = None  # frames per clip for the FVD

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
    GenerationRow(3, "Ours (AR, class-conditional images)", "lm_imagenet", "lm", "images"),
    GenerationRow(4, "Ours (AR, UCF-101 class-conditional)", "lm_ucf", "lm", "videos", "ucf101", eval_frames=16),
    GenerationRow(4, "Ours (AR, K600 frame prediction)", "lm_k600", "lm", "videos", "classes", "frames", 17),
    GenerationRow(5, "Ours (DiT)", "dit_imagenet", "dit", "images"),
    GenerationRow(6, "Ours (Latte)", "latte_ucf", "latte", "videos", "ucf101", eval_frames=16),
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


def generator_rule(row: GenerationRow) -> str:
    """Make text for one generator row: its target and the recipe of its result file, on the Makefile's macros
    (LM_TRAIN_SAMPLE / DIFFUSION_TRAIN_SAMPLE, then GEN_EVAL)."""
    images = row.data == "images"
    var = "$(DATA_IMAGES)" if images else "$(DATA_VIDEOS)"
    source = f"--{row.data} $(or {var},embedded)"
    frames = row.task == "frames"
    split = "val" if frames else "train"
    if images:
        reference, judge = "$(IMAGE_REFERENCE)", f"$(if {var},--images {var})"
    else:
        reference = f"--frames {row.eval_frames} $(FVD_LIMIT) $(call VIDEO_REFERENCE,{row.video_layout},{split})"
        judge = f"$(if {var},--videos {var} --video-layout {row.video_layout})"
    result, run = f"$(RESULTS)/{row.name}.json", f"runs/$(SCALE)/{row.name}"
    if row.generator == "lm":
        tokenizer, dep = "$(VQ_TOKENIZER)", "$(VQ_DEP)"
        layout = f" --set data.video_layout={row.video_layout}" if row.video_layout else ""
        codes = f"$(call CODES,{var},{'images' if images else 'clips'})"
        val_codes = f"$(call CODES,{var},clips_val)"
        recipe = [f"$(PY) -m lm_generation.extract_codes --tokenizer $(VQ_TOKENIZER) {source} --split val{layout} "
                  f"--set data.flip=false --scale $(SCALE) --out {val_codes}"] if frames else []
        recipe.append(f"$(call LM_TRAIN_SAMPLE,{row.name},{source}{layout},{codes},{'--task frames' if frames else ''},"
                      f"{'--codes ' + val_codes if frames else ''})")
        if frames:
            recipe.append(f"$(PY) -m eval.frame_prediction --pipeline {run}/final {source} --video-layout "
                          f"{row.video_layout} --split val --scale $(SCALE) --out $(RESULTS)/eval/{row.name}/"
                          "frame_prediction.json")
    else:
        tokenizer, dep = "$(VAE)", "$(VAE_DEP)"
        recipe = [f"$(call DIFFUSION_TRAIN_SAMPLE,{row.generator},{var},{row.name})"]
    recipe.append(f"$(call GEN_EVAL,{row.name},{row.kind},{reference},{'none' if frames else judge},"
                  f"{'' if frames else tokenizer})")
    return "\n".join([f"# {row.label}", f".PHONY: {row.target}", f"{row.target}: {result}",
                      f"{result}: | $(STAMP) {dep}", *(f"\t{line}" for line in recipe)]) + "\n"


def generator_rules() -> str:
    """Make text for every generator row (the Makefile includes it)."""
    return "\n".join(generator_rule(row) for row in GENERATION_ROWS)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--results", default="results")
    ap.add_argument("--make", action="store_true", help="print Make rules for this scale")
    ap.add_argument("--generators", action="store_true", help="print the generator targets' Make rules")
    ap.add_argument("--seeds", type=int, default=1, help="with --make: seeds 0..N-1 of every tokenizer run")
    args = ap.parse_args(argv)
    if args.make:
        print(make_rules(args.scale, args.results, args.seeds), end="")
    if args.generators:
        print(generator_rules(), end="")


if __name__ == "__main__":
    main()
