"""What compute buys the LM: class consistency (the judge's share of samples of the class asked for) against training
minutes, the same model and data trained for several step budgets, each sampled and judged alike. Writes the JSON
and a plot.

    python -m bench.lm_compute_curve --codes runs/small/codes/embedded_images --steps 250 500 1000 2000 \
        --json docs/results/lm_compute_curve.json --plot docs/img/lm_compute_curve.png

Each budget trains in <runs>/steps_<N> (a finished one is reused), samples with the scale's sampling settings at
one guidance scale, and is judged by eval.class_consistency (its classifier trained once and cached).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from eval import class_consistency
from lm_generation import sample as lm_sample
from lm_generation.config import lm_config
from lm_generation.train import train
from shared.atomic import atomic_write_json
from shared.provenance import machine_name, stamp


def budget(codes: str, scale: str, steps: int, runs: Path, guidance: float) -> dict:
    """Train, sample and judge one step budget; its record."""
    run = runs / f"steps_{steps}"
    summary = train(lm_config(scale, [f"train.steps={steps}", f"train.validate_every={steps}"]), codes, run, "image")
    out = run / f"samples_cfg{guidance:g}"
    record = lm_sample.main(["--model", str(run / "final"), "--out", str(out), "--scale", scale,
                             "--set", f"sample.cfg_scale={guidance}"])
    judged = run / f"class_consistency_cfg{guidance:g}.json"
    class_consistency.main(["--kind", "image", "--scale", scale, "--samples", str(out / "samples"),
                            "--guidance", str(guidance), "--out", str(judged)])
    metrics = json.loads(judged.read_text())["metrics"]
    row = metrics["class_consistency"][0]
    return {"steps": steps, "train_seconds": summary["train_seconds"], "precision": summary.get("precision"),
            "threads": summary.get("threads"), "share": row["share"], "n": row["n"],
            "lowest_class_share": min(c["share"] for c in row["per_class"]),
            "classes_at_half": sum(c["share"] >= 0.5 for c in row["per_class"]), "classes": len(row["per_class"]),
            "judge_accuracy": metrics["classifier_accuracy"], "chance": metrics["chance"], "sampling": record["sampling"]}


def plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["budgets"]
    minutes = [r["train_seconds"] / 60 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(minutes, [r["share"] for r in rows], "o-", label="class consistency (all samples)")
    ax.plot(minutes, [r["lowest_class_share"] for r in rows], "s--", label="its weakest class")
    for r, m in zip(rows, minutes):
        ax.annotate(f"{r['steps']} steps", (m, r["share"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(rows[0]["chance"], color="grey", lw=0.8, ls=":", label="chance")
    ax.axhline(rows[0]["judge_accuracy"], color="green", lw=0.8, ls=":", label="the judge on held-out real photos")
    ax.set_xlabel(f"LM training minutes ({rows[0]['threads']} threads, {rows[0]['precision']}; {report['machine']})",
                  fontsize=7)
    ax.set_ylabel("share of samples judged of their class")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"lm-imagenet at `{report['scale']}`: guidance {report['guidance']}, {rows[0]['n']} samples a point",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codes", required=True, help="an image codes folder (lm_generation.extract_codes)")
    ap.add_argument("--scale", default="small")
    ap.add_argument("--steps", type=int, nargs="+", required=True, help="training step budgets")
    ap.add_argument("--guidance", type=float, default=1.5)
    ap.add_argument("--runs", default="runs/small/lm_compute_curve", help="where each budget's run goes")
    ap.add_argument("--json", required=True)
    ap.add_argument("--plot", required=True)
    args = ap.parse_args(argv)
    if any(s < 1 for s in args.steps):
        raise SystemExit(f"--steps must all be >= 1, got {args.steps}")
    report = {"scale": args.scale, "guidance": args.guidance, "codes": args.codes, "machine": machine_name(),
              "budgets": [budget(args.codes, args.scale, s, Path(args.runs), args.guidance) for s in sorted(args.steps)],
              **stamp()}
    atomic_write_json(args.json, report)
    print(plot(report, Path(args.plot)))
    for r in report["budgets"]:
        print(f"{r['steps']} steps, {r['train_seconds'] / 60:.1f} min: {r['share']:.0%} (weakest class {r['lowest_class_share']:.0%})")
    return report


if __name__ == "__main__":
    main()
