"""Write the tokenizer speed table of docs/speed.md from bench.tokenizer_speed's report (`make bench` runs it on
docs/results/speed/tokenizer_speed.json, `make docs` again), so that the figures there are the last run's on the
machine that ran it, never typed in.

    python -m bench.readme_speed --bench docs/results/speed/tokenizer_speed.json [--readme docs/speed.md]

The table goes between the page's two markers (BEGIN / END below); a README without them is left alone.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared.doc_blocks import Measured, joined, write_block

BEGIN = "<!-- tokenizer speed: written by `python -m bench.readme_speed` from docs/results/speed/tokenizer_speed.json; do not edit -->"
END = "<!-- end of tokenizer speed -->"
NAMES = {"image_256": "image 256²", "clip_17x256": "clip 17 x 256²", "clip_129x256_chunked": "clip 129 x 256², max_tokens=8192",
         "clip_129x256_chunked_mmap1mb": "the same, glibc mmap threshold 1 MB",
         "image_256_compiled": "image 256², `compile_for_inference()`",
         "clip_17x256_compiled": "clip 17 x 256², `compile_for_inference()`"}


def _case(c: dict) -> str:
    rate = c["frames_per_s"] if c["frames"] > 1 else c["items_per_s"]
    unit = "frames/s" if c["frames"] > 1 else "images/s"
    text = (f"{rate:.2f} {unit}; {c['gflop_per_call']:.0f} GFLOP at {c['achieved_gflops']:.0f} GFLOP/s = "
            f"{100 * c['fraction_of_matmul_rate']:.0f} % of the {c['precision']} matmul rate; ")
    if c.get("compile_seconds") is not None:
        return text + (f"compiled in {c['compile_seconds']:.0f} s; peak RSS {c['peak_rss_gb']:.2f} GB, compilation "
                       f"and an eager copy of the model included")
    ceiling = c.get("gemm_fraction_of_matmul_rate")  # absent from runs before it was recorded
    bound = f" ({100 * ceiling:.0f} % of the rate: the most fusing the rest could give)" if ceiling else ""
    return text + (f"its GEMMs alone run at {c['gemm_gflops']:.0f} GFLOP/s{bound} and take "
                   f"{100 * c['gemm_share']:.0f} % of the call; peak RSS {c['peak_rss_gb']:.2f} GB "
                   f"({c['rss_before_input_gb']:.2f} GB of it torch + weights)")


def table(report: dict) -> list[str]:
    """Markdown: one row per case and layout, one column per precision; then the run's conditions."""
    precisions = report["precisions"]
    cases: dict[tuple[str, str], dict[str, dict]] = {}
    for c in report["cases"]:
        base = c["case"].removeprefix("release_")
        cases.setdefault((base, c["layout"]), {})[c["precision"]] = c
    lines = ["| case | layout | " + " | ".join(precisions) + " |", "|---|---|" + "---|" * len(precisions)]
    for (base, layout), by_precision in cases.items():
        lines.append(f"| {NAMES.get(base, base)} | {layout} | "
                     + " | ".join(_case(by_precision[p]) if p in by_precision else "-" for p in precisions) + " |")
    against = {"eager_fp32": "eager fp32", "eager": "eager {}"}  # the eager call in the case's own precision
    speedups = []
    for c in report["cases"]:
        base = c["case"].removeprefix("release_")
        for k, seconds in c.get("paired_seconds_per_call", {}).items():
            speedups.append(f"{NAMES.get(base, base)} ({c['layout']}), {c['precision']} against "
                            f"{against[k].format(c['precision'])}: {seconds / c['seconds_per_call']:.2f}x")
    rates = ", ".join(f"{p} {min(r):.0f}-{max(r):.0f} GFLOP/s" for p in precisions
                      if (r := [c["matmul_gflops"] for c in report["cases"] if c["precision"] == p]))
    lines += ["", f"Machine: {report['machine']}, {report['threads']} threads, {report['device']}"
              + (f" ({report['gpu']})" if report.get("gpu") else "") + f", torch {report['torch']}. "
              f"Each case's fraction is of the 2048² matmul rate of its precision measured in its own process in "
              f"every round and after the last (the best); over this run's cases: {rates}. Automatic precision here: "
              f"{report['automatic_precision']} ({report['automatic_precision_reason']})."
              + (f" Speed-ups, each timed in turns with the call it is compared with, in one process (across "
                 f"processes this CPU's drift decides): {'; '.join(speedups)}." if speedups else "")]
    return lines


def measured(report: dict) -> Measured:
    """Every case runs the `paper` width (bench.tokenizer_speed)."""
    return Measured("paper", f"{report['machine']} ({report['device']}, {report['threads']} threads)",
                    joined(report["precisions"]))


def write(readme: Path, report: dict, force: bool = False) -> bool:
    return write_block(readme, BEGIN, END, table(report), measured(report), force)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="bench/out/tokenizer_speed.json")
    ap.add_argument("--readme", default="docs/speed.md")
    ap.add_argument("--force", action="store_true", help="replace a table measured at scale paper with another scale's")
    args = ap.parse_args(argv)
    done = write(Path(args.readme), json.loads(Path(args.bench).read_text()), args.force)
    print(f"{args.readme}: speed table {'written' if done else 'not written (no markers)'}")


if __name__ == "__main__":
    main()
