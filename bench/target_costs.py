"""What each make target costs at a scale, how much disk its outputs take and where they land: the README's table of
targets, drawn from measurements, never typed.

    python -m bench.target_costs --scale small --root . --out docs/results/target_costs_small.json
    python -m bench.target_costs --from-result docs/results/target_costs_small.json --doc README.md

Measuring (--out) reads a checkout's runs (--root): each target's wall time from the result file that records it (the
tokenizer's and each generator's: results/<scale>/<name>.json), the disk its outputs take (their size on disk, as
`du` counts it) and the time `make docs` takes (bench.docs rendering a copy of this checkout's pages from --root's
results). A target without a result file, or whose outputs are not on disk, is "not measured". The table goes
between the page's markers (BEGIN / END).
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import add_report_arguments, report_of
from shared.atomic import read_json_object
from shared.doc_blocks import from_results, joined, write_block

BEGIN = "<!-- make targets: written by `python -m bench.target_costs` from its JSON; do not edit -->"
END = "<!-- end of make targets -->"
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Output:
    """A path a target writes ({scale}; {source}: the data's folder name, `embedded` for the embedded data)."""
    path: str
    shared: bool = False  # written by another target too: its disk counted beneath the table, not in the row
    tracked: bool = False  # a file of the repository the target rewrites: no disk of its own


@dataclass(frozen=True)
class Target:
    does: str
    outputs: tuple[Output, ...]
    timed_by: str | None = None  # the result file recording its wall time; "docs": timed here


def _generator(does: str, name: str, codes: tuple[str, ...] = (), judged: bool = True) -> Target:
    return Target(does, (*(Output(f"runs/{{scale}}/codes/{c}", shared=c.endswith("clips")) for c in codes),
                         Output(f"runs/{{scale}}/{name}"), Output(f"results/{{scale}}/eval/{name}"),
                         Output(f"results/{{scale}}/{name}.json"),
                         *((Output("results/{scale}/classifiers", shared=True),) if judged else ())),
                  f"results/{{scale}}/{name}.json")


PAGES = tuple(Output(p, tracked=True) for p in ("README.md", "docs/*.md", "TABLES.md", "tables.json", "tables.csv"))
TARGETS = {
    "setup": Target("the virtual environment with the project installed (every target makes it first)",
                    (Output(".venv"),)),
    "test": Target("the test suite, tiny configs (`make test-fast`: without the slow end-to-end tests)", ()),
    "tokenizer": Target("the tokenizer's three stages (image, joint, kl) and its held-out figures",
                        (Output("runs/{scale}/tokenizer"), Output("results/{scale}/tokenizer.json")),
                        "results/{scale}/tokenizer.json"),
    "lm-imagenet": _generator("the LM on the photos' VQ codes: extraction, training, sampling, evaluation",
                              "lm_imagenet", ("{source}_images",)),
    "lm-ucf": _generator("the LM on the clips' VQ codes, class-conditional", "lm_ucf", ("{source}_clips",)),
    "lm-k600": _generator("frame prediction: the LM continuing held-out clips", "lm_k600",
                          ("{source}_clips_val", "{source}_clips"), judged=False),
    "dit-imagenet": _generator("DiT on the photos' VAE latents (kept in its run folder)", "dit_imagenet"),
    "latte-ucf": _generator("Latte on the clips' VAE latents (kept in its run folder)", "latte_ucf"),
    "tables": Target("the ablation runs of Tables 7-10 with SEEDS seeds, their evaluations and the tables",
                     (Output("runs/{scale}/tokenizer_*"), Output("results/{scale}/tokenizer_*.json"),
                      Output("results/{scale}/eval/tokenizer*"), *PAGES[2:],
                      Output("docs/evaluation.md", tracked=True))),
    "bench": Target("speed and memory beside the reference code; the no-network code baselines",
                    (Output("docs/results/speed/*.json", tracked=True), Output("bench/out/linear_codes.json"))),
    "dry-run": Target("every paper target at its real shapes, loader throughput, the cost plan",
                      (Output("bench/out/dry_run.json"), Output("bench/out/data_throughput.json"),
                       Output("bench/out/cost_plan_{scale}.md"))),
    "docs": Target("every generated block of the pages, from the result files, measuring nothing", PAGES, "docs"),
}


def disk_bytes(pattern: str) -> int | None:
    """The size on disk of every file under the paths `pattern` matches (du's count: allocated blocks); None where
    it matches nothing."""
    paths = glob.glob(pattern)
    if not paths:
        return None
    files = [Path(p) for p in paths if Path(p).is_file()] + [
        Path(d) / f for p in paths if Path(p).is_dir() for d, _, names in os.walk(p) for f in names]
    return sum(f.lstat().st_blocks * 512 for f in files)


def docs_seconds(scale: str, results: Path) -> dict:
    """`make docs` timed: `python -m bench.docs` (its start and imports included) rewriting a copy of this checkout's
    pages from `results`."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree("docs", root / "docs")
        for name in ("README.md", "TABLES.md", "tables.json", "tables.csv"):
            shutil.copy(name, root / name)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "bench.docs", "--root", tmp, "--results", str(results.resolve()),
                              "--scale", scale, "--keep-missing"], capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if run.returncode:
        raise SystemExit(f"make docs failed, so it is not timed:\n{run.stderr}")
    return {"seconds": seconds, "blocks_left": run.stdout.count("left as it is: ")}


def measure(root: Path, scale: str) -> dict:
    fill = lambda path: path.format(scale=scale, source="embedded")  # noqa: E731
    targets = {}
    for name, target in TARGETS.items():
        disk = {fill(o.path): disk_bytes(str(root / fill(o.path))) for o in target.outputs if not o.tracked}
        timed = None
        if target.timed_by == "docs":
            timed = docs_seconds(scale, root / "results")
        elif target.timed_by and (root / fill(target.timed_by)).is_file():
            result = read_json_object(root / fill(target.timed_by), "result file")
            stages = result.get("stages", {}).values()  # the tokenizer's: a thread count per stage
            seconds = result["wall_seconds"]
            timed = {"seconds": sum(v for v in seconds.values() if v) if isinstance(seconds, dict) else seconds,
                     "parts": seconds if isinstance(seconds, dict) else None, "from": fill(target.timed_by),
                     "machine": result.get("machine"),
                     "threads": [result["threads"]] if "threads" in result else [s.get("threads") for s in stages],
                     "precision": [result["precision"]] if "precision" in result
                     else [s.get("precision") for s in stages]}
        targets[name] = {"disk_bytes": disk, "timed": timed}
    return {"scale": scale, "targets": targets}


def _shown(path: str) -> str:
    return path.format(scale="<scale>", source="<source>")


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def _time(timed: dict | None) -> str:
    if timed is None:
        return NOT_MEASURED
    if "from" not in timed:  # make docs, timed by --measure
        return f"{timed['seconds']:.0f} s" + (f" ({timed['blocks_left']} blocks whose result files are missing left "
                                             f"as they were)" if timed["blocks_left"] else "")
    parts = timed["parts"] or {}
    minutes = " + ".join(f"{k} {v / 60:.1f}" for k, v in parts.items() if v)
    return (f"{timed['seconds'] / 60:.1f} min" + (f" ({minutes})" if len(parts) > 1 else "")
            + f"; {timed['machine']}, threads {joined(timed['threads'])} (`{timed['from']}`)")


def table_lines(report: dict) -> list[str]:
    scale = report["scale"]
    lines = [f"| target | what it does | wall time at `{scale}` | disk | where its outputs land |",
             "|---|---|---|---|---|"]
    shared: dict[str, int | None] = {}
    for name, target in TARGETS.items():
        measured = report["targets"][name]
        own = {o.path: measured["disk_bytes"].get(o.path.format(scale=scale, source="embedded"))
               for o in target.outputs if not (o.tracked or o.shared)}
        shared.update({o.path: measured["disk_bytes"].get(o.path.format(scale=scale, source="embedded"))
                       for o in target.outputs if o.shared})
        found = [n for n in own.values() if n is not None]
        missing = [p for p, n in own.items() if n is None]
        disk = ("none kept" if not own else NOT_MEASURED if not found else _size(sum(found))
                + (f" ({', '.join(f'`{_shown(p)}`' for p in missing)} not on disk)" if missing else ""))
        where = ", ".join(f"`{_shown(o.path)}`" + (" [tracked]" if o.tracked else " (shared)" if o.shared else "")
                          for o in target.outputs)
        lines.append(f"| `make {name}` | {target.does} | {_time(measured['timed'])} | {disk} | {where or '-'} |")
    sizes = [f"`{_shown(p)}` {_size(n)}" for p, n in shared.items() if n is not None]
    return lines + ([""] + [f"Written by more than one target: {'; '.join(sizes)}."] if sizes else [])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_report_arguments(ap, None)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--root", default=".", help="the checkout whose runs/ and results/ are measured")
    args = ap.parse_args(argv)
    report = report_of(args, lambda: measure(Path(args.root), args.scale))
    if args.doc:
        timed = [t["timed"] for t in report["targets"].values() if t["timed"] and "from" in t["timed"]]
        measured = from_results(report["scale"], (t["machine"] for t in timed), (n for t in timed for n in t["threads"]),
                                (p for t in timed for p in t["precision"]))
        write_block(args.doc, BEGIN, END, table_lines(report), measured, args.force)
    return report

if __name__ == "__main__":
    main()
