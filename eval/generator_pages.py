"""The generators' result tables in their docs pages, generated from the result files (never typed), in TABLES.md's
columns (eval/tables.py), with the share of the weakest class and the sampling settings beneath:

    python -m eval.generator_pages --scale small --page docs/lm_generation.md --target lm-imagenet lm-ucf lm-k600
    python -m eval.generator_pages --scale small --page docs/diffusion_generation.md --target dit-imagenet latte-ucf
    python -m eval.generator_pages --scale small --page docs/lm_generation.md --sampling-sweep docs/results/lm_sampling
    python -m eval.generator_pages --scale small --page README.md --summary

The summary: one line per generator target, its best guidance scale beside the judge's reference points (README,
SUMMARY_BEGIN / SUMMARY_END).

The last: one trained model's class consistency under several sampling settings (a file per setting, each holding
its settings and the judge's result), sorted by guidance, top-k and temperature (SWEEP_BEGIN / SWEEP_END).

A target without a result file shows "not run"; a page without the markers (BEGIN / END) is left alone. Each block
records the scale (--scale; the sweep's files were measured at it too), machine and precision of its result files
(shared.doc_blocks), and a block measured at scale paper is replaced by another scale's only with --force.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from shared.atomic import read_json_object
from shared.config import ConfigError, build
from shared.doc_blocks import Measured, from_results, write_block

from .experiments import GENERATION_ROWS
from .generator_result import ClassShare, GeneratorResult, Record, ResultError, SampleNovelty
from .tables import GENERATION_COLUMNS, generation_result, generation_rows, markdown_table, novelty_cell

BEGIN = "<!-- generator results: written by `python -m eval.generator_pages` from the result files; do not edit -->"
END = "<!-- end of generator results -->"
SWEEP_BEGIN = "<!-- sampling comparison: written by `python -m eval.generator_pages --sampling-sweep`; do not edit -->"
SWEEP_END = "<!-- end of sampling comparison -->"
SUMMARY_BEGIN = "<!-- generator summary: written by `python -m eval.generator_pages --summary`; do not edit -->"
SUMMARY_END = "<!-- end of generator summary -->"
SAMPLING_KEYS = ("sampler", "sampling_steps", "temperature", "top_k", "top_p", "cfg_interval")
# eval.frame_prediction's readings: as sampled, greedy, best of N, last frame repeated, tokenizer reconstruction
PREDICTION_READINGS = ("model", "model_greedy", "model_best_of_n", "repeat_last_given", "tokenizer_reconstruction")


def class_spread(per_class: list[ClassShare]) -> str:
    """The weakest class's share and how many classes reach half, in words."""
    worst = min(per_class, key=lambda c: c.share)
    half = sum(c.share >= 0.5 for c in per_class)
    return f"weakest class {worst.name} {worst.share:.0%}, {half} of {len(per_class)} classes at 50 % or more"


def weakest_classes(result: GeneratorResult) -> list[str]:
    """Per guidance scale the judge scored: the share of the weakest class and how many classes reach half."""
    return [f"guidance {m.guidance_scale}: {class_spread(m.class_consistency_per_class)} ({m.n_sampled} samples)"
            for m in result.judged() if m.class_consistency_per_class]


def frame_prediction(result: GeneratorResult) -> list[str]:
    """Frame prediction against the true frames (eval.frame_prediction), where the result holds it: the model as
    sampled, its greedy decoding and its best of N samples (an oracle pick), beside the two references; and the
    judge-feature Fréchet distances to the true clips where they were measured."""
    if result.frame_prediction is None:
        return []
    scored = result.frame_prediction.metrics
    frames, n = scored.predicted_frames, scored.best_of
    means = {k: getattr(scored, k).psnr.mean for k in PREDICTION_READINGS}
    line = (f"predicted frames {frames[0]}-{frames[-1]} of {scored.clips} held-out clips, mean PSNR: the model as "
            f"sampled {means['model']:.2f} dB, greedy {means['model_greedy']:.2f}, best of {n} samples (picked by "
            f"the truth: an oracle) {means['model_best_of_n']:.2f}, the last given frame repeated "
            f"{means['repeat_last_given']:.2f}, the tokenizer's reconstruction of the true frames (the ceiling) "
            f"{means['tokenizer_reconstruction']:.2f}")
    if scored.judge_features:
        fd = {k: getattr(scored.judge_features, k).frechet for k in PREDICTION_READINGS}
        line += (f"; judge-feature FD to the true clips (the judge trained here, not I3D): as sampled "
                 f"{fd['model']:.2f}, greedy {fd['model_greedy']:.2f}, best of {n} {fd['model_best_of_n']:.2f}, "
                 f"repeated {fd['repeat_last_given']:.2f}, reconstruction {fd['tokenizer_reconstruction']:.2f}")
    return [line]


def sampling_settings(result: GeneratorResult) -> str:
    """The sampler's settings of the result's samples (the sampler's own keys, SAMPLING_KEYS), in words."""
    settings = result.sampling.sampling
    return ", ".join(f"{k} {settings[k]}" for k in SAMPLING_KEYS if settings.get(k) is not None)


def page_lines(results: Path, targets: list[str]) -> list[str]:
    rows, notes = [], []
    for row in GENERATION_ROWS:
        if row.target not in targets:
            continue
        rows += generation_rows(results, row)
        result = generation_result(results, row)
        if result is not None:
            lines = weakest_classes(result) + frame_prediction(result)
            settings = sampling_settings(result)
            notes.append(f"- {row.label}: " + "; ".join(([f"sampling {settings}"] if settings else []) + lines))
    return [markdown_table(GENERATION_COLUMNS, rows), "", *notes]


def summary_lines(results: Path) -> list[str]:
    """A short table: per target, the best guidance scale's class consistency and weakest class, the references
    (class average; real items; their reconstructions), the judge-feature FD and the minutes."""
    judges = {}
    lines = ["| target | best guidance: class consistency (weakest class) | class average / real items / "
             "reconstructed | judge-feature FD (real vs real) | nearer a training item than fresh items: latent / "
             "judge (fresh: 5 %) | frame prediction PSNR: sampled / greedy / best of N / repeat last / reconstructed | "
             "minutes |",
             "|---|---|---|---|---|---|---|"]
    for row in GENERATION_ROWS:
        rec = generation_result(results, row)
        if rec is None:
            lines.append(f"| `make {row.target}` | not run | | | | | |")
            continue
        if rec.classifier:
            judges.setdefault(row.metric, (row.target, rec.classifier))
        best = max(rec.judged(), key=lambda m: m.class_consistency, default=None)
        refs = rec.references or {}
        cell = lambda name: f"{refs[name].share:.0%}" if name in refs else "-"  # noqa: E731
        fd = lambda d: f"{d.frechet:.1f}" if d else "-"  # noqa: E731
        share = (f"{best.class_consistency:.0%} at {best.guidance_scale:g} (weakest {best.weakest_share():.0%})"
                 if best else "unconditional")
        scored = rec.frame_prediction and rec.frame_prediction.metrics
        prediction = (" / ".join(f"{getattr(scored, k).psnr.mean:.2f}" for k in PREDICTION_READINGS) +
                      f" dB (N = {scored.best_of})" if scored else "")
        real = refs.get("real")
        lines.append(f"| `make {row.target}` | {share} | {cell('class_average')} / {cell('real')} / "
                     f"{cell('reconstruction')} | {fd(best and best.judge_features)} "
                     f"({fd(real and real.feature_distance)}) | {novelty_cell(best and best.novelty)} | "
                     f"{prediction} | {rec.wall_seconds.total / 60:.1f} |")
    what = {"fid": "photos", "fvd": "clips"}
    notes = [f"on held-out {what[m]} {c.classifier_accuracy:.0%} (chance {c.chance:.0%}, from `make {t}`)"
             for m, (t, c) in sorted(judges.items())]
    return lines + ([""] + [f"The judge's accuracy: {'; '.join(notes)}."] if notes else [])


@dataclass(frozen=True)
class SweepSetting(Record):
    guidance_scale: float
    top_k: int
    temperature: float
    per_class: int
    seed: int


@dataclass(frozen=True)
class SweepJudged(Record):
    share: float
    n: int
    per_class: list[ClassShare]


@dataclass(frozen=True)
class SweepJudge(Record):
    classifier_accuracy: float
    chance: float


@dataclass(frozen=True)
class SweepResult(Record):
    """One sampling setting's result file (bench.lm_sampling_sweep)."""
    model: str
    sampling: SweepSetting
    judge: SweepJudge
    class_consistency: SweepJudged
    novelty: SampleNovelty
    machine: str
    threads: int
    precision: str


def sweep_records(folder: Path) -> list[SweepResult]:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise SystemExit(f"{folder}: no result files")
    try:
        return [build(SweepResult, read_json_object(f, "sampling result"), str(f)) for f in files]
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}; run bench.lm_sampling_sweep again to write it") from None


def sweep_lines(records: list[SweepResult]) -> list[str]:
    """The sampling comparison's table: one row per result file (sweep_records)."""
    records = sorted(records, key=lambda r: (r.sampling.guidance_scale, r.sampling.top_k, r.sampling.temperature))
    lines = ["| guidance | top-k | temperature | class consistency | the classes | nearer a training item than fresh "
             "items: latent / judge (fresh: 5 %) |", "|---|---|---|---|---|---|"]
    for r in records:
        s, cc = r.sampling, r.class_consistency
        lines.append(f"| {s.guidance_scale} | {s.top_k or 'all'} | {s.temperature} | {cc.share:.0%} | "
                     f"{class_spread(cc.per_class)} | {novelty_cell(r.novelty)} |")
    first = records[0]
    lines += ["", f"{first.model}; {first.sampling.per_class} samples per class ({first.class_consistency.n} "
                  f"in all) per row, seed {first.sampling.seed}; judge accuracy on held-out real data "
                  f"{first.judge.classifier_accuracy:.0%}, chance {first.judge.chance:.0%}."]
    return lines


def result_records(results: Path, targets: list[str] | None) -> list[GeneratorResult]:
    """The results of these make targets (None: every generator target) whose files exist."""
    found = [generation_result(results, row) for row in GENERATION_ROWS if targets is None or row.target in targets]
    return [r for r in found if r is not None]


def measured(scale: str, records: list[GeneratorResult] | list[SweepResult]) -> Measured:
    return from_results(scale, (r.machine for r in records), (r.threads for r in records),
                        (r.precision for r in records))


def main(argv=None) -> bool:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--results", default="results", help="the results root (results/<scale>/...)")
    ap.add_argument("--page", required=True, help="the Markdown page holding the markers")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--target", nargs="+", help="make targets whose results to show")
    what.add_argument("--sampling-sweep", help="folder of one model's results under several sampling settings")
    what.add_argument("--summary", action="store_true", help="one line per generator target (the README's)")
    ap.add_argument("--force", action="store_true", help="replace a block measured at scale paper with another scale's")
    args = ap.parse_args(argv)
    results = Path(args.results) / args.scale
    if args.target and set(args.target) - {r.target for r in GENERATION_ROWS}:
        raise SystemExit(f"unknown target(s) {sorted(set(args.target) - {r.target for r in GENERATION_ROWS})}; "
                         f"known: {sorted(r.target for r in GENERATION_ROWS)}")
    try:
        if args.sampling_sweep:
            records = sweep_records(Path(args.sampling_sweep))
            begin, end, lines = SWEEP_BEGIN, SWEEP_END, sweep_lines(records)
        elif args.summary:
            records = result_records(results, None)
            begin, end, lines = SUMMARY_BEGIN, SUMMARY_END, summary_lines(results)
        else:
            records = result_records(results, args.target)
            begin, end, lines = BEGIN, END, page_lines(results, args.target)
    except ResultError as exc:
        raise SystemExit(f"error: {exc}") from None
    written = write_block(args.page, begin, end, lines, measured(args.scale, records), args.force)
    print(f"{args.page}: {'written' if written else 'no markers, left alone'}")
    return written


if __name__ == "__main__":
    main()
