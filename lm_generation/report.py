"""One result file per LM experiment: the training summary, each guidance scale's sampling record and metrics,
and the class consistency, gathered from the files the steps wrote (eval/ is not imported: layers point one way).

    python -m lm_generation.report --run runs/small/lm_imagenet --metrics results/small/eval/lm_imagenet \
        --scale small --out results/small/lm_imagenet.json
"""
from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from shared.atomic import atomic_write_json
from shared.provenance import git_commit


def read(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run the step that writes it first (see the Makefile's LM_RUN)")
    return json.loads(path.read_text())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="training run folder (summary.json, samples/cfg*/record.json)")
    ap.add_argument("--metrics", required=True, help="folder of eval results (samples_cfg*.json, class_consistency.json)")
    ap.add_argument("--scale", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    run, metrics_dir = Path(args.run), Path(args.metrics)
    summary = read(run / "summary.json")
    consistency_file = metrics_dir / "class_consistency.json"
    consistency = json.loads(consistency_file.read_text()) if consistency_file.is_file() else None
    shares = {row["guidance"]: row for row in (consistency or {}).get("metrics", {}).get("class_consistency", [])}
    # the same layout as diffusion_generation/report.py: metrics per guidance folder, as eval/tables.py reads them
    metrics, sampling_seconds, eval_seconds, records = {}, 0.0, (consistency or {}).get("eval_seconds", 0.0), {}
    for folder in sorted((run / "samples").glob("cfg*")):
        record, fidelity = read(folder / "record.json"), read(metrics_dir / f"samples_{folder.name}.json")
        scale = record["sampling"]["cfg_scale"] if folder.name != "cfgnone" else None
        share = shares.get(scale, {})
        metrics[folder.name] = {"guidance_scale": scale, "n_samples": record["n_samples"],
                                "sampling_seconds": record["sample_seconds"], **fidelity["metrics"],
                                "class_consistency": share.get("share"),
                                "class_mean_probability": share.get("mean_probability")}
        sampling_seconds += record["sample_seconds"]
        eval_seconds += fidelity.get("eval_seconds", 0.0)
        records[folder.name] = record
    codes = read(Path(summary["codes"]) / "manifest.json")
    classifier = {k: consistency["metrics"][k] for k in ("classifier_accuracy", "chance", "rises_with_guidance")} \
        if consistency else None
    report = {"metrics": metrics, "classifier": classifier, "experiment": run.name, "scale": args.scale,
              "data": {**{k: codes["settings"].get(k) for k in ("source", "split", "resolution", "frames")},
                       "items": codes.get("source_items"), "rows": codes.get("rows")},
              "checkpoint": str((run / "final").resolve()), "tokenizer": summary["tokenizer"],
              "tokenizer_sha256": summary["tokenizer_sha256"], "steps": summary["steps"],
              "parameters": summary["parameters"], "threads": summary["threads"], "precision": summary["precision"],
              "wall_seconds": {"extraction": codes.get("extract_seconds"), "training": summary["train_seconds"],
                               "sampling": sampling_seconds, "evaluation": eval_seconds},
              "sampling": records, "config": summary["config"], "git_commit": git_commit(),
              "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(args.out, report)
    print(f"{args.out}: {len(metrics)} guidance scale(s)")
    return report


if __name__ == "__main__":
    main()
