"""`make docs`: every generated block of the docs pages, and TABLES.md, rewritten from the result files on disk by
the command that writes it, measuring nothing.

    python -m bench.docs --scale small                  # README.md, docs/*.md, TABLES.md (tables.json, tables.csv)
    python -m bench.docs --scale small --keep-missing   # blocks whose result files are missing are left as they are

BLOCKS lists each block (shared.doc_blocks: the lines between two markers of a page), the command that writes it
and the result files it is drawn from: results/<scale>/ (the tokenizer's and the generators' result files) and the
measurements kept in docs/results/. Nothing is written where a page holds a block BLOCKS does not list, where
BLOCKS lists a block its page lacks, or where a block's result files are missing: the run stops naming each, and
for a missing file the command that makes it (--keep-missing: those blocks are left as they are, the rest
rewritten). Rendering is deterministic, so a second run changes nothing. A new block needs its entry here
(tests/test_docs.py checks that every marker has one).
"""
from __future__ import annotations

import argparse
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import (cost_plan, diffusion_speed, lm_speed, readme_speed, reference_dit, reference_latte,
                   reference_llamagen, reference_tokenizer, target_costs, tokenizer_motion, tokenizer_tiling)
from eval import generator_pages, motion_stages, protocol_page, tables, tokenizer_report
from eval.experiments import GENERATION_ROWS
from shared.doc_blocks import begin_markers

PAGES = ("README.md", "docs/*.md")
SPEED = "docs/results/speed"  # `make bench` writes the reports its blocks are drawn from here
DRY_RUN = "docs/results/dry_run_paper"  # and `make dry-run SCALE=paper` its measurements
RESULTS = "{results}/{scale}"


@dataclass(frozen=True)
class Block:
    """A generated block: its page and first marker, the command that writes it (a module's main and its arguments)
    and the result files it is drawn from. In paths and arguments {root} is the checkout, {results} the results
    folder, {scale} the scale, {page} the page; an argument with a * is the sorted list of the files it matches."""
    page: str
    begin: str
    main: Callable[[list[str]], object]
    args: tuple[str, ...]
    inputs: tuple[str, ...] = ()  # each must exist (a pattern: at least one file)
    any_of: tuple[str, ...] = ()  # at least one must exist (each generator's result file: a missing one is "not run")
    made_by: str = ""  # the command that makes the inputs

    @property
    def name(self) -> str:
        return self.begin.removeprefix("<!-- ").split(":")[0]


def _generator_results(targets: list[str] | None = None) -> tuple[str, ...]:
    return tuple(f"{RESULTS}/{row.name}.json" for row in GENERATION_ROWS if targets is None or row.target in targets)


def _generator_block(page: str, targets: list[str]) -> Block:
    return Block(page, generator_pages.BEGIN, generator_pages.main,
                 ("--scale", "{scale}", "--results", "{results}", "--page", "{page}", "--target", *targets),
                 any_of=_generator_results(targets), made_by=" / ".join(f"make {t}" for t in targets))


def _speed_block(page: str, module, name: str) -> Block:
    return Block(page, module.DOC_BEGIN, module.main, ("--from-result", f"{{root}}/{SPEED}/{name}.json", "--doc", "{page}"),
                 inputs=(f"{SPEED}/{name}.json",), made_by="make bench")


GENERATORS = [row.target for row in GENERATION_ROWS]
LM_TARGETS = [t for t in GENERATORS if t.startswith("lm-")]
BLOCKS = [
    Block("README.md", tokenizer_report.BEGIN, tokenizer_report.main,
          ("--results", f"{RESULTS}/tokenizer.json", "--readme", "{page}"), inputs=(f"{RESULTS}/tokenizer.json",),
          made_by="make tokenizer SCALE={scale}"),
    Block("README.md", target_costs.BEGIN, target_costs.main,
          ("--from-result", "{root}/docs/results/target_costs_{scale}.json", "--doc", "{page}"),
          inputs=("docs/results/target_costs_{scale}.json",),
          made_by="python -m bench.target_costs --scale {scale} --root . --out docs/results/target_costs_{scale}.json"),
    Block("README.md", generator_pages.SUMMARY_BEGIN, generator_pages.main,
          ("--scale", "{scale}", "--results", "{results}", "--page", "{page}", "--summary"),
          any_of=_generator_results(), made_by="the generator targets (make lm-imagenet ...)"),
    _generator_block("docs/lm_generation.md", LM_TARGETS),
    # the sampling sweep's files were measured at `small`
    Block("docs/lm_generation.md", generator_pages.SWEEP_BEGIN, generator_pages.main,
          ("--scale", "small", "--page", "{page}", "--sampling-sweep", "{root}/docs/results/lm_sampling"),
          inputs=("docs/results/lm_sampling/*.json",), made_by="python -m bench.lm_sampling_sweep (its docstring)"),
    _speed_block("docs/lm_generation.md", lm_speed, "lm_speed"),
    _generator_block("docs/diffusion_generation.md", [t for t in GENERATORS if t not in LM_TARGETS]),
    _speed_block("docs/diffusion_generation.md", diffusion_speed, "diffusion_speed"),
    # with TABLES.md, tables.json and tables.csv: the generator tables from their result files, the rest as
    # tables.json keeps it (make tables writes it from every tokenizer run's evaluation)
    Block("docs/evaluation.md", tables.README_BEGIN, tables.main,
          ("--scale", "{scale}", "--results", "{results}", "--out", "{root}", "--generators-only"),
          inputs=("tables.json",), any_of=_generator_results(), made_by="make tables SCALE={scale}"),
    Block("docs/speed.md", readme_speed.BEGIN, readme_speed.main,
          ("--bench", f"{{root}}/{SPEED}/tokenizer_speed.json", "--readme", "{page}"),
          inputs=(f"{SPEED}/tokenizer_speed.json",), made_by="make bench"),
    _speed_block("docs/speed.md", reference_tokenizer, "reference_tokenizer"),
    _speed_block("docs/speed.md", reference_dit, "reference_dit"),
    _speed_block("docs/speed.md", reference_latte, "reference_latte"),
    _speed_block("docs/speed.md", reference_llamagen, "reference_llamagen"),
    Block("docs/tokenizer.md", tokenizer_report.COMPARE_BEGIN, tokenizer_report.main,
          ("--compare", "{root}/docs/results/patch_grid/*.json", "--stage", "image", "--readme", "{page}"),
          inputs=("docs/results/patch_grid/*.json",), made_by="the runs docs/tokenizer.md describes"),
    Block("docs/tokenizer.md", motion_stages.BEGIN, motion_stages.main,
          ("--from-result", f"{RESULTS}/motion_stages.json", "--page", "{page}"),
          inputs=(f"{RESULTS}/motion_stages.json",), made_by="python -m eval.motion_stages (docs/tokenizer.md)"),
    Block("docs/tokenizer.md", tokenizer_motion.BEGIN, tokenizer_motion.main,
          ("--json", "{root}/docs/results/motion_codes.json", "--page", "{page}"),
          inputs=("docs/results/motion_codes.json",), made_by="python -m bench.tokenizer_motion (docs/tokenizer.md)"),
    # both parts from one report; a part it does not hold (the paper shapes, until measured) leaves its block as it is
    *(Block("docs/tokenizer.md", begin, tokenizer_tiling.main,
            ("--from-result", "{root}/docs/results/tokenizer_tiling.json", "--doc", "{page}"),
            inputs=("docs/results/tokenizer_tiling.json",),
            made_by="python -m bench.tokenizer_tiling --part small / --part paper (docs/tokenizer.md)")
      for begin in (tokenizer_tiling.SMALL_BEGIN, tokenizer_tiling.PAPER_BEGIN)),
    *(Block("docs/cost_plan.md", begin, cost_plan.main,
            ("--dry-run", f"{{root}}/{DRY_RUN}/dry_run.json", "--data", f"{{root}}/{DRY_RUN}/data_throughput.json",
             "--doc", "{page}"),
            inputs=(f"{DRY_RUN}/dry_run.json", f"{DRY_RUN}/data_throughput.json"), made_by="make dry-run SCALE=paper")
      for begin in (cost_plan.BEGIN, cost_plan.LOADER_BEGIN)),
    # the whole page, from the protocol registry (no result file)
    Block("docs/protocols.md", protocol_page.BEGIN, protocol_page.main, ("--out", "{page}")),
]


def pages(root: Path) -> list[Path]:
    return sorted({p for pattern in PAGES for p in root.glob(pattern)})


def unlisted(root: Path) -> list[str]:
    """Blocks of the pages BLOCKS does not list, and blocks BLOCKS lists that their pages lack."""
    listed = {(b.page, b.begin) for b in BLOCKS}
    found = {(p.relative_to(root).as_posix(), m) for p in pages(root) for m in begin_markers(p)}
    return ([f"{page}: its block {begin!r} has no entry in bench/docs.py's BLOCKS: add the command that writes it"
             for page, begin in sorted(found - listed)]
            + [f"{page}: has no block {begin!r}, which bench/docs.py's BLOCKS lists" for page, begin in
               sorted(listed - found)])


def missing_inputs(block: Block, root: Path, fill: Callable[[str], str]) -> list[str]:
    """The block's result files that are not on disk."""
    exists = lambda pattern: bool(glob.glob(str(root / fill(pattern))))  # noqa: E731
    out = [fill(p) for p in block.inputs if not exists(p)]
    if block.any_of and not any(exists(p) for p in block.any_of):
        out.append(" or ".join(fill(p) for p in block.any_of))
    return out


def render(root: Path, results: Path, scale: str, keep_missing: bool = False) -> list[str]:
    """Every block rewritten by its command (each command run once); the blocks left as they are (keep_missing)."""
    problems = unlisted(root)
    if problems:
        raise SystemExit("error: " + "\n".join(problems))
    kept, commands = [], {}
    for block in BLOCKS:
        fill = lambda text: text.format(root=root, results=results, scale=scale, page=root / block.page)  # noqa: E731, B023
        missing = missing_inputs(block, root, fill)
        if missing:
            kept.append(f"{block.page}, block '{block.name}': {', '.join(missing)} missing ({fill(block.made_by)} "
                        f"makes it)")
            continue
        args = [a for arg in block.args
                for a in (sorted(glob.glob(fill(arg))) if "*" in arg else [fill(arg)])]
        commands.setdefault((block.main, tuple(args)), block)
    if kept and not keep_missing:
        raise SystemExit("error: nothing written; these blocks' result files are missing (pass --keep-missing, "
                         "make docs KEEP_MISSING=1, to leave them as they are and rewrite the rest):\n" + "\n".join(kept))
    for (main, args), block in commands.items():
        print(f"{block.page}, block '{block.name}': python -m {main.__module__} {' '.join(args)}")
        main(list(args))
    return kept


def main(argv=None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", help="the scale of results/<scale>/ the blocks are drawn from")
    ap.add_argument("--root", default=".", help="the checkout whose pages are rewritten")
    ap.add_argument("--results", default=None, help="the results folder (default: <root>/results)")
    ap.add_argument("--keep-missing", action="store_true",
                    help="leave the blocks whose result files are missing as they are; rewrite the rest")
    args = ap.parse_args(argv)
    root = Path(args.root)
    kept = render(root, Path(args.results) if args.results else root / "results", args.scale, args.keep_missing)
    for line in kept:
        print(f"left as it is: {line}")
    return kept


if __name__ == "__main__":
    main()
