"""The sample folders every generator writes and eval/ reads, one per guidance scale, with a record of how.

    <out>/samples.json                        the settings (the sha256 of every part of the pipeline: model and
                                              VAE or tokenizer; sampler, seed, counts ...) and, per folder (by its
                                              key cfg<s>), its guidance scale, item count, grid, seconds and each
                                              file's sha256
    <out>/cfg<s>/<class:04d>/<index:05d>.png  (or .mp4) the samples at guidance scale s (1: none), shared.media's layout
    <out>/cfg<s>.png (or .gif)                a grid to look at: a row per class (up to 24), up to 8 samples each

cfg<s> is the scale's key (shared.guidance), the one name of a guidance scale on disk and in results.

Batch b of every folder is drawn from seed `seed * 100_003 + b` alone, so a killed run resumes where it stopped
(batches whose files are all there are skipped) and gives the same files as an uninterrupted one. The settings are
in samples.json before the first file is written; a folder of other settings is refused, never mixed.

Evaluation reads a samples folder where it is given (`checked_folder`), not where samples.json says it was written,
and refuses a file missing, changed or added since sampling; each folder's `sha256` (of its files' hashes) names
the samples an evaluation scored.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .atomic import atomic_write_json, output_folder, read_json_object, remove_temporary_files
from .guidance import guidance_key, keyed
from .media import grid, read_sample, sample_path, write_sample
from .provenance import file_sha256
from .training.precision import add_precision_argument

SAMPLES_FILE = "samples.json"
GRID_ROWS, GRID_COLUMNS = 24, 8


def batch_seed(seed: int, batch: int) -> int:
    return seed * 100_003 + batch


def read_samples_record(out: str | Path) -> dict:
    """The samples.json of a samples folder, with a clear error where there is none; its "folders" by the key of
    each one's guidance scale (shared.guidance)."""
    record = read_json_object(Path(out) / SAMPLES_FILE, "samples record")
    return {**record, "folders": keyed(record.get("folders", {}).values(), str(Path(out) / SAMPLES_FILE))}


def add_sampling_flags(ap: argparse.ArgumentParser) -> None:
    """The command-line flags every generator's sampler takes, alike."""
    ap.add_argument("--pipeline", required=True, help="a pipeline folder (a training run's final/)")
    ap.add_argument("--out", required=True, help="samples folder: <out>/cfg<s>/, grids, samples.json")
    ap.add_argument("--scale", default="small", help="config of the sampling settings: tiny | small | paper | YAML")
    ap.add_argument("--guidance", type=float, action="append", default=None,
                    help="guidance scale, 1 = none (repeatable; default: the config's sample.guidance_scales)")
    ap.add_argument("--per-class", type=int, default=None, help="samples of each class (default: the config's)")
    ap.add_argument("--classes", type=int, default=None,
                    help="sample the first N classes of those the model was trained on (default: all)")
    ap.add_argument("--seed", type=int, default=None, help="sampling seed (default: the config's sample.seed)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="config override (repeatable)")
    add_precision_argument(ap, "the generator's", "Recorded in samples.json: never mixed in one folder")


def check_sampling_flags(args: argparse.Namespace) -> None:
    """A clear exit for counts below 1, a negative seed or a guidance scale that is not a finite number."""
    for flag, value, low in (("--classes", args.classes, 1), ("--per-class", args.per_class, 1),
                             ("--seed", args.seed, 0)):
        if value is not None and value < low:
            raise SystemExit(f"{flag} must be >= {low}, got {value}")
    for scale in args.guidance or []:
        if not math.isfinite(scale):
            raise SystemExit(f"--guidance must be a finite number, got {scale}")


def write_sample_folders(out: str | Path, settings: dict, jobs: list[tuple[int, int]], scales: list[float],
                         draw: Callable[[list[int], int, float], torch.Tensor], video: bool,
                         context: dict | None = None) -> dict:
    """Sample every (class, index) of `jobs` at each guidance scale into <out>/cfg<s>/; returns the record.

    settings: what makes these samples these samples (JSON values, with "seed" and "batch_size"; the model by its
    weights' sha256, not by its path), compared with an earlier samples.json; context: recorded, not compared (the
    pipeline's path, threads, device ...).
    draw(positions in jobs, seed, guidance scale) -> pixels (B, 3, T, H, W) in [-1, 1] for those jobs."""
    out, batch_size = output_folder(out), settings["batch_size"]
    record = {**settings, **(context or {}), "folders": {}}
    if (out / SAMPLES_FILE).is_file():
        earlier = read_samples_record(out)
        changed = {k: (earlier.get(k), v) for k, v in json.loads(json.dumps(settings)).items() if earlier.get(k) != v}
        if changed:
            raise ValueError(f"{out / SAMPLES_FILE}: these folders were sampled with other settings "
                             f"{_short(changed)}; choose another --out or delete it")
        record["folders"] = earlier["folders"]
    atomic_write_json(out / SAMPLES_FILE, record)  # on disk before any sample: a killed run's files are accounted for
    labels = list(dict.fromkeys(c for c, _ in jobs))
    columns = min(GRID_COLUMNS, max(i for _, i in jobs) + 1)
    in_grid = lambda c, i: c in labels[:GRID_ROWS] and i < columns  # noqa: E731
    for scale in scales:
        t0 = time.perf_counter()
        key = guidance_key(scale)
        folder = out / key
        for c in labels:  # what a killed run's unfinished writes left
            remove_temporary_files(folder / f"{c:04d}")
        shown: dict[tuple[int, int], torch.Tensor] = {}
        # a file an earlier run recorded, changed since: drawn again, as a missing one is
        earlier_files = record["folders"].get(key, {}).get("files", {})
        files: dict[str, str] = {}
        for b, start in enumerate(tqdm(range(0, len(jobs), batch_size), desc=f"guidance {scale:g}", unit="batch")):
            positions = list(range(start, min(start + batch_size, len(jobs))))
            paths = [sample_path(folder, *jobs[p], video) for p in positions]
            names = [path.relative_to(folder).as_posix() for path in paths]
            found = {n: file_sha256(path) for n, path in zip(names, paths) if path.is_file()}
            if all(found.get(n) is not None and earlier_files.get(n, found[n]) == found[n] for n in names):
                # written by an earlier run: read back what the grid shows
                shown.update({jobs[p]: read_sample(path) for p, path in zip(positions, paths) if in_grid(*jobs[p])})
                files.update(found)
                continue
            pixels = draw(positions, batch_seed(settings["seed"], b), scale)
            for p, path, name, x in zip(positions, paths, names, pixels):
                path.parent.mkdir(parents=True, exist_ok=True)
                write_sample(x, path)
                files[name] = file_sha256(path)
                if in_grid(*jobs[p]):
                    shown[jobs[p]] = x.cpu()
        blank = torch.full_like(next(iter(shown.values())), -1)
        cells = [shown.get((c, i), blank) for c in labels[:GRID_ROWS] for i in range(columns)]
        # the suffix given (grid replaces it by .png or .gif) keeps "cfg1.5" whole
        picture = grid(torch.stack(cells), out / f"{key}.png", per_row=columns)
        before = record["folders"].get(key, {}).get("seconds", 0.0)  # runs that wrote some of the files
        record["folders"][key] = {"folder": str(folder), "grid": str(picture), "guidance_scale": scale,
                                           "n": len(jobs), "seconds": before + time.perf_counter() - t0,
                                           "sha256": files_sha256(files), "files": files}
        atomic_write_json(out / SAMPLES_FILE, record)
    return record


def files_sha256(files: dict[str, str]) -> str:
    """One sha256 for a folder's samples: of their relative names and sha256s."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def checked_folder(out: str | Path, entry: dict) -> Path:
    """The folder of one guidance scale (`entry`, a value of samples.json's "folders") inside the samples folder
    `out`, where it is now: every file samples.json lists is there with the sha256 recorded, and no other sample.
    A ValueError naming the first file that is not."""
    out = Path(out)
    folder, where = out / guidance_key(entry["guidance_scale"]), out / SAMPLES_FILE
    files = entry.get("files")
    if not isinstance(files, dict) or entry.get("sha256") != files_sha256(files):
        raise ValueError(f"{where}: records no sha256 of the files of {folder.name}/ (written by an earlier version "
                         f"of the sampler, or edited); sample again into a new --out")
    found = ({p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}
             if folder.is_dir() else set())
    missing, extra = sorted(set(files) - found), sorted(found - set(files))
    if missing:
        raise ValueError(f"{folder / missing[0]}: missing ({len(missing)} of the {len(files)} samples {where} lists "
                         f"are); run the sampler again with the same settings to draw them again")
    if extra:
        raise ValueError(f"{folder / extra[0]}: not a sample {where} lists ({len(extra)} such files); remove them, "
                         f"or sample into a new --out")
    for name, sha in files.items():
        if file_sha256(folder / name) != sha:
            raise ValueError(f"{folder / name}: changed since it was sampled (its sha256 is not the one {where} "
                             f"records); run the sampler again with the same settings to draw it again")
    return folder


def _short(changed: dict) -> dict:
    """Hashes cut to 12 characters in an error message."""
    return {k: tuple(v[:12] if isinstance(v, str) and k.endswith("sha256") else v for v in pair)
            for k, pair in changed.items()}
