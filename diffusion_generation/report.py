"""The experiment's result file: what was trained on what, how long each step took, and the metrics of its samples.

    python -m diffusion_generation.report --run runs/small/dit_imagenet --metrics results/small/eval/dit_imagenet \
        --scale small --out results/small/dit_imagenet.json

Reads the run's files (latents/manifest.json, summary.json, samples/samples.json) and the files that eval/ wrote
about its samples (`<metrics>/samples_cfg<s>.json` from eval.sample_metrics for each guidance scale s,
`<metrics>/class_consistency.json` from eval.class_consistency for all of them), and writes one JSON in the
house format of eval/results.py (metrics + context + git commit + time written).
"""
from __future__ import annotations

from pathlib import Path

from shared.generation_report import read_json, report_main, sample_metrics
from shared.provenance import stamp


def build_report(run: Path, metrics_dir: Path, scale: str) -> dict:
    summary = read_json(run / "summary.json")
    if summary.get("experiment") not in ("dit", "latte") or "latents" not in summary:
        raise ValueError(f"{run / 'summary.json'}: not a DiT or Latte run (experiment {summary.get('experiment')!r}); "
                         f"an LM run is reported by lm_generation.report")
    manifest = read_json(Path(summary["latents"]) / "manifest.json")
    sampling = read_json(run / "samples" / "samples.json")
    folders = {f"cfg{key}": {"guidance_scale": f["guidance_scale"], "n_samples": f["n"], "sampling_seconds": f["seconds"]}
               for key, f in sampling["folders"].items()}
    metrics, classifier, eval_seconds = sample_metrics(folders, metrics_dir)
    settings = manifest["settings"]
    seconds = {"extraction": manifest.get("extract_seconds"), "training": summary["wall_seconds"],
               "sampling": sum(f["seconds"] for f in sampling["folders"].values()), "evaluation": eval_seconds}
    return {"metrics": metrics, "classifier": classifier, "experiment": summary["experiment"], "scale": scale,
            "data": {"source": settings["source"], "split": settings["split"], "items": manifest["source_items"],
                     "rows": manifest["rows"], "augmentation": settings["augmentation"],
                     "resolution": settings["resolution"], "frames": settings["num_frames"],
                     "frame_stride": settings["frame_stride"], "latent_shape": settings["latent_shape"]},
            "latent_scale": manifest["latent_scale"], "checkpoint": summary["final"],
            "tokenizer": settings["tokenizer"], "tokenizer_sha256": settings["tokenizer_sha256"],
            "steps": summary["steps"], "parameters": summary["parameters"], "wall_seconds": seconds,
            "threads": summary["threads"], "precision": summary["precision"],
            "sampling": {k: sampling[k] for k in ("sampler", "sampling_steps", "classes", "per_class", "seed")},
            "config": summary["config"], **stamp()}


def main(argv=None) -> dict:
    return report_main(build_report, __doc__, argv)


if __name__ == "__main__":
    main()
