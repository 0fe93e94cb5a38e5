"""Tables of tokenizer results, generated from result files (never typed):

    python -m eval.tokenizer_report --results results/small/tokenizer.json --readme README.md
    python -m eval.tokenizer_report --compare docs/results/patch_grid/*.json --stage image --readme docs/tokenizer.md

The first: what `make tokenizer` gives. Per stage: steps, minutes, held-out PSNR / SSIM / block-edge ratio on photos
and clips, codebook usage; beneath them the inputs' own block-edge ratio and the bicubic down-and-up baselines on the
same items. The second: controlled comparisons, one row per run's result file (same seed and steps, one setting
changed), with the settings that differ between them. Each table goes between its two markers in the file (BEGIN /
END, COMPARE_BEGIN / COMPARE_END below); a file without them is left alone.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared.doc_blocks import Measured, from_results, joined, write_block

BEGIN = "<!-- tokenizer results: written by `python -m eval.tokenizer_report` from the results file; do not edit -->"
END = "<!-- end of tokenizer results -->"
COMPARE_BEGIN = "<!-- tokenizer comparison: written by `python -m eval.tokenizer_report --compare`; do not edit -->"
COMPARE_END = "<!-- end of tokenizer comparison -->"
KINDS = ("image", "video")
BASELINES = {"4x": "bicubic 4x", "8x": "bicubic 8x", "same_numbers": "bicubic, as many numbers as the VAE's latents",
             "same_bits": "bicubic, as many bits as the VQVAE's codes"}


def _cell(m: dict | None) -> str:
    if not m:
        return "-"
    edge = f" / {m['block_edge']:.2f}" if "block_edge" in m else ""
    return f"{m['psnr']:.2f} / {m['ssim']:.3f}{edge}"


def table(report: dict) -> list[str]:
    stages = report["stages"]
    first = next(iter(stages.values()))
    machine = f" on {report['machine']}" if report.get("machine") else ""
    lines = [f"`{report['scale']}` scale, seed {report['seed']}, {report['wall_seconds'] / 60:.1f} min of training in all"
             f"{machine} (validation and set-up besides); {first.get('threads')} threads, {first.get('precision')} "
             f"({first.get('precision_reason')}). Held-out photos and clips; PSNR per frame, averaged. Block-edge ratio: "
             f"mean pixel step across the patch grid's lines / inside the patches (1: no grid).", "",
             "| stage | head | steps | minutes | photos PSNR / SSIM / block-edge | clips PSNR / SSIM / block-edge | "
             "codebook usage (photos, clips) |", "|---|---|---|---|---|---|---|"]
    baselines: dict[str, dict] = {}
    inputs: dict[str, float] = {}
    for name, s in stages.items():
        val = s.get("validation", {})
        usage = ", ".join(f"{val[k]['codebook_usage']:.0%}" for k in KINDS if "codebook_usage" in val.get(k, {}))
        lines.append(f"| {name} | {s['quantizer'].upper()} | {s['steps']} | {s['wall_seconds'] / 60:.1f} | "
                     f"{_cell(val.get('image'))} | {_cell(val.get('video'))} | {usage or '-'} |")
        for kind in KINDS:
            if kind in val:
                baselines.setdefault(kind, {}).update(val[kind].get("bicubic", {}))
                if "block_edge_input" in val[kind]:
                    inputs[kind] = val[kind]["block_edge_input"]
    if inputs:
        lines.append("| the inputs themselves | | | | " + " | ".join(
            f"- / - / {inputs[k]:.2f}" if k in inputs else "-" for k in KINDS) + " | |")
    for key, label in BASELINES.items():
        if any(key in baselines.get(k, {}) for k in KINDS):
            lines.append(f"| {label} | | | | " + " | ".join(_cell(baselines.get(k, {}).get(key)) for k in KINDS) + " | |")
    return lines


def _settings(summary: dict) -> dict:
    """A stage's settings as one flat dict: the model's, the loss's and the stage's own."""
    config = summary.get("config", {})
    flat = {f"model.{k}": v for k, v in config.get("model_config", {}).items()}
    flat.update({f"loss.{k}": v for k, v in summary.get("loss", {}).items()})
    flat.update({k: v for k, v in config.items() if not isinstance(v, dict)})
    return flat


def comparison(reports: dict[str, dict], stage: str) -> list[str]:
    """One row per run (name -> its results JSON) of `stage`: the settings in which the runs differ, minutes, held-out
    PSNR / SSIM / block-edge ratio on photos and clips."""
    summaries = {name: r["stages"][stage] for name, r in reports.items() if stage in r.get("stages", {})}
    if not summaries:
        raise ValueError(f"no result file has a stage {stage!r}")
    settings = {name: _settings(s) for name, s in summaries.items()}
    keys = sorted({k for flat in settings.values() for k in flat})
    differ = [k for k in keys if len({json.dumps(flat.get(k)) for flat in settings.values()}) > 1]
    first = next(iter(summaries.values()))
    lines = [f"Stage `{stage}`, {first['steps']} steps, seed {next(iter(reports.values()))['seed']}, "
             f"{first.get('threads')} threads, {first.get('precision')}; held-out photos and clips.", "",
             "| run | " + " | ".join(differ) + " | minutes | photos PSNR / SSIM / block-edge | clips PSNR / SSIM / block-edge |",
             "|---|" + "---|" * len(differ) + "---|---|---|"]
    for name, s in summaries.items():
        val = s.get("validation", {})
        lines.append(f"| {name} | " + " | ".join(str(settings[name].get(k, "-")) for k in differ)
                     + f" | {s['wall_seconds'] / 60:.2f} | {_cell(val.get('image'))} | {_cell(val.get('video'))} |")
    return lines


def measured(reports: list[dict]) -> Measured:
    """What tokenizer results were measured with: their scales, machines, and their stages' threads and precisions."""
    stages = [s for r in reports for s in r.get("stages", {}).values()]
    return from_results(joined(r.get("scale") for r in reports), (r.get("machine") for r in reports),
                        (s.get("threads") for s in stages), (s.get("precision") for s in stages))


def main(argv=None) -> bool:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--results", help="a tokenizer run's results JSON")
    what.add_argument("--compare", nargs="+", help="results JSONs of runs to compare (named by their file names)")
    ap.add_argument("--stage", default=None, help="with --compare: the stage compared")
    ap.add_argument("--readme", default="README.md", help="the Markdown file holding the table's markers")
    ap.add_argument("--force", action="store_true", help="replace a table measured at scale paper with another scale's")
    args = ap.parse_args(argv)
    if args.compare:
        if not args.stage:
            raise SystemExit("--compare needs --stage")
        reports = {Path(f).stem: json.loads(Path(f).read_text()) for f in args.compare}
        written = write_block(args.readme, COMPARE_BEGIN, COMPARE_END, comparison(reports, args.stage),
                              measured(list(reports.values())), args.force)
    else:
        report = json.loads(Path(args.results).read_text())
        written = write_block(args.readme, BEGIN, END, table(report), measured([report]), args.force)
    print(f"{args.readme}: {'table written' if written else 'no markers, left alone'}")
    return written


if __name__ == "__main__":
    main()
