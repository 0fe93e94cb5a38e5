"""One result file per generator run, whatever the generator: the training summary, each guidance scale's samples and
their metrics, the class consistency with its reference points, and frame prediction where scored.

    python -m eval.generation_report --run runs/small/lm_imagenet --metrics results/small/eval/lm_imagenet \
        --scale small --out results/small/lm_imagenet.json

Reads what every generator writes alike: `<run>/summary.json` (its trainer: generator, task, steps, train_seconds,
data = the codes or latents folder, tokenizer and sha256, parameters, threads, precision), `<run>/samples/samples.json`
(shared.sample_folders) and the extraction's `<data>/manifest.json`; and what eval/ wrote about the samples:
`<metrics>/samples_cfg<s>.json` (eval.sample_metrics, one per guidance scale s), `<metrics>/class_consistency.json`
(eval.class_consistency; absent for an unconditional model), `<metrics>/novelty.json` (eval.novelty: each sample's
nearest training item beside fresh real items'; with the class consistency) and `<metrics>/frame_prediction.json`
(eval.frame_prediction, frame prediction only). Every figure must be of this run's samples: each metrics file names
the samples it scored by sha256 (eval.sample_metrics --record, eval.class_consistency --record, eval.novelty) and the
frame prediction its model's, compared with `<run>/samples/samples.json`; --scale must be the scale the samples were
drawn at. Each guidance scale's figures are joined by its key cfg<s> (shared.guidance). Layout of the result (its
schema, checked before it is written and wherever it is read: eval.generator_result):

    {"schema_version", "metrics": {"cfg<s>": {"guidance_scale", "n_samples" (scored), "n_sampled", "sampling_seconds",
                            <eval.sample_metrics' metrics>,
                            "class_consistency", "class_mean_probability", "class_consistency_per_class",
                            "judge_features", "novelty": {"latent", "judge", "codes" (VQ)}}, ...},
     "novelty": {"training_rows", "fresh_items", "latent_space", "judge_space"} or None,
     "classifier": {"classifier_accuracy", "chance", "rises_with_guidance"} or None,
     "references": {<point>: {"share", "per_class", "feature_distance"}} or None, "frame_prediction": ... or None,
     "generator", "task", "data", "steps", "parameters", "wall_seconds": {extraction, training, sampling,
     evaluation}, "threads", "precision", "sampling", "config", <provenance stamp>}
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared.atomic import atomic_write_json, read_json_object
from shared.guidance import keyed
from shared.provenance import machine_name, stamp
from shared.sample_folders import SAMPLES_FILE, read_samples_record

from .generator_result import SCHEMA_VERSION, result_from
from .sample_metrics import result_file

CLASSIFIER_KEYS = ("classifier_accuracy", "chance", "rises_with_guidance")
NOVELTY_KEYS = ("training_rows", "fresh_items", "fresh_per_class", "latent_space", "judge_space")


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the step that writes the {what} first (see the Makefile)")
    return read_json_object(path, what)


def check_scored(scored: str | None, key: str, folder: dict, source: Path, samples: Path, step: str) -> None:
    """Refuse a metrics file that did not score the samples folder `key` (its sha256 is not the one samples.json
    records)."""
    expected = folder.get("sha256")
    if expected is None:
        raise ValueError(f"{samples / SAMPLES_FILE}: records no sha256 of {key}/ (sampled by an earlier version); "
                         f"sample again, then evaluate")
    if scored != expected:
        raise ValueError(f"{source}: scores samples {str(scored)[:12]}..., not {samples}'s {key}/ ({expected[:12]}...): "
                         f"these figures are of other samples; run {step} --record {samples} and write them to this "
                         f"--metrics folder")


def folder_metrics(folders: dict, metrics_dir: Path, consistency: dict | None, novelty: dict | None,
                   samples: Path) -> tuple[dict, float]:
    """Each samples folder's record (samples.json's, by guidance key) joined by that key with eval/'s figures about
    it (each checked to be of these samples); and the seconds evaluation took."""
    consistency_file, novelty_file = metrics_dir / "class_consistency.json", metrics_dir / "novelty.json"
    rows = keyed(consistency["metrics"]["class_consistency"], str(consistency_file)) if consistency else {}
    new = keyed(novelty["metrics"]["novelty"], str(novelty_file)) if novelty else {}
    seconds = (consistency or {}).get("eval_seconds", 0.0) + (novelty or {}).get("eval_seconds", 0.0)
    out = {}
    for key, folder in folders.items():
        fidelity_file = result_file(metrics_dir, key)
        fidelity = read_json(fidelity_file, "sample metrics")
        check_scored(fidelity.get("samples_sha256"), key, folder, fidelity_file, samples, "eval.sample_metrics")
        seconds += fidelity.get("eval_seconds", 0.0)
        row = rows.get(key, {})
        if consistency is not None:
            check_scored(row.get("samples_sha256"), key, folder, consistency_file, samples, "eval.class_consistency")
        if novelty is not None:
            check_scored(new.get(key, {}).get("samples_sha256"), key, folder, novelty_file, samples, "eval.novelty")
        out[key] = {"guidance_scale": folder["guidance_scale"], "n_samples": fidelity.get("n_samples"),
                    "n_sampled": folder["n"],
                    "sampling_seconds": folder["seconds"], "grid": folder["grid"], **fidelity["metrics"],
                    "class_consistency": row.get("share"), "class_mean_probability": row.get("mean_probability"),
                    "class_consistency_per_class": row.get("per_class"), "judge_features": row.get("feature_distance"),
                    "novelty": {k: v for k, v in new.get(key, {}).items() if k in ("latent", "judge", "codes")} or None}
    return out, seconds


def build_report(run: Path, metrics_dir: Path, scale: str) -> dict:
    summary = read_json(run / "summary.json", "training summary")
    if "generator" not in summary or "data" not in summary:
        raise ValueError(f"{run / 'summary.json'}: not a generator's training summary (no 'generator' / 'data')")
    sampling = read_samples_record(run / "samples")
    if sampling.get("scale") is not None and sampling["scale"] != scale:
        raise ValueError(f"{run / 'samples' / SAMPLES_FILE}: these samples were drawn at scale "
                         f"{sampling['scale']!r}, not {scale!r}; give --scale {sampling['scale']}")
    manifest = read_json(Path(summary["data"]) / "manifest.json", "extraction manifest")
    consistency_file = metrics_dir / "class_consistency.json"
    consistency = read_json(consistency_file, "class consistency") if consistency_file.is_file() else None
    if consistency is None and sampling.get("classes") not in ([0], None) and summary["task"] != "frames":
        raise FileNotFoundError(f"{consistency_file}: not found; a class-conditional generator's report needs "
                                f"eval.class_consistency first")
    novelty_file = metrics_dir / "novelty.json"
    if consistency is not None and not novelty_file.is_file():
        raise FileNotFoundError(f"{novelty_file}: not found; a class-conditional generator's report needs eval.novelty "
                                f"(its samples' nearest training items) beside the class consistency")
    novelty = read_json(novelty_file, "novelty") if novelty_file.is_file() else None
    metrics, eval_seconds = folder_metrics(sampling["folders"], metrics_dir, consistency, novelty, run / "samples")
    prediction_file = metrics_dir / "frame_prediction.json"
    prediction = read_json(prediction_file, "frame prediction") if prediction_file.is_file() else None
    if prediction is not None:
        if prediction.get("pipeline_sha256") != sampling.get("model_sha256"):
            raise ValueError(f"{prediction_file}: scores the model {str(prediction.get('pipeline_sha256'))[:12]}..., "
                             f"not the one {run / 'samples'} was drawn from ({str(sampling.get('model_sha256'))[:12]}"
                             f"...); run eval.frame_prediction on this run's pipeline")
        eval_seconds += prediction.get("eval_seconds", 0.0)
    judged = (consistency or {}).get("metrics", {})
    settings = manifest["settings"]
    return {"schema_version": SCHEMA_VERSION, "metrics": metrics, "classifier": {k: judged[k] for k in CLASSIFIER_KEYS} if judged else None,
            "references": judged.get("references"), "references_per_class": judged.get("references_per_class"),
            "feature_space": judged.get("feature_space"), "frame_prediction": prediction,
            "novelty": novelty and {k: novelty["metrics"][k] for k in NOVELTY_KEYS},
            "generator": summary["generator"], "task": summary["task"], "experiment": run.name, "scale": scale,
            "data": {"source": settings.get("source"), "split": settings.get("split"),
                     "items": manifest.get("source_items"), "rows": manifest.get("rows"),
                     "resolution": settings.get("resolution"), "frames": settings.get("frames"),
                     "augmentation": settings.get("augmentation")},
            "checkpoint": summary.get("final"), "tokenizer": summary["tokenizer"],
            "tokenizer_sha256": summary["tokenizer_sha256"], "steps": summary["steps"],
            "parameters": summary["parameters"], "threads": summary["threads"], "precision": summary["precision"],
            "machine": machine_name(),
            "wall_seconds": {"extraction": manifest.get("extract_seconds"), "training": summary["train_seconds"],
                             "sampling": sum(f["seconds"] for f in sampling["folders"].values()),
                             "evaluation": eval_seconds},
            "sampling": {k: v for k, v in sampling.items() if k != "folders"}, "config": summary["config"], **stamp()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the training run folder (summary.json, samples/samples.json)")
    ap.add_argument("--metrics", required=True, help="folder of eval results (samples_cfg<s>.json, class_consistency.json)")
    ap.add_argument("--scale", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        report = build_report(Path(args.run), Path(args.metrics), args.scale)
        # written only where it meets its schema: a step's file of an earlier version could leave a field out
        result_from(report, args.out, fix="the steps' files in --run and --metrics are not all of this version: run "
                                          "the make target's steps again")
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    atomic_write_json(args.out, report)
    print(json.dumps({"out": args.out, "wall_seconds": report["wall_seconds"],
                      "class_consistency": {k: m["class_consistency"] for k, m in report["metrics"].items()}}, indent=1))
    return report


if __name__ == "__main__":
    main()
