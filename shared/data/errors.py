"""The one error type the data layer raises for bad input: it always names the file and the problem."""
from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Bad input data: an unreadable file, an empty folder, a missing split file, a too-short video."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
