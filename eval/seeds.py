"""A table row over seeds: every seed's result of a row, their mean ± std, and when a difference is beyond noise.

Seed 0 of a run is results/<scale>/eval/<run>/<stage>.json, seed k > 0 is .../eval/<run>_seed<k>/<stage>.json
(shared.paths.seeded); `make tables SEEDS=n` makes seeds 0..n-1 and the tables use those (eval.tables --seeds). The rule that calls a difference (NOISE_RULE) is
printed under every table that uses it.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from shared.paths import eval_result

from .experiments import TokenizerRow

ALPHA = 0.05
NOISE_RULE = (f"A difference is called only when Welch's t-test across seeds gives p < {ALPHA} (two-sided; each "
              "seed trains the model from its own initialisation and data order); otherwise it is \"within noise\". "
              "A side with one seed has no spread, so no call is made (\"one seed\").")
RANK_DEFICIENT = "not reported: n={n} items <= d={d} features, the covariance is rank-deficient"


@dataclass
class Seeds:
    """The values of one figure over the seeds that were run."""
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); 0 for one seed."""
        if self.n < 2:
            return 0.0
        return math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (self.n - 1))

    def text(self, fmt: str) -> str:
        if self.n == 1:
            return f"{self.values[0]:{fmt}}"
        return f"{self.mean:{fmt}} ± {self.std:{fmt}} ({self.n} seeds)"


def seed_files(results: Path, row: TokenizerRow, seeds: Collection[int] | None = None) -> list[tuple[int, Path]]:
    """(seed, evaluation file) of a row: seed 0, then seeds 1, 2, ... that exist, in seed order; only those in
    `seeds` where given. (A variant's name never ends in _seed<digits>: tokenizer.train_config refuses it.)"""
    scale, root = results.name, results.parent
    first = eval_result(scale, row.run, row.stage, root)
    found = {int(m.group(1)): p for p in (results / "eval").glob(f"{row.run}_seed*/{row.stage}.json")
             if (m := re.fullmatch(re.escape(row.run) + r"_seed([1-9]\d*)", p.parent.name))}
    files = ([(0, first)] if first.is_file() else []) + [(k, found[k]) for k in sorted(found)]
    return [(k, f) for k, f in files if seeds is None or k in seeds]


def row_metrics(results: Path, row: TokenizerRow, seeds: Collection[int] | None = None) -> list[dict]:
    """The row's split metrics of each seed's evaluation (seeds without that split left out)."""
    out = []
    for _, f in seed_files(results, row, seeds):
        m = json.loads(f.read_text())["metrics"].get(row.split)
        if m is not None:
            out.append(m)
    return out


def feature_metric(metrics: list[dict], name: str) -> tuple[Seeds | None, str | None]:
    """(values over seeds, None), or (None, why) where the Fréchet distance's covariance is rank-deficient."""
    first = metrics[0][name]
    if "full_rank_covariance" in first and not all(m[name]["full_rank_covariance"] for m in metrics):
        return None, RANK_DEFICIENT.format(n=min(first["n"]), d=first["dim"])
    return Seeds([float(m[name]["value"]) for m in metrics]), None


def call(a: Seeds, b: Seeds, higher_is_better: bool) -> str | None:
    """Which side is better beyond noise ("a" or "b"), "noise", or None when a side has a single seed."""
    if a.n < 2 or b.n < 2:
        return None
    if a.std == 0 and b.std == 0:
        same = a.mean == b.mean
        return "noise" if same else ("a" if (a.mean > b.mean) == higher_is_better else "b")
    p = stats.ttest_ind(a.values, b.values, equal_var=False).pvalue
    if not p < ALPHA:
        return "noise"
    return "a" if (a.mean > b.mean) == higher_is_better else "b"


def verdict(a: Seeds, b: Seeds, higher_is_better: bool, paper_better: str | None) -> str:
    """"paper's way", "opposite" or "within noise" for two sides (paper_better: "a", "b", or None on a tie)."""
    winner = call(a, b, higher_is_better)
    if winner is None:
        return "one seed"
    if winner == "noise":
        return "within noise"
    if paper_better is None:
        return "paper: a tie"
    return "paper's way" if winner == paper_better else "opposite"
