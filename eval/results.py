"""Result files: one JSON per evaluation, each number with what it came from."""
from __future__ import annotations

from pathlib import Path

from shared.atomic import atomic_write_json
from shared.provenance import stamp


def write_result(path: str | Path, metrics: dict, **context) -> Path:
    """metrics: name -> value or dict; context: split, n, resolution, frames, scale, feature network, checkpoint..."""
    record = {"metrics": metrics, **context, **stamp()}
    return atomic_write_json(path, record)
