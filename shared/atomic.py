"""Atomic file writes: write to a temporary file in the same folder, then rename over the target."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


TMP_SUFFIX = ".tmp"


def file_mode() -> int:
    """The mode a plainly created file gets under the process's umask (0644 under 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_temporary_files(folder: str | Path) -> list[Path]:
    """Delete what an interrupted atomic write left in `folder` (".<name>.<random>.tmp" files); returns them."""
    folder = Path(folder)
    stale = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` and move the result to `path`; a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes 0600, and a writer may replace the file with its own (safetensors writes a temporary file and
        # renames it): the umask's mode is set on what `write` left, since results and checkpoints are for colleagues
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_json(path: str | Path, obj) -> Path:
    def write(tmp: str):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    return atomic_write(path, write)


def read_json_object(path: str | Path, what: str = "file") -> dict:
    """A JSON file holding an object (a manifest, a checkpoint's meta, a pipeline record): a missing, truncated or
    non-object file is an error naming it, not a traceback from the JSON parser."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: this {what} is not valid JSON (truncated or corrupt: {exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: this {what} must hold a JSON object, got {type(value).__name__}")
    return value
