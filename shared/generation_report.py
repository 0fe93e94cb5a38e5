"""What a generator's result file holds about its samples, read from the files eval/ wrote about them (eval/ is
not imported: layers point one way). Both generators' report.py build on it, in the layout eval/tables.py reads:

    {"metrics": {"<folder>": {"guidance_scale", "n_samples", "sampling_seconds", <eval.sample_metrics' metrics>,
                              "class_consistency", "class_mean_probability"}, ...},
     "classifier": {"classifier_accuracy", "chance", "rises_with_guidance"} or None, ...}
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from shared.atomic import atomic_write_json


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the step that writes it first (see the Makefile)")
    return json.loads(path.read_text())


def sample_metrics(folders: dict[str, dict], metrics_dir: str | Path, consistency_required: bool = True
                   ) -> tuple[dict, dict | None, float]:
    """folders: sample folder name ("cfg4") -> {"guidance_scale", "n_samples", "sampling_seconds"}. Reads
    <metrics_dir>/samples_<name>.json for each and <metrics_dir>/class_consistency.json (optional unless required).
    Returns (metrics per folder, the classifier's figures, seconds spent evaluating)."""
    metrics_dir = Path(metrics_dir)
    consistency_file = metrics_dir / "class_consistency.json"
    consistency = read_json(consistency_file) if consistency_required or consistency_file.is_file() else None
    shares = {row["guidance"]: row for row in (consistency or {}).get("metrics", {}).get("class_consistency", [])}
    metrics, seconds = {}, (consistency or {}).get("eval_seconds", 0.0)
    for name, folder in folders.items():
        fidelity = read_json(metrics_dir / f"samples_{name}.json")
        seconds += fidelity.get("eval_seconds", 0.0)
        share = shares.get(folder["guidance_scale"], {})
        metrics[name] = {**folder, **fidelity["metrics"], "class_consistency": share.get("share"),
                         "class_mean_probability": share.get("mean_probability")}
    classifier = ({k: consistency["metrics"][k] for k in ("classifier_accuracy", "chance", "rises_with_guidance")}
                  if consistency else None)
    return metrics, classifier, seconds


def report_main(build: Callable[[Path, Path, str], dict], doc: str, argv=None) -> dict:
    """The command line of both generators' report.py (the Makefile calls them alike): build(run folder, folder of
    eval/ results, scale) -> the result file's content, written atomically to --out."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the training run folder (summary.json, samples/)")
    ap.add_argument("--metrics", required=True, help="folder of eval results (samples_cfg*.json, class_consistency.json)")
    ap.add_argument("--scale", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    report = build(Path(args.run), Path(args.metrics), args.scale)
    atomic_write_json(args.out, report)
    print(json.dumps({"out": args.out, "wall_seconds": report["wall_seconds"], "metrics": report["metrics"]}, indent=1))
    return report
