"""Where runs and results live: the one place that names them (trainers, evaluation, tables and Make use it).

    runs/<scale>/<run>/<stage>/final        a trained model (save_pretrained folder)
    results/<scale>/<run>.json              a training run's report
    results/<scale>/eval/<run>/<stage>.json an evaluation of one stage's model

A tokenizer run is "tokenizer" (the default schedule) or "tokenizer_<variant>" (an ablation of Tables 7-10); trained
with seed k > 0 (model init and data order) it is "<run>_seed<k>" (seed 0 keeps the plain name). A stage of a
tokenizer config starts from a stage of its own run ("<stage>"), from a stage of another run of the same scale
("<run>/<stage>": the model in that run's folder beside its own), or from any save_pretrained folder.
"""
from __future__ import annotations

from pathlib import Path


def tokenizer_run(variant: str | None = None) -> str:
    return f"tokenizer_{variant}" if variant else "tokenizer"


def seeded(run: str, seed: int) -> str:
    """The name of `run` trained with `seed`: the run itself for seed 0, "<run>_seed<k>" otherwise."""
    return run if seed == 0 else f"{run}_seed{seed}"


def tokenizer_run_parts(run: str) -> tuple[str | None, int]:
    """(variant, seed) of a tokenizer run name: the inverse of seeded(tokenizer_run(variant), seed). Unambiguous
    because no variant's name ends in _seed<digits> (tokenizer.train_config refuses one)."""
    if run != "tokenizer" and not run.startswith("tokenizer_"):
        raise ValueError(f"{run!r} is not a tokenizer run name (tokenizer[_<variant>][_seed<k>])")
    base, seed = run, 0
    head, sep, tail = run.rpartition("_seed")
    if sep and tail.isdigit() and not tail.startswith("0"):
        base, seed = head, int(tail)
    return (None if base == "tokenizer" else base.removeprefix("tokenizer_")), seed


def other_run_stage(init_from: str | None) -> tuple[str, str] | None:
    """(run, stage) of a stage's init_from that names another tokenizer run's stage ("<run>/<stage>"); None for a
    stage of the run itself or a save_pretrained folder."""
    run, sep, stage = (init_from or "").partition("/")
    if not sep or not stage or "/" in stage:
        return None
    try:
        tokenizer_run_parts(run)
    except ValueError:
        return None
    return run, stage


def model_dir(runs: str | Path, run: str, stage: str) -> Path:
    """The model a run's stage trained: <runs>/<run>/<stage>/final, runs being the folder of a scale's runs."""
    return Path(runs) / run / stage / "final"


def run_dir(scale: str, run: str, root: str | Path = "runs") -> Path:
    return Path(root) / scale / run


def run_result(scale: str, run: str, root: str | Path = "results") -> Path:
    return Path(root) / scale / f"{run}.json"


def eval_result(scale: str, run: str, stage: str, root: str | Path = "results") -> Path:
    return Path(root) / scale / "eval" / run / f"{stage}.json"


def run_of_model_dir(path: str | Path) -> tuple[str, str] | None:
    """(run, stage) of a model_dir path (runs/<scale>/<run>/<stage>/final), or None for any other folder."""
    parts = Path(path).parts
    return (parts[-3], parts[-2]) if len(parts) >= 3 and parts[-1] == "final" else None
