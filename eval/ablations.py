"""Do our ablations point the same way as the paper's? Each comparison (eval/experiments.py) pits two settings on
one metric (lower is better for rFID and rFVD), takes the paper's two numbers from its table and ours from the
result files, and says which setting wins in each, and by how much."""
from __future__ import annotations

import json
from pathlib import Path

from .experiments import COMPARISONS, TokenizerRow, row
from .paper_tables import PAPER_TABLES

COLUMNS = ["Table", "Comparison", "Paper", "Ours", "Same direction?", "Ours, PSNR of the same split (dB, higher is better)"]


def paper_value(table: int, row: str | tuple[str, str], column: str) -> float:
    """The paper's number under `column` in the row whose first cell is `row` (or whose `row[0]` cell is `row[1]`)."""
    t = PAPER_TABLES[table]
    key, cell = (t["columns"][0], row) if isinstance(row, str) else row
    k, col = t["columns"].index(key), t["columns"].index(column)
    for r in t["rows"]:
        if r[k] == cell:
            return float(r[col])
    raise KeyError(f"Table {table} has no row with {key} = {cell!r}")


def our_value(results: Path, r: TokenizerRow) -> tuple[float, float] | None:
    """(metric, PSNR) of a row's model on its split, from its eval file; None when not evaluated."""
    f = r.result(results.name, results.parent)
    if not f.is_file():
        return None
    m = json.loads(f.read_text())["metrics"].get(r.split)
    return None if m is None else (float(m[r.metric]["value"]), float(m["psnr"]))


def _verdict(name_a: str, a: float, name_b: str, b: float) -> tuple[str, str | None]:
    """'A x vs B y: B better by z %' and the winner (None on a tie)."""
    if a == b:
        return f"{name_a} {a:.2f} = {name_b} {b:.2f}", None
    winner, gap = (name_a, (b - a) / b) if a < b else (name_b, (a - b) / a)
    return f"{name_a} {a:.2f} vs {name_b} {b:.2f}: {winner} better by {100 * gap:.0f} %", winner


def compare(results: str | Path) -> list[list[str]]:
    rows = []
    for table, what, column, split, (name_a, paper_a, ours_a), (name_b, paper_b, ours_b) in COMPARISONS:
        paper_text, paper_winner = _verdict(name_a, paper_value(table, paper_a, column),
                                            name_b, paper_value(table, paper_b, column))
        oa = our_value(Path(results), row(table, ours_a, split))
        ob = our_value(Path(results), row(table, ours_b, split))
        if oa is None or ob is None:
            rows.append([str(table), what, paper_text, "not run", "", ""])
            continue
        our_text, our_winner = _verdict(name_a, oa[0], name_b, ob[0])
        psnr_winner = name_a if oa[1] > ob[1] else name_b if ob[1] > oa[1] else "neither"
        rows.append([str(table), what, paper_text, our_text, "yes" if our_winner == paper_winner else "no",
                     f"{name_a} {oa[1]:.2f} vs {name_b} {ob[1]:.2f}: {psnr_winner} better by {abs(oa[1] - ob[1]):.2f}"])
    return rows
