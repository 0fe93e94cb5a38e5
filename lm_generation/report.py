"""One result file per LM experiment: the training summary, each guidance scale's sampling record and metrics,
and the class consistency, gathered from the files the steps wrote (eval/ is not imported: layers point one way).

    python -m lm_generation.report --run runs/small/lm_imagenet --metrics results/small/eval/lm_imagenet \
        --scale small --out results/small/lm_imagenet.json
"""
from __future__ import annotations

from pathlib import Path

from shared.generation_report import read_json, report_main, sample_metrics
from shared.provenance import stamp


def build_report(run: Path, metrics_dir: Path, scale: str) -> dict:
    summary = read_json(run / "summary.json")
    records = {folder.name: read_json(folder / "record.json") for folder in sorted((run / "samples").glob("cfg*"))}
    folders = {name: {"guidance_scale": r["sampling"]["cfg_scale"] if name != "cfgnone" else None,
                      "n_samples": r["n_samples"], "sampling_seconds": r["sample_seconds"]} for name, r in records.items()}
    # frame prediction is unconditional: no class consistency
    metrics, classifier, eval_seconds = sample_metrics(folders, metrics_dir, consistency_required=False)
    codes = read_json(Path(summary["codes"]) / "manifest.json")
    # frame prediction against the true frames of held-out clips (eval.frame_prediction), where it was scored
    prediction_file = metrics_dir / "frame_prediction.json"
    prediction = read_json(prediction_file) if prediction_file.is_file() else None
    if prediction is not None:
        eval_seconds += prediction.get("eval_seconds", 0.0)
    return {"metrics": metrics, "classifier": classifier, "frame_prediction": prediction, "experiment": run.name,
            "scale": scale,
            "data": {**{k: codes["settings"].get(k) for k in ("source", "split", "resolution", "frames")},
                     "items": codes.get("source_items"), "rows": codes.get("rows")},
            "checkpoint": str((run / "final").resolve()), "tokenizer": summary["tokenizer"],
            "tokenizer_sha256": summary["tokenizer_sha256"], "steps": summary["steps"],
            "parameters": summary["parameters"], "threads": summary["threads"], "precision": summary["precision"],
            "wall_seconds": {"extraction": codes.get("extract_seconds"), "training": summary["train_seconds"],
                             "sampling": sum(f["sampling_seconds"] for f in folders.values()),
                             "evaluation": eval_seconds},
            "sampling": records, "config": summary["config"], **stamp()}


def main(argv=None) -> dict:
    return report_main(build_report, __doc__, argv)


if __name__ == "__main__":
    main()
