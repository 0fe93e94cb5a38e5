"""Atomic file writes: write to a temporary file in the same folder, then rename over the target."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Callable


TMP_SUFFIX = ".tmp"
# what a writer that renames its own temporary file leaves when killed (safetensors: ".tmp" + 6 random characters)
FOREIGN_TMP = ".tmp??????"


def file_mode() -> int:
    """The mode a plainly created file gets under the process's umask (0644 under 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def disk_full(exc: BaseException) -> bool:
    """Whether an exception is a full disk or quota: an OSError's errno, or the message of a writer that has its own
    error type (safetensors' I/O error, torch.save's zip writer's "unexpected pos")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left" in text or "Disk quota exceeded" in text or "unexpected pos" in text


def follow_umask(folder: str | Path) -> None:
    """Give every file below `folder` the umask's mode: libraries that save a folder (transformers' and diffusers'
    save_pretrained, through safetensors) leave their weights 0600, and results are for colleagues."""
    for p in Path(folder).rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.chmod(p, file_mode())


def remove_temporary_files(folder: str | Path) -> list[Path]:
    """Delete what an interrupted write left in `folder` (".<name>.<random>.tmp" files of atomic_write, and
    safetensors' own ".tmpXXXXXX"); returns them."""
    folder = Path(folder)
    stale = (list(dict.fromkeys(p for pattern in (f".*{TMP_SUFFIX}", FOREIGN_TMP) for p in sorted(folder.glob(pattern))
                                if p.is_file())) if folder.is_dir() else [])
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def output_folder(path: str | Path) -> Path:
    """`path` as a folder to write into, made where missing; a clear error where a file stands in the way."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(f"{p}: is a file where a folder is needed; choose another --out (or move the "
                                     f"file)")
        if p.is_dir():
            break
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` and move the result to `path`; a crash never leaves a half-written file. A full disk is
    an OSError naming `path`."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file path to write this result to")
    output_folder(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes 0600, and a writer may replace the file with its own (safetensors writes a temporary file and
        # renames it): the umask's mode is set on what `write` left, since results and checkpoints are for colleagues
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001  writers report a full disk in their own types
        if not disk_full(exc):
            raise
        raise OSError(errno.ENOSPC, f"{path}: no space left on the device (or over quota) while writing it; free "
                                    f"space and run the command again: what was finished is kept") from None
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
