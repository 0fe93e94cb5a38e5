"""What every result file says about the code that made it."""
from __future__ import annotations

import datetime
import hashlib
import platform
import subprocess
from pathlib import Path

import torch


def git_commit() -> str | None:
    """The checkout's commit, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stamp() -> dict:
    """The code and time a result was written with."""
    return {"git_commit": git_commit(),
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def earlier_version(path: str | Path, sign: str, remedy: str) -> str:
    """The message for an artifact an earlier version of the project wrote, in a format this one does not read."""
    return f"{path}: written by an earlier version of the project ({sign}), which this version does not read; {remedy}"


# a saved model's card: a description of the weights (with the time and commit it was written at), not part of what
# a folder's hash vouches for, so that the same weights saved again hash the same
MODEL_CARD = "README.md"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes, sorted), such as a
    save_pretrained folder; a folder's model cards (MODEL_CARD) are left out."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != MODEL_CARD) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise FileNotFoundError(f"{path}: nothing to hash (no such file, or an empty folder)")
    h = hashlib.sha256()
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """sha256 of tensors' dtypes, shapes and values: data by its content, wherever it was read from."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def component_sha256(folder: str | Path, components: dict[str, str]) -> dict[str, str]:
    """{"<name>_sha256": sha256} of each part of a saved pipeline (name -> its file or folder inside `folder`): what
    a sample folder records of the pipeline that drew it."""
    return {f"{name}_sha256": file_sha256(Path(folder) / part) for name, part in components.items()}


def check_sha256(path: str | Path, expected: str, recorded_in: str | Path,
                 remedy: str = "Use those weights, or extract again with these", actual: str | None = None) -> None:
    """Refuse a file or folder whose sha256 (`actual` where already computed) is not the one `recorded_in` states it
    was made with (a tokenizer replaced after extraction, or another model given in its place)."""
    actual = file_sha256(path) if actual is None else actual
    if actual != expected:
        raise ValueError(f"{path}: sha256 {actual[:12]}... is not the {expected[:12]}... recorded in {recorded_in}: "
                         f"these are not the weights the data was made with. {remedy}")
