"""Result files: one JSON per evaluation, each number with what it came from."""
from __future__ import annotations

import datetime
from pathlib import Path

from shared.atomic import atomic_write_json
from shared.provenance import git_commit


def write_result(path: str | Path, metrics: dict, **context) -> Path:
    """metrics: name -> value or dict; context: split, n, resolution, frames, scale, feature network, checkpoint..."""
    record = {"metrics": metrics, **context, "git_commit": git_commit(),
              "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return atomic_write_json(path, record)
