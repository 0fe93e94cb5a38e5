"""Generated blocks of the docs pages: the lines between two marker comments of a Markdown page, written by a command
from a measurement or from result files, never typed. Under its first marker a block keeps what it was measured from
(scale, machine, precision) on a comment line of its own, and a block measured at `paper` scale is replaced by one
measured without it only when asked (`force`; the writers' --force): a tiny or small run, or a bench run on a subset
of its cases, does not overwrite the paper's figures.

    write_block(page, BEGIN, END, lines, Measured(scale="paper", machine="AMD EPYC (cpu, 2 threads)", precision="bf16"))
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from shared.atomic import atomic_write

PAPER = "paper"
UNRECORDED = "unrecorded"
RECORD = re.compile(r"<!-- measured: scale (?P<scale>[^;]*); machine (?P<machine>[^;]*); precision (?P<precision>.*?) -->")
BEGIN_MARKER = re.compile(r"^<!-- [^\n]*; do not edit -->$", re.MULTILINE)  # a block's first line names its writer


def begin_markers(path: str | Path) -> list[str]:
    """The first markers of every generated block of a page, in page order."""
    return BEGIN_MARKER.findall(Path(path).read_text())


def joined(values: Iterable) -> str:
    """Distinct values in their first order, ", "-joined (several cases, runs or precisions in one block); "unrecorded"
    where none is known."""
    seen = list(dict.fromkeys(str(v) for v in values if v not in (None, "")))
    return ", ".join(seen) or UNRECORDED


def _field(value: str) -> str:
    """A value the record line can hold and give back: no ';' (the separator) and no comment end."""
    return " ".join(str(value).replace(";", ",").replace("-->", "->").split()) or UNRECORDED


@dataclass(frozen=True)
class Measured:
    """What a block was measured from. scale: a scale name, or several ", "-joined (a bench measuring fixed shapes of
    more than one, such as the `small` and `paper` models)."""
    scale: str
    machine: str
    precision: str

    @property
    def scales(self) -> list[str]:
        return [s.strip() for s in self.scale.split(",")]

    def line(self) -> str:
        return (f"<!-- measured: scale {_field(self.scale)}; machine {_field(self.machine)}; "
                f"precision {_field(self.precision)} -->")


def from_results(scale: str, machines: Iterable, threads: Iterable, precisions: Iterable) -> Measured:
    """What a block drawn from result files was measured with: their distinct machines, thread counts and
    precisions ("unrecorded" where the files do not say)."""
    return Measured(scale, f"{joined(machines)} ({joined(threads)} threads)", joined(precisions))


def block_text(begin: str, end: str, lines: list[str], measured: Measured) -> str:
    """A whole block: its markers, the record of what it was measured from, and `lines`."""
    return "\n".join([begin, measured.line(), "", *lines, end])


def _span(text: str, begin: str, end: str) -> tuple[int, int] | None:
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    return (start, stop + len(end)) if stop >= 0 else None


def read_measured(path: str | Path, begin: str, end: str) -> Measured | None:
    """The record of the block between `begin` and `end` of a page; None where the page has no such block or the
    block no record."""
    return _record(Path(path).read_text(), begin, end)


def _record(text: str, begin: str, end: str) -> Measured | None:
    span = _span(text, begin, end)
    match = RECORD.search(text, span[0], span[1]) if span else None
    return Measured(**{k: v.strip() for k, v in match.groupdict().items()}) if match else None


Block = tuple[str, str, list[str], Measured]  # begin marker, end marker, lines, what they were measured from


def write_blocks(path: str | Path, blocks: list[Block], force: bool = False) -> bool:
    """Replace each block (between the marker lines `begin` and `end` of a page) with its lines and the record of
    what they were measured from, in one atomic write; False where a block's markers are missing (that block left
    alone). A block measured at `paper` scale is kept against a measurement without it unless `force`: the command
    stops, naming the page and both scales, and the page is left as it was."""
    path = Path(path)
    text = path.read_text()
    found = [_span(text, b[0], b[1]) for b in blocks]
    for begin, end, _, measured in blocks:
        old = _record(text, begin, end)
        if not force and old is not None and PAPER in old.scales and PAPER not in measured.scales:
            raise SystemExit(f"{path}: its block {begin!r} was measured at scale {old.scale} ({old.machine}, "
                             f"{old.precision}); this measurement is at scale {measured.scale}, so the page is left "
                             f"as it is. Write it to a page of its own, or pass --force to replace the paper's figures")
    for block in blocks:  # one at a time: each replacement moves the later spans
        span = _span(text, block[0], block[1])
        if span:
            text = text[:span[0]] + block_text(*block) + text[span[1]:]
    if any(found):
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return all(found)


def write_block(path: str | Path, begin: str, end: str, lines: list[str], measured: Measured,
                force: bool = False) -> bool:
    """write_blocks for one block."""
    return write_blocks(path, [(begin, end, lines, measured)], force)
