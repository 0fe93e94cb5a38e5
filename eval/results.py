"""Result files: one JSON per evaluation, each number with what it came from."""
from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

from shared.atomic import atomic_write_json


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_result(path: str | Path, metrics: dict, **context) -> Path:
    """metrics: name -> value or dict; context: split, n, resolution, frames, scale, feature network, checkpoint..."""
    record = {"metrics": metrics, **context, "git_commit": git_commit(),
              "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return atomic_write_json(path, record)
