"""Build TABLES.md (and tables.json, tables.csv): the paper's Tables 1-10 with our figures beneath each.

    python -m eval.tables --scale small          # reads results/small/; `make tables` first makes what is missing

Our rows are listed in eval/experiments.py; they come from the result files that `make tables` makes
(results/<scale>/eval/<run>/<stage>.json, results/<scale>/<run>.json). Each says its data, scale, resolution and feature network; numbers from a
random-init feature network say so; a row with no result says "not run".
"""
from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Collection
from pathlib import Path

from shared.atomic import atomic_write, atomic_write_json, read_json_object
from shared.doc_blocks import Measured, read_measured, write_block

from shared.paths import run_of_model_dir, seeded

from . import ablations, protocol_match, tokenizer_report
from .experiments import GENERATION_ROWS, ROWS, GenerationRow, TokenizerRow, runs_in_config
from .generator_result import (ClassShare, Frechet, GeneratorResult, JudgeDistance, ResultError, SampleNovelty,
                               read_result)
from .paper_tables import PAPER_TABLES
from .seeds import NOISE_RULE, Seeds, feature_metric, seed_files

PROTOCOL_COLUMN = "Protocol (eval/protocols.py): the paper's figure where ours was computed under the same one"
OUR_COLUMNS = ["Row", "Metric (network)", "Value", "PSNR (bicubic keeping as many numbers)", "SSIM (bicubic)",
               "Block-edge ratio on the patch grid (input; bicubic 8x)", "Data", "Scale",
               "Minutes (training of this model and of the stages it starts from, + its evaluation; threads per job)",
               PROTOCOL_COLUMN]


def _training_seconds(results: Path, run: str, stage: str) -> float | None:
    """Training time behind a stage's model: the stage, and the stages it starts from (init_from), following
    them into other runs (runs/<scale>/<run>/<stage>/final); None when a run's result file is missing."""
    run_file = results / f"{run}.json"
    if not run_file.is_file():
        return None
    summary = json.loads(run_file.read_text()).get("stages", {}).get(stage)
    if summary is None:
        return None
    seconds = summary.get("wall_seconds", 0.0)
    source = (summary.get("config") or {}).get("init_from")
    if source:
        earlier_run, earlier_stage = (run, source) if len(Path(source).parts) == 1 else run_of_model_dir(source) or (None, None)
        earlier = _training_seconds(results, earlier_run, earlier_stage) if earlier_run else None
        if earlier is None:
            return None
        seconds += earlier
    return seconds


def _our_row(results: Path, runs: set[str], row: TokenizerRow, seeds: Collection[int] | None) -> list[str]:
    """A row over its seeds: mean ± std where there are several (eval/seeds.py)."""
    label, run, stage, kind, metric = row.label, row.run, row.stage, row.split, row.metric
    files = seed_files(results, row, seeds)
    if not files:
        variant = run.removeprefix("tokenizer_")
        why = "" if run in runs else f" (the {results.name} config has no variant '{variant}')"
        return [label, metric, f"not run{why}", "", "", "", "", results.name, "", ""]
    recs = [json.loads(f.read_text()) for _, f in files]
    ms = [r["metrics"][kind] for r in recs if kind in r["metrics"]]  # as eval.seeds.row_metrics, files read once
    if not ms:
        return [label, metric, f"not run ({kind} split not evaluated)", "", "", "", "", recs[0].get("scale") or "", "", ""]
    m = ms[0]
    network = m[metric]["network"]
    label_net = "RANDOM-INIT network, not comparable to the paper" if "RANDOM-INIT" in network else network
    values, why = feature_metric(ms, metric)
    minutes = ""
    training = [_training_seconds(results, seeded(run, k), stage) for k, _ in files]
    if None not in training:
        threads = recs[0].get("threads")
        per_seed = Seeds([t + rec.get("eval_seconds", 0.0) for t, rec in zip(training, recs)])
        minutes = f"{per_seed.mean / 60:.1f}" + (f" ({threads} thr.)" if threads else "") + (
            " a seed" if per_seed.n > 1 else "")
    rec = recs[0]
    data = rec.get("data", {}).get("images" if kind == "image" else "videos", "")
    data = f"{data} {kind}s, val, n={m['items']}, {rec.get('resolution')}px" + (f", {rec.get('frames')} frames" if kind == "video" else "")
    return [label, f"{metric} ({label_net}; n={m[metric]['n'][0]}, d={m[metric]['dim']})",
            why or values.text(".2f"), _with_baseline(ms, "psnr", ".2f"), _with_baseline(ms, "ssim", ".3f"), _block_edge(ms), data,
            rec.get("scale") or results.name, minutes, protocol_match.cell(row.table, label, metric, m[metric])]


def _with_baseline(ms: list[dict], key: str, fmt: str) -> str:
    """A reconstruction figure over seeds, with bicubic interpolation keeping as many numbers beside it."""
    same = (ms[0].get("bicubic") or {}).get("same_numbers")
    return Seeds([float(m[key]) for m in ms]).text(fmt) + (f" (bicubic {same[key]:{fmt}})" if same else "")


def _block_edge(ms: list[dict]) -> str:
    """The reconstructions' block-edge ratio over seeds, with the input's and bicubic 8x's beside it; empty for results
    evaluated before the ratio was measured."""
    if any("block_edge" not in m for m in ms):
        return ""
    eight = (ms[0].get("bicubic") or {}).get("8x") or {}
    return (Seeds([float(m["block_edge"]) for m in ms]).text(".2f") + f" ({ms[0]['block_edge_input']:.2f}"
            + (f"; {eight['block_edge']:.2f}" if "block_edge" in eight else "") + ")")


GENERATION_COLUMNS = ["Row", "Guidance", "Metric (network)", "Value", "IS", "Precision / recall",
                      "Class consistency (weakest class; classifier accuracy on real data; chance)",
                      "Judge features: FD / precision / recall",
                      "Nearer a training item than fresh real items: latent / judge features (fresh items: 5 %)",
                      "Data", "Scale",
                      "Minutes (extraction + training + sampling + evaluation; threads)", PROTOCOL_COLUMN]
# the reference points beside a generator's rows (eval.judge_references), in this order
REFERENCE_LABELS = {"flat_colour": "flat mean colour", "class_average": "class average", "still": "still clip",
                    "real": "real items (copying ceiling)", "reconstruction": "real items through the tokenizer"}


def _judge_cells(share: float | None, per_class: list[ClassShare] | None, features: JudgeDistance | None,
                 acc: str) -> list[str]:
    """The class-consistency and judge-feature cells of a generator's or a reference point's row."""
    weakest = f" (weakest {min(c.share for c in per_class):.0%})" if per_class else ""
    fd = f"{features.frechet:.2f} / {features.precision:.2f} / {features.recall:.2f}" if features else ""
    return ["" if share is None else f"{share:.0%}{weakest}{acc}", fd]


def novelty_cell(novelty: SampleNovelty | None) -> str:
    """The share of samples nearer a training item than fresh real items are (eval.novelty), in both spaces, and for
    VQ codes the near copies."""
    if novelty is None:
        return ""
    return (f"{novelty.latent.nearer_than_fresh:.0%} / {novelty.judge.nearer_than_fresh:.0%}"
            + (f"; {novelty.codes.near_copies:.0%} with 90 % of codes from one training row" if novelty.codes else ""))


def generation_result(results: Path, row: GenerationRow) -> GeneratorResult | None:
    """The result file of a generator's row (eval.generator_result), None where it is missing; an error where it
    holds another kind of generator's figures."""
    f = row.result(results.name, results.parent)
    if not f.is_file():
        return None
    result = read_result(f)
    if result.metric != row.metric:
        raise ResultError(f"{f}: the result of a {result.task} generator ({result.metric.upper()}), not of {row.label}'s "
                          f"{row.data} ({row.metric.upper()})")
    return result


def generation_rows(results: Path, row: GenerationRow) -> list[list[str]]:
    """One line per guidance scale of a generator's result file, then one per reference point the judge scored
    beside it; "not run" when the file is missing."""
    rec = generation_result(results, row)
    if rec is None:
        return [[row.label, "", row.metric.upper(), f"not run (make {row.target} SCALE={results.name})", "", "", "", "",
                 "", "", results.name, "", ""]]
    acc = (f"; classifier {rec.classifier.classifier_accuracy:.0%}, chance {rec.classifier.chance:.0%}"
           if rec.classifier else "")
    total = rec.wall_seconds.total
    minutes = f"{total / 60:.1f}" + (f" ({rec.threads} thr.)" if rec.threads else "") if total else ""
    data_text = ", ".join(f"{k} {getattr(rec.data, k)}" for k in ("source", "split", "items", "resolution", "frames"))
    out = []
    for entry in rec.by_guidance():
        metric: Frechet = getattr(entry, row.metric)
        network = ("RANDOM-INIT network, not comparable to the paper" if "RANDOM-INIT" in entry.network
                   else entry.network)
        out.append([row.label, f"{entry.guidance_scale}",
                    f"{row.metric.upper()} ({network}; n={'/'.join(str(n) for n in metric.n)}, d={metric.dim}"
                    + ("; rank-deficient covariance: a rough figure" if not metric.full_rank_covariance else "") + ")",
                    f"{metric.value:.2f}", "" if entry.inception_score is None else f"{entry.inception_score.mean:.2f}",
                    "" if entry.precision is None else f"{entry.precision:.2f} / {entry.recall:.2f}",
                    *_judge_cells(entry.class_consistency, entry.class_consistency_per_class, entry.judge_features,
                                  acc),
                    novelty_cell(entry.novelty), data_text, rec.scale, minutes,
                    protocol_match.cell(row.table, row.name, row.metric, {"protocol": entry.protocol},
                                        entry.guidance_scale)])
    for name, label in REFERENCE_LABELS.items():
        point = (rec.references or {}).get(name)
        if point:
            out.append([f"{row.label}: reference, {label}", "", "", "", "", "",
                        *_judge_cells(point.share, point.per_class, point.feature_distance, ""),
                        "", f"{point.n} items", rec.scale, "", ""])
    return out


def build(scale: str, results_root: str | Path = "results", out_dir: str | Path = ".",
          seeds: Collection[int] | None = None, generators_only: bool = False, force: bool = False) -> dict:
    """TABLES.md, tables.json, tables.csv (and the findings block of docs/evaluation.md) from the results of `seeds`
    (None: every seed evaluated). generators_only: the generator tables from the results, the tokenizer tables and
    the ablation comparison (and the findings' record of the runs behind them) kept as <out_dir>/tables.json and the
    page have them (after a generator run, without the tokenizer runs on this machine; `make docs`)."""
    results = Path(results_root) / scale
    runs = runs_in_config(scale)
    kept = None
    if generators_only:
        kept = read_json_object(Path(out_dir) / "tables.json", "tables file")
        if kept.get("scale") != scale:
            raise SystemExit(f"{Path(out_dir) / 'tables.json'}: tables of scale {kept.get('scale')!r}, not {scale!r}")
    tables = {}
    for number, paper in PAPER_TABLES.items():
        generation = [r for r in GENERATION_ROWS if r.table == number]
        if generation:
            ours = [line for r in generation for line in generation_rows(results, r)]
        elif kept is not None:
            ours = kept["tables"][str(number)]["ours"]
        else:
            ours = [_our_row(results, runs, row, seeds) for row in ROWS if row.table == number]
        tables[number] = {**paper, "ours_columns": GENERATION_COLUMNS if generation else OUR_COLUMNS, "ours": ours}
    out_dir = Path(out_dir)
    lines = [f"# The paper's tables, with ours (scale `{scale}`)", "",
             "Paper rows are as published (ImageNet / UCF-101 / K600 ... at 256 px, real Inception-v3 and I3D). "
             "Ours are labelled with the data, scale and feature network they came from; numbers from random-init "
             "feature networks (no weights offline) rank models trained and evaluated alike, and are not comparable "
             "to the paper's. The protocol column sets the paper's figure beside ours only where both were computed "
             "under the same evaluation protocol (docs/protocols.md); elsewhere it names each field that differs.", ""]
    for number, t in tables.items():
        lines += [f"## Table {number}: {t['title']}", "", markdown_table(t["columns"], t["rows"]), ""]
        if t["ours"]:
            lines += [f"Ours at scale `{scale}`:", "", markdown_table(t["ours_columns"], t["ours"]), ""]
    directions = kept["ablations"] if kept is not None else ablations.compare(results, seeds)
    lines += ["## Do our ablations point the same way as the paper's?", "",
              "Each row pits two settings of Tables 7-10: the paper's rFID/rFVD, and ours over seeds on the same "
              "metric (where its covariance is full rank) and on PSNR and SSIM of the same split (no feature network "
              "needed). " + NOISE_RULE, "", markdown_table(ablations.COLUMNS, [d["cells"] for d in directions]), ""]
    findings_page = Path(out_dir) / "docs" / "evaluation.md"
    if findings_page.is_file():  # first: where it refuses (paper's findings against another scale) nothing is written
        write_findings(findings_page, scale, directions, results, force, keep_record=generators_only)
    atomic_write(out_dir / "TABLES.md", lambda tmp: Path(tmp).write_text("\n".join(lines)))
    atomic_write_json(out_dir / "tables.json", {"scale": scale, "tables": tables, "ablations": directions})

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["table", "source", "columns", "cells"])  # each table's columns, then its rows, " | "-joined
            for number, t in tables.items():
                w.writerow([number, "paper", " | ".join(t["columns"]), ""])
                for row in t["rows"]:
                    w.writerow([number, "paper", "", " | ".join(row)])
                w.writerow([number, f"ours ({scale})", " | ".join(t["ours_columns"]), ""])
                for row in t["ours"]:
                    w.writerow([number, f"ours ({scale})", "", " | ".join(row)])

    atomic_write(out_dir / "tables.csv", write_csv)
    return tables


README_BEGIN = "<!-- ablation findings: written by `python -m eval.tables` from the results; do not edit -->"
README_END = "<!-- end of ablation findings -->"


def write_findings(readme: Path, scale: str, directions: list[dict], results: Path, force: bool = False,
                   keep_record: bool = False) -> None:
    """Replace a page's block of ablation findings (between its two markers, where present) with the verdicts of
    these results, in words, recording the machines and precisions of the tokenizer runs in `results` (keep_record:
    the verdicts are tables.json's, and the block keeps its record of the runs behind them); a page without the
    markers is left alone, and a block measured at scale paper is replaced by another scale's only with `force`."""
    measured = read_measured(readme, README_BEGIN, README_END) if keep_record else None
    if measured is None:
        runs = tokenizer_report.measured([read_json_object(f, "tokenizer result")
                                          for f in sorted(results.glob("tokenizer*.json"))])
        measured = Measured(scale, runs.machine, runs.precision)
    write_block(readme, README_BEGIN, README_END, [
        f"At scale `{scale}`, on held-out PSNR, by the rule under TABLES.md's comparison ({NOISE_RULE})", "",
        *ablations.findings(directions)], measured, force)


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers such as 0,1,2, got {text!r}")
    if any(k < 0 for k in seeds):
        raise argparse.ArgumentTypeError(f"seeds must not be negative, got {text!r}")
    return seeds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", default=".")
    ap.add_argument("--seeds", type=_seed_list, default=None,
                    help="the seeds whose results the tables use, e.g. 0,1,2 (make tables passes 0..SEEDS-1); "
                         "default: every seed evaluated")
    ap.add_argument("--generators-only", action="store_true",
                    help="rebuild the generator tables from the results; keep the rest as <out>/tables.json has it")
    ap.add_argument("--force", action="store_true",
                    help="replace docs/evaluation.md's findings measured at scale paper with another scale's")
    args = ap.parse_args(argv)
    try:
        build(args.scale, args.results, args.out, args.seeds, args.generators_only, args.force)
    except (ResultError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {Path(args.out) / 'TABLES.md'}, tables.json, tables.csv")


if __name__ == "__main__":
    main()
