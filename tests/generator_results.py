"""Generator result files as eval.generation_report writes them (eval.generator_result's schema), small and complete,
for the tests of the tables and pages that read them."""
from __future__ import annotations

import json
from pathlib import Path

from shared.guidance import guidance_key

NETWORK = "RANDOM-INIT inception-v3-fid (seed 0)"


def frechet(value: float, n=(64, 18), dim: int = 2048, full_rank: bool = False) -> dict:
    return {"value": value, "n": list(n), "dim": dim, "full_rank_covariance": full_rank}


def per_class(*shares: float, names: tuple[str, ...] | None = None) -> list[dict]:
    """eval.class_consistency's per-class rows: class i of `shares[i]`, named c<i> unless named."""
    return [{"class": i, "name": names[i] if names else f"c{i}", "n": 4, "share": s} for i, s in enumerate(shares)]


def judge(frechet_value: float, precision: float = 0.5, recall: float = 0.5) -> dict:
    return {"frechet": frechet_value, "full_rank_covariance": True, "n": [8, 8], "precision": precision,
            "recall": recall, "neighbours": 3}


def sample_metrics(task: str = "image", fid: float = 10.0) -> dict:
    """eval.sample_metrics' figures of one samples folder: FID, IS, KID, precision / recall for images, FVD for
    clips (`fid`: the Fréchet distance of either)."""
    figures = ({"fid": frechet(fid), "inception_score": {"mean": 2.0, "std": 0.1},
                "kid": {"mean": 0.01, "std": 0.001, "subset_size": 18}, "precision": 0.5, "recall": 0.5}
               if task == "image" else {"fvd": frechet(fid, dim=400)})
    return {**figures, "network": NETWORK, "weights_sha256": None}


def guidance_entry(scale: float, task: str = "image", fid: float = 10.0, share: float | None = None,
                   shares: list[dict] | None = None, features: dict | None = None, novelty: dict | None = None,
                   **figures) -> dict:
    """One guidance scale's figures: eval.sample_metrics' (`figures` replace some) and the judge's (none by default:
    an unconditional generator's)."""
    return {"guidance_scale": scale, "n_samples": 8, "n_sampled": 8, "sampling_seconds": 5.0,
            "grid": f"runs/small/x/samples/{guidance_key(scale)}.png", **sample_metrics(task, fid), **figures,
            "class_consistency": share, "class_mean_probability": share, "class_consistency_per_class": shares,
            "judge_features": features, "novelty": novelty}


def result_record(experiment: str, entries: list[dict], task: str = "image", **fields) -> dict:
    """A whole result file holding `entries` (guidance_entry), by their guidance keys; `fields` replace the rest."""
    return {"schema_version": 1, "metrics": {guidance_key(e["guidance_scale"]): e for e in entries},
            "classifier": None, "references": None, "references_per_class": None, "feature_space": None,
            "frame_prediction": None, "novelty": None, "generator": experiment.split("_")[0], "task": task,
            "experiment": experiment, "scale": "small",
            "data": {"source": "embedded", "split": "train", "items": 16, "rows": 32, "resolution": 64,
                     "frames": 1 if task == "image" else 17, "augmentation": "original + horizontal flip"},
            "checkpoint": "final", "tokenizer": "tok", "tokenizer_sha256": "ab" * 32, "steps": 10, "parameters": 1000,
            "threads": 2, "precision": "fp32", "machine": "a test CPU",
            "wall_seconds": {"extraction": 30.0, "training": 500.0, "sampling": 60.0, "evaluation": 10.0},
            "sampling": {"generator": experiment.split("_")[0], "classes": [0, 1], "per_class": 4, "seed": 0,
                         "batch_size": 8, "sampling": {"temperature": 1.0}},
            "config": {}, "git_commit": None, "written": "2026-01-01T00:00:00+00:00", **fields}


def write_result(results: Path, experiment: str, entries: list[dict], task: str = "image", **fields) -> Path:
    """results/<scale>/<experiment>.json (the folder `results` is results/<scale>)."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{experiment}.json"
    path.write_text(json.dumps(result_record(experiment, entries, task, **fields)))
    return path
