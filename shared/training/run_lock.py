"""One writer per run folder: a trainer holds an exclusive lock on `<run>/.lock` while it writes there, so that a
second trainer started on the same folder stops at once with a clear error instead of interleaving its checkpoints,
metrics and summary with the first one's."""
from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import os
from pathlib import Path

LOCK_NAME = ".lock"


class RunFolderBusy(RuntimeError):
    pass


@contextlib.contextmanager
def run_lock(folder: str | Path, enabled: bool = True):
    """Hold the run folder's lock for the `with` block (enabled: on the process that writes, the main one)."""
    if not enabled:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise RunFolderBusy(f"{folder}: another trainer (pid {holder}) is writing this run folder; wait for it to "
                                f"finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # before the lock goes, so that no later holder's file is removed
    finally:
        os.close(fd)


def locks_run_folder(train):
    """Decorator of a trainer whose run folder is its `out` argument: the process of rank 0 (the one that writes)
    holds the folder's lock while the trainer runs."""
    signature = inspect.signature(train)

    @functools.wraps(train)
    def locked(*args, **kwargs):
        out = signature.bind(*args, **kwargs).arguments["out"]
        with run_lock(out, enabled=int(os.environ.get("RANK", "0")) == 0):
            return train(*args, **kwargs)

    return locked
