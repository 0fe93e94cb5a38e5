"""Do our ablations point the same way as the paper's, beyond noise? Each comparison (eval/experiments.py) pits two
settings: the paper's two numbers from its table (rFID or rFVD, lower is better), ours over seeds on the same metric
and on PSNR and SSIM (higher is better; they need no feature network, so offline they are the primary figures).
Each of ours gets a verdict by eval.seeds.NOISE_RULE: the paper's way, the opposite, or within noise."""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from .experiments import COMPARISONS, row
from .paper_tables import PAPER_TABLES
from .seeds import Seeds, feature_metric, row_metrics, verdict

COLUMNS = ["Table", "Comparison", "Paper (lower is better)", "Ours, same metric", "Verdict",
           "Ours, PSNR (dB)", "Verdict on PSNR", "Ours, SSIM", "Verdict on SSIM"]


def paper_value(table: int, row: str | tuple[str, str], column: str) -> float:
    """The paper's number under `column` in the row whose first cell is `row` (or whose `row[0]` cell is `row[1]`)."""
    t = PAPER_TABLES[table]
    key, cell = (t["columns"][0], row) if isinstance(row, str) else row
    k, col = t["columns"].index(key), t["columns"].index(column)
    for r in t["rows"]:
        if r[k] == cell:
            return float(r[col])
    raise KeyError(f"Table {table} has no row with {key} = {cell!r}")


def _paper(name_a: str, a: float, name_b: str, b: float) -> tuple[str, str | None]:
    """'A x vs B y: B better by z %' and the better side ("a", "b"; None on a tie)."""
    if a == b:
        return f"{name_a} {a:.2f} = {name_b} {b:.2f}", None
    better, name, gap = ("a", name_a, (b - a) / b) if a < b else ("b", name_b, (a - b) / a)
    return f"{name_a} {a:.2f} vs {name_b} {b:.2f}: {name} better by {100 * gap:.0f} %", better


def _sides(name_a: str, a: Seeds, name_b: str, b: Seeds, fmt: str) -> str:
    return f"{name_a} {a.text(fmt)} vs {name_b} {b.text(fmt)}"


def compare(results: str | Path, seeds: Collection[int] | None = None) -> list[dict]:
    """One record per comparison: the table cells (`cells`, in COLUMNS order) and the verdicts by metric, over
    `seeds` (None: every seed evaluated)."""
    results = Path(results)
    out = []
    for table, what, column, split, (name_a, paper_a, ours_a), (name_b, paper_b, ours_b) in COMPARISONS:
        paper_text, paper_better = _paper(name_a, paper_value(table, paper_a, column),
                                          name_b, paper_value(table, paper_b, column))
        ma, mb = (row_metrics(results, row(table, ours, split), seeds) for ours in (ours_a, ours_b))
        record = {"table": table, "comparison": what, "split": split, "sides": (name_a, name_b), "paper_better": paper_better,
                  "verdicts": {}, "cells": [str(table), what, paper_text, "not run", "", "", "", "", ""]}
        if ma and mb:
            cells = [str(table), what, paper_text]
            metric = "rfid" if split == "image" else "rfvd"
            (fa, why_a), (fb, why_b) = feature_metric(ma, metric), feature_metric(mb, metric)
            if fa is None or fb is None:
                cells += [why_a or why_b, ""]
            else:
                record["verdicts"][metric] = verdict(fa, fb, False, paper_better)
                cells += [_sides(name_a, fa, name_b, fb, ".2f"), record["verdicts"][metric]]
            for key, fmt in (("psnr", ".2f"), ("ssim", ".3f")):
                a, b = Seeds([float(m[key]) for m in ma]), Seeds([float(m[key]) for m in mb])
                record["verdicts"][key] = verdict(a, b, True, paper_better)
                record[key] = {"a": a.values, "b": b.values}
                cells += [_sides(name_a, a, name_b, b, fmt), record["verdicts"][key]]
            record["cells"] = cells
        out.append(record)
    return out


def findings(records: list[dict]) -> list[str]:
    """Sentences for the README: which of the paper's findings hold beyond noise on PSNR at this scale."""
    groups = {"paper's way": [], "opposite": [], "within noise": [], "one seed": [], "not run": []}
    for r in records:
        v = r["verdicts"].get("psnr", "not run")
        if v in groups:
            groups[v].append(r)
    words = {
        "paper's way": "Hold beyond noise (the setting the paper found better has the higher PSNR here too)",
        "opposite": "Reversed beyond noise (the setting the paper found worse has the higher PSNR here)",
        "within noise": "Within noise (no difference the seeds can tell apart)",
        "one seed": "Not decided (a side has one seed: `make tables SEEDS=3`)",
        "not run": "Not run"}
    lines = []
    for key, group in groups.items():
        if group:
            lines.append(f"- {words[key]}:")
            lines += [f"  - Table {r['table']}, {r['comparison'].rsplit(', ', 1)[0]}"
                      + (f": {r['split']} PSNR {r['sides'][0]} {Seeds(r['psnr']['a']).text('.2f')} vs {r['sides'][1]} "
                         f"{Seeds(r['psnr']['b']).text('.2f')} dB" if "psnr" in r else "") for r in group]
    return lines
