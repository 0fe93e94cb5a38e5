"""What compute buys a generator: class consistency (the judge's share of samples of the class asked for) against
training minutes, the same model and data trained for several step budgets, each sampled and judged alike. Writes
the JSON and a plot.

    python -m bench.compute_curve --generator lm --data runs/small/codes/embedded_images --steps 250 500 1000 2000 \
        --guidance 1.5 --json docs/results/lm_compute_curve.json --plot docs/img/lm_compute_curve.png
    python -m bench.compute_curve --generator dit --data runs/small/dit_imagenet/latents --steps 750 1500 3000 6000 \
        --guidance 4 --json docs/results/dit_compute_curve.json --plot docs/img/dit_compute_curve.png
    python -m bench.compute_curve --generator latte --data runs/small/latte_ucf/latents --steps 900 1800 3600 7200 \
        --guidance 4 --json docs/results/latte_compute_curve.json --plot docs/img/latte_compute_curve.png

Each budget trains in <runs>/steps_<N> (a finished one is reused), samples with the scale's sampling settings at
one guidance scale (shared.sample_folders), and is judged by eval.class_consistency (its classifier trained once
and cached). --data is a codes folder (lm) or a latents folder (dit, latte); whether it holds images or clips (and so
the LM's task and the judge's kind) is read from its manifest.
"""
from __future__ import annotations

import argparse
import json
from importlib import import_module
from pathlib import Path

from eval import class_consistency
from shared.atomic import atomic_write_json
from shared.data.embedded import MOTIONS
from shared.extraction import read_manifest
from shared.guidance import guidance_key, keyed
from shared.provenance import machine_name, stamp

GENERATORS = ("lm", "dit", "latte")


def data_kind(data: str) -> str:
    """'image' or 'video': what the codes / latents folder holds (its manifest's frames per item)."""
    return "video" if read_manifest(data)["settings"]["frames"] > 1 else "image"


def train_run(generator: str, data: str, scale: str, steps: int, run: Path) -> dict:
    """Train one budget; its summary. A finished run in `run` is reused by the trainer once its record (this
    budget, these data) and its final/ are checked; a run of anything else is refused, never taken for this budget."""
    overrides = [f"train.steps={steps}", f"train.validate_every={steps}"]
    if generator == "lm":
        from lm_generation.config import lm_config
        from lm_generation.train import train

        task = data_kind(data)
        return train(lm_config(scale, overrides, task), data, run, task)
    from diffusion_generation.config import experiment_config
    from diffusion_generation.train import train

    return train(experiment_config(scale, generator, overrides), data, run)


def budget(generator: str, data: str, scale: str, steps: int, runs: Path, guidance: float) -> dict:
    """Train, sample and judge one step budget; its record."""
    run = runs / f"steps_{steps}"
    kind = data_kind(data)
    summary = train_run(generator, data, scale, steps, run)
    sampler = import_module("lm_generation.sample" if generator == "lm" else "diffusion_generation.sample")
    record = sampler.main(["--pipeline", str(run / "final"), "--out", str(run / "samples"), "--scale", scale,
                           "--guidance", str(guidance)])
    judged = run / f"class_consistency_{guidance_key(guidance)}.json"
    class_consistency.main(["--kind", kind, "--scale", scale, "--record", str(run / "samples"),
                            "--references", "0", "--out", str(judged)])
    metrics = json.loads(judged.read_text())["metrics"]
    row = keyed(metrics["class_consistency"], str(judged))[guidance_key(guidance)]
    return {"steps": steps, "train_seconds": summary["train_seconds"], "precision": summary.get("precision"),
            "threads": summary.get("threads"), "share": row["share"], "n": row["n"],
            "lowest_class_share": min(c["share"] for c in row["per_class"]),
            "classes_at_half": sum(c["share"] >= 0.5 for c in row["per_class"]), "classes": len(row["per_class"]),
            "judge_accuracy": metrics["classifier_accuracy"], "chance": metrics["chance"], "guidance": guidance,
            "kind": kind, "per_class_shares": {c["name"]: c["share"] for c in row["per_class"]},
            "sampling": record["sampling"], "per_class": record["per_class"]}


def plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["budgets"]
    minutes = [r["train_seconds"] / 60 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(minutes, [r["share"] for r in rows], "o-", label="class consistency (all samples)")
    ax.plot(minutes, [r["lowest_class_share"] for r in rows], "s--", label="its weakest class")
    motions = [m for m in MOTIONS if m in rows[0].get("per_class_shares", {})]
    if motions:  # the embedded clips: how much of the camera motion is learnt, beside the real videos' content
        ax.plot(minutes, [sum(r["per_class_shares"][m] for m in motions) / len(motions) for r in rows], "^-.",
                label=f"mean of the {len(motions)} camera-motion classes")
    for r, m in zip(rows, minutes):
        ax.annotate(f"{r['steps']} steps", (m, r["share"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(rows[0]["chance"], color="grey", lw=0.8, ls=":", label="chance")
    items = "clips" if rows[0].get("kind") == "video" else "photos"
    ax.axhline(rows[0]["judge_accuracy"], color="green", lw=0.8, ls=":", label=f"the judge on held-out real {items}")
    ax.set_xlabel(f"{report['generator'].upper()} training minutes ({rows[0]['threads']} threads, "
                  f"{rows[0]['precision']}; {report['machine']})", fontsize=7)
    ax.set_ylabel("share of samples judged of their class")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{report['generator']} on {'clips' if items == 'clips' else 'images'} at `{report['scale']}`: guidance {report['guidance']}, "
                 f"{rows[0]['n']} samples a point", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", choices=GENERATORS)
    ap.add_argument("--data", help="codes (lm: lm_generation.extract_codes) or latents (dit, latte: "
                                   "diffusion_generation.extract_latents)")
    ap.add_argument("--scale", default="small")
    ap.add_argument("--steps", type=int, nargs="+", help="training step budgets")
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--runs", default=None,
                    help="where each budget's run goes (default: runs/<scale>/compute_curve_<generator>)")
    ap.add_argument("--json", required=True)
    ap.add_argument("--plot", required=True)
    ap.add_argument("--plot-only", action="store_true", help="draw the plot of an existing --json again; run nothing")
    args = ap.parse_args(argv)
    if args.plot_only:
        report = json.loads(Path(args.json).read_text())
        print(plot(report, Path(args.plot)))
        return report
    missing = [f"--{k}" for k in ("generator", "data", "steps", "guidance") if getattr(args, k) is None]
    if missing:
        ap.error(f"{', '.join(missing)} required (all but --plot-only runs train, sample and judge)")
    if any(s < 1 for s in args.steps):
        raise SystemExit(f"--steps must all be >= 1, got {args.steps}")
    runs = Path(args.runs or f"runs/{args.scale}/compute_curve_{args.generator}")
    report = {"generator": args.generator, "scale": args.scale, "guidance": args.guidance, "data": args.data,
              "machine": machine_name(),
              "budgets": [budget(args.generator, args.data, args.scale, s, runs, args.guidance)
                          for s in sorted(args.steps)],
              **stamp()}
    atomic_write_json(args.json, report)
    print(plot(report, Path(args.plot)))
    for r in report["budgets"]:
        print(f"{r['steps']} steps, {r['train_seconds'] / 60:.1f} min: {r['share']:.0%} "
              f"(weakest class {r['lowest_class_share']:.0%})")
    return report


if __name__ == "__main__":
    main()
