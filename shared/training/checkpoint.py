"""Training checkpoints: model weights in safetensors, optimizer state loaded with weights_only=True.

`resume` restores the latest checkpoint of a folder into modules and optimizers after checking that it was
written with the same configuration (a dict the trainer chooses; JSON-normalised before comparing).

Each checkpoint is a folder `step_00001234/` that is written under a temporary name and renamed into
place, so an interrupted write never leaves a checkpoint that looks complete. The last `keep` are kept.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
from collections.abc import Collection
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from shared.atomic import atomic_write_json, file_mode, read_json_object
from shared.provenance import earlier_version, file_sha256

PREFIX = "step_"
log = logging.getLogger(__name__)


def load_safetensors(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors on `map_location`; a file that cannot be read is an error naming it and the cause.

    The file is read on the CPU and moved after: safetensors takes only its own device names ("cpu:0", which a
    CPU process of a distributed launch has as its device, is refused as an invalid device)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError, or a Rust panic
        raise ValueError(f"{path}: cannot be read as safetensors ({exc.__class__.__name__}: {exc}); the file is "
                         f"truncated or corrupt") from None
    device = torch.device(map_location)
    return tensors if device.type == "cpu" else {k: v.to(device) for k, v in tensors.items()}


RUN_OUTPUTS = ("checkpoints", "final", "samples", "validation", "tb", "metrics.jsonl", "summary.json")


def discard_run(out: str | Path) -> None:
    """What a generator's trainer and its sampler wrote into a run folder (a restart): checkpoints, the final
    pipeline, sample folders, validation grids, logs, the summary. Anything else in the folder (the latents) stays."""
    for name in RUN_OUTPUTS:
        path = Path(out) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def finished_run(out: str | Path, record: dict, ignored: Collection[str] = ()) -> dict | None:
    """The summary of a run that finished in `out` with this `record` (what its weights depend on, stored in the
    summary as "record") and whose final/ holds the files it wrote (the summary's final_sha256), or None when none
    finished there, or its final/ is gone (the trainer then writes it again from the last checkpoint). A run that
    finished with another record is refused, and so is a final/ whose files are not the ones the run wrote."""
    done, final = Path(out) / "summary.json", Path(out) / "final"
    if not done.is_file():
        return None
    summary = read_json_object(done)
    changed = config_difference(summary.get("record"), as_record(record), ignored=ignored)
    if changed:
        raise ValueError(f"{done}: this run finished with another configuration or other data ("
                         f"{'; '.join(changed[:4])}{' ...' if len(changed) > 4 else ''}); pass --restart to train "
                         f"again, or choose another --out")
    if not final.is_dir():
        log.warning("%s: the run finished, but its final/ is gone: writing it again from the last checkpoint", out)
        return None
    recorded = summary.get("final_sha256")
    if recorded is None:
        raise ValueError(earlier_version(done, "no final_sha256 of its final/", "pass --restart to train again"))
    if (actual := file_sha256(final)) != recorded:
        raise ValueError(f"{final}: not the files this run wrote (sha256 {actual[:12]}..., {done} records "
                         f"{recorded[:12]}...); put them back, or pass --restart to train again")
    log.info("%s: finished earlier with this configuration and data, reusing %s", done, final)
    return summary


def write_summary(out: str | Path, summary: dict) -> dict:
    """A finished run's summary.json, with the sha256 of the final/ it wrote (what finished_run checks)."""
    summary["final_sha256"] = file_sha256(Path(out) / "final")
    atomic_write_json(Path(out) / "summary.json", summary)
    return summary


def checkpoint_dirs(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "meta.json").is_file())


def clean_leftovers(folder: str | Path) -> list[Path]:
    """Delete what a killed run left in a checkpoint folder: `.tmp_step_*` folders (killed while writing) and
    `step_*` folders without meta.json (killed while pruning). Complete checkpoints are never touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_dir() and (
        p.name.startswith(f".tmp_{PREFIX}") or (p.name.startswith(PREFIX) and not (p / "meta.json").is_file()))]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def latest_checkpoint(folder: str | Path) -> Path | None:
    dirs = checkpoint_dirs(folder)
    return dirs[-1] if dirs else None


def save_checkpoint(folder: str | Path, step: int, models: dict[str, dict], optimizers: dict[str, dict],
                    meta: dict, keep: int = 2) -> Path:
    """models: name -> state dict; optimizers: name -> optimizer state dict."""
    folder = Path(folder)
    target = folder / f"{PREFIX}{step:08d}"
    tmp = folder / f".tmp_{PREFIX}{step:08d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, state in models.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / f"{name}.safetensors"))
        torch.save(optimizers, tmp / "optimizers.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=2))
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        # torch.save reports a full disk as "unexpected pos" from its zip writer, safetensors as an I/O error
        if getattr(exc, "errno", None) == errno.ENOSPC or "unexpected pos" in str(exc) or "No space" in str(exc):
            raise OSError(errno.ENOSPC, f"{folder}: no space left on the device while writing the checkpoint of step "
                                        f"{step}; the earlier checkpoints are intact. Free space and run again to "
                                        f"resume") from None
        raise
    for f in tmp.iterdir():  # safetensors writes its files 0600: the umask's mode, as every other file gets
        os.chmod(f, file_mode())
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    for old in checkpoint_dirs(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict, dict]:
    """(models, optimizers, meta) as saved; optimizer state is read with weights_only=True."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint (no meta.json)")
    models = {f.name[: -len(".safetensors")]: load_safetensors(f, map_location) for f in sorted(path.glob("*.safetensors"))}
    try:
        optimizers = torch.load(path / "optimizers.pt", map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path / 'optimizers.pt'}: cannot be read ({exc.__class__.__name__}: {exc})") from None
    return models, optimizers, read_json_object(meta_file, "checkpoint's meta")


def as_record(config) -> dict:
    """A configuration as checkpoints and summaries store it: a dataclass or dict, JSON-normalised (tuples become
    lists), so that a stored record and a fresh one compare equal."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(config))


def config_difference(saved: dict | None, wanted: dict, prefix: str = "", ignored: Collection[str] = ()) -> list[str]:
    """The fields in which a stored configuration record differs from the one asked for, as 'name: saved -> wanted'.

    ignored: dotted names of fields (or sections) that do not change the result (how often to log or checkpoint,
    sampling settings), never a difference."""
    saved = saved or {}
    out = []
    for key in sorted(set(saved) | set(wanted)):
        if f"{prefix}{key}" in ignored:
            continue
        a, b = saved.get(key, "<absent>"), wanted.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_difference(a, b, f"{prefix}{key}.", ignored)
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def resume(folder: str | Path, record: dict, modules: dict[str, torch.nn.Module],
           optimizers: dict[str, torch.optim.Optimizer], what: str = "run",
           ignored: Collection[str] = ()) -> dict | None:
    """Load the latest checkpoint of `folder` into `modules` and `optimizers` (by name) and return its meta, or
    None when there is none. A checkpoint written with another `record` (meta["config"]) is refused, except for
    the `ignored` fields (config_difference). What a killed run left half-written in the folder is deleted first."""
    clean_leftovers(folder)
    unreadable = []
    for path in reversed(checkpoint_dirs(folder)):  # the newest that can be read: a truncated one falls back
        try:
            models, optims, meta = load_checkpoint(path)
            break
        except (ValueError, OSError) as exc:
            log.warning("%s cannot be read (%s); trying the checkpoint before it", path, exc)
            unreadable.append(str(path))
    else:
        if unreadable:
            raise ValueError(f"{folder}: no checkpoint can be read ({', '.join(unreadable)}); pass --restart to train "
                             f"again")
        return None
    if unreadable:
        log.warning("resuming from %s: the newer %s could not be read", path, ", ".join(unreadable))
    missing = sorted(set(modules) - set(models))
    if missing:
        raise ValueError(f"{path}: holds no {', '.join(f'{m}.safetensors' for m in missing)}; it was written by "
                         f"another trainer, or is incomplete: pass --restart to train again")
    differences = config_difference(meta.get("config"), as_record(record), ignored=ignored)
    if differences:
        raise ValueError(f"{path}: written with a different configuration of {what} ({'; '.join(differences)}); "
                         f"resume with that configuration, or pass --restart to train again")
    for name, module in modules.items():
        module.load_state_dict(models[name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(optims[name])
    return {**meta, "path": str(path)}
