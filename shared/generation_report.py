"""What a generator's result file holds about its samples, read from the files eval/ wrote about them (eval/ is
not imported: layers point one way). Both generators' report.py build on it, in the layout eval/tables.py reads:

    {"metrics": {"<folder>": {"guidance_scale", "n_samples", "sampling_seconds", <eval.sample_metrics' metrics>,
                              "class_consistency", "class_mean_probability"}, ...},
     "classifier": {"classifier_accuracy", "chance", "rises_with_guidance"} or None, ...}
"""
from __future__ import annotations

import json
from pathlib import Path



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
