"""What the benches of our models beside their reference implementations share (reference_dit.py,
reference_latte.py, reference_tokenizer.py; reference_llamagen.py takes the timing loop, the weights' randomiser and
the rates): our diffusion transformers' weights in the references' naming (facebookresearch/DiT's, which
Vchitect/Latte keeps), loaded so that nothing is left over on either side; the check that one forward agrees; one
side's training step; the two sides taking turns, each one's FLOPs and the memory its step adds; the command line,
the JSON report and the page's table.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

from bench.flops import count_flops, gemm_seconds, machine_name, matmul_gflops
from bench.report import add_report_arguments, report_of
from shared.doc_blocks import Measured, joined, write_block
from shared.memory import release_free_heap, rss_bytes
from shared.timing import timed
from shared.training.compile import compiled
from shared.training.precision import autocast
from shared.provenance import stamp

# ----------------------------------------------------------------------------- weights


def randomise(model, vector_mean: float = 0.0) -> None:
    """Every weight drawn around 0 (std 0.02), vectors (norm scales, biases) around `vector_mean`, from a fixed seed."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02 + (vector_mean if p.dim() == 1 else 0.0))


def reference_state(ours) -> dict[str, torch.Tensor]:
    """Our DiT's or Latte's weights under the reference's names (the fused qkv is our q, k, v stacked); an error
    where one of ours has no place there."""
    s = dict(ours.state_dict())
    pairs = {"x_embedder.proj": "patch_embed", "t_embedder.mlp.0": "condition.time_embed.linear_1",
             "t_embedder.mlp.2": "condition.time_embed.linear_2", "final_layer.linear": "final.linear",
             "final_layer.adaLN_modulation.1": "final.adaLN_modulation.1"}
    for i in range(len(ours.blocks)):
        b = f"blocks.{i}."
        pairs |= {b + "attn.proj": b + "attn.to_out.0", b + "mlp.fc1": b + "mlp.net.0.proj",
                  b + "mlp.fc2": b + "mlp.net.2", b + "adaLN_modulation.1": b + "adaLN_modulation.1"}
    out = {f"{r}.{k}": s.pop(f"{o}.{k}") for r, o in pairs.items() for k in ("weight", "bias")}
    out["y_embedder.embedding_table.weight"] = s.pop("condition.label_embed.embedding_table.weight")
    for i in range(len(ours.blocks)):
        b = f"blocks.{i}."
        for k in ("weight", "bias"):
            out[f"{b}attn.qkv.{k}"] = torch.cat([s.pop(f"{b}attn.to_{n}.{k}") for n in "qkv"])
    if s:
        raise RuntimeError(f"weight map incomplete: ours has {sorted(s)} with no place in the reference")
    return out


def load_mapped(ref, state: dict[str, torch.Tensor], fixed: set[str]) -> None:
    """Load `state` into the reference model; only its `fixed` tables (sin-cos positions) may stay its own."""
    missing = ref.load_state_dict(state, strict=False)
    if set(missing.missing_keys) - fixed or missing.unexpected_keys:
        raise RuntimeError(f"weight map incomplete: {missing}")


def agreement(what: str, ours: torch.Tensor, ref: torch.Tensor) -> float:
    """The largest difference of one forward's outputs; an error beyond float tolerance."""
    diff = (ours - ref).abs().max().item()
    if diff > 1e-3 * ref.abs().max().item():
        raise RuntimeError(f"{what}: outputs differ by {diff} with mapped weights")
    return diff


# ----------------------------------------------------------------------------- timing


class Side:
    """One model's training step on its own inputs: its forward, its loss code, backward, gradient clipping where its
    trainer clips, its optimizer."""

    def __init__(self, model, loss, optimizer, precision: str, inputs: tuple, clip: float | None = None):
        self.model, self.loss, self.opt, self.precision = model.train(), loss, optimizer, precision
        self.inputs, self.clip = inputs, clip

    def step(self) -> None:
        with autocast(self.precision, "cpu"):
            loss = self.loss(self.model, *self.inputs)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()


def with_compiled(sides: dict[str, Side]) -> dict[str, Side]:
    """The sides and, for each, its twin under torch.compile ("<name> compiled": the model with the side's own loss
    code compiled, as train.compile does ours, what a user of the reference could do in one line). A twin shares
    its side's model and optimizer, counts the eager step's FLOPs and records its first step's seconds
    (compilation included) as compile_seconds."""
    out = dict(sides)
    for name, side in sides.items():
        twin = Side(side.model, compiled(side.loss), side.opt, side.precision, side.inputs, side.clip)
        twin.flops_step = side.step
        twin.compile_seconds = timed(twin.step, "cpu")
        out[f"{name} compiled"] = twin
    return out


def best_speedup(seconds: dict[str, float]) -> float:
    """The reference's best (eager or compiled) over ours."""
    best = lambda who: min(s for k, s in seconds.items() if k.split()[0] == who)  # noqa: E731
    return best("reference") / best("ours")


def alternate(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Each callable's median seconds over `rounds` runs, the callables taking turns, after one warm-up run each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def take_turns(case: dict, sides: dict[str, Side], rounds: int, difference: float | None,
               replay: bool = True) -> dict:
    """`case` with each side's median step over `rounds` taken in turns (after one warm-up step each), its FLOPs
    (those of its `flops_step` where it has one: a compiled step's eager twin), share of the matmul rate and peak
    memory, the forward's difference and, with a reference, the speed of ours relative to it. With `replay`, our
    step's products are replayed alone too (not for compiled code, whose packed products are not those)."""
    flops = {k: count_flops(getattr(side, "flops_step", side.step)) for k, side in sides.items()}
    seconds = alternate({k: side.step for k, side in sides.items()}, rounds)
    peak = {k: added_peak_gb(side.step) for k, side in sides.items()}
    rate = matmul_rate(case["precision"])
    out = {**case, "rounds": rounds, "median_seconds": seconds, "forward_max_abs_difference": difference,
           "gflop_per_step": {k: f / 1e9 for k, f in flops.items()}, "matmul_gflops": rate,
           "share_of_matmul_rate": {k: flops[k] / s / 1e9 / rate for k, s in seconds.items()},
           "peak_added_gb": peak}
    if replay:
        gemm = gemm_seconds(sides["ours"].step, "cpu")  # our step's matrix products and attention, replayed alone
        out |= {"ours_gemm_seconds": gemm, "ours_gemm_share": gemm / seconds["ours"]}
    compiling = {k: side.compile_seconds for k, side in sides.items() if hasattr(side, "compile_seconds")}
    if compiling:
        out["compile_seconds_by_side"] = compiling
    if "reference" in seconds:
        out["speedup"] = seconds["reference"] / seconds["ours"]
        if compiling:
            out["best_speedup"] = best_speedup(seconds)
        if replay:  # were everything but the products free, ours would run this much faster than the reference
            out["speedup_ceiling"] = seconds["reference"] / out["ours_gemm_seconds"]
    return out


def added_peak_gb(fn: Callable[[], object]) -> float | None:
    """The resident memory one fn() call adds at its peak over what is resident before it (GB): activations,
    gradients, workspace; the weights and optimizer state resident already do not count. The heap's free pages
    are returned first and the peak reset (Linux's clear_refs), so that the sides' calls in one process do not
    share a high-water mark. None where the kernel offers no reset (not Linux)."""
    gc.collect()
    release_free_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
    except OSError:
        return None
    before = rss_bytes("VmRSS")
    fn()
    return (rss_bytes("VmHWM") - before) / 2**30


@lru_cache(maxsize=None)
def matmul_rate(precision: str) -> float:
    """GFLOP/s of this CPU's 2048² matmul in `precision` (measured once a run)."""
    return matmul_gflops("cpu", torch.bfloat16 if precision == "bf16" else torch.float32)


def precisions() -> list[str]:
    """fp32, and bf16 autocast where this CPU multiplies faster in it."""
    return ["fp32"] + (["bf16"] if matmul_rate("bf16") > 1.2 * matmul_rate("fp32") else [])


# ----------------------------------------------------------------------------- command line and report


def parser(doc: str, repo_flag: str, repo_name: str, sizes: dict, batch: int,
           compiled: bool = False) -> argparse.ArgumentParser:
    """The benches' command line; `compiled`: with --compiled (with_compiled's four sides)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(repo_flag, default=None, help=f"a checkout of {repo_name}")
    ap.add_argument("--sizes", nargs="+", default=list(sizes), choices=list(sizes))
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--rounds", type=int, default=10)
    if compiled:
        ap.add_argument("--compiled", action="store_true",
                        help="also each side under torch.compile (its model and loss): four sides taking turns")
    add_report_arguments(ap, None)
    return ap


def checkout(path: str | None, repo_name: str, marker: str, needs: tuple[str, ...] = ()) -> Path | None:
    """The reference's checkout, or None where none is given; an error where `marker` is not in it, or where a
    module its code imports (`needs`: timm, no dependency of ours) is not installed."""
    repo = Path(path) if path else None
    if repo is not None and not (repo / marker).is_file():
        raise SystemExit(f"{repo}: not a checkout of {repo_name} (no {marker})")
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if repo is not None and missing:
        raise SystemExit(f"{repo}: {repo_name}'s code imports {', '.join(missing)}, which is not installed: "
                         f"pip install -e '.[references]'")
    return repo


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def doc_table(report: dict, caption: str, repo_name: str) -> list[str]:
    """The page's table under `caption`: per size and precision, each side's median step and the ratio."""
    first = report["cases"][0]
    lines = [f"{caption}, median of {first['rounds']} steps taken in turns; {report['machine']}, "
             f"{report['threads']} threads; reference: {report['reference']}.", "",
             f"| size | precision | ours (ms) | {repo_name} (ms) | ours vs reference | share of the matmul rate "
             f"(ours / reference) | our products alone: share of our step; the most ours could gain | "
             f"memory a step adds, GB (ours / reference) | forward max diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["cases"]:
        ours, ref = r["median_seconds"]["ours"], r["median_seconds"].get("reference")
        diff, share = r["forward_max_abs_difference"], r.get("share_of_matmul_rate", {})
        cells = ["-", "-"] if ref is None else [_ms(ref), f"{r['speedup']:.2f}x"]
        shares = " / ".join(f"{share[k]:.2f}" for k in ("ours", "reference") if k in share) or "-"
        gemm = (f"{100 * r['ours_gemm_share']:.0f} %" if "ours_gemm_share" in r else "-") + \
            (f"; {r['speedup_ceiling']:.2f}x" if "speedup_ceiling" in r else "")
        if "compile_seconds" in r:  # compiled code's packed products are not replayed
            gemm = f"not replayed (compiled in {r['compile_seconds']:.0f} s)"
        peak = " / ".join("-" if r["peak_added_gb"][k] is None else f"{r['peak_added_gb'][k]:.2f}"
                          for k in ("ours", "reference") if k in r["peak_added_gb"])
        lines.append(f"| {r['size']} | {r['precision']} | {_ms(ours)} | {cells[0]} | {cells[1]} | {shares} | "
                     f"{gemm} | {peak} | {'-' if diff is None else f'{diff:.1e}'} |")
    lines += compiled_table(report["cases"], repo_name)
    rates = {r["precision"]: r["matmul_gflops"] for r in report["cases"] if "matmul_gflops" in r}
    if rates:
        lines += ["", "The shares are of the 2048² matmul rate of the case's precision, measured in the same run ("
                  + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()) + "), for each side's FLOPs "
                  "(torch's FlopCounterMode). The most ours could gain: the reference's step over our step's matrix "
                  "products and attention kernels replayed alone (were everything else free). Memory: the peak "
                  "resident memory one step adds over what is resident before it (weights and optimizer state "
                  "are), each side's peak reset before its step (Linux's clear_refs) after the heap's free pages "
                  "are returned."]
    return lines


def compiled_table(cases: list[dict], repo_name: str) -> list[str]:
    """Each side eager and under torch.compile (the cases measured with --compiled): median steps and the best of
    each side against the other's best; none where no case has compiled sides."""
    names = ("ours", "ours compiled", "reference", "reference compiled")
    rows = [r for r in cases if "compile_seconds_by_side" in r]
    if not rows:
        return []
    lines = ["", f"Each side eager and under torch.compile (its model and loss; compilation is not in the step, its "
                 f"seconds are given), median steps in ms; best against best: {repo_name}'s faster of eager and "
                 f"compiled over ours:", "",
             "| size | precision | ours | ours compiled | reference | reference compiled | best vs best | "
             "compiled in (s), ours / reference |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [_ms(r["median_seconds"][k]) if k in r["median_seconds"] else "-" for k in names]
        best = f"{r['best_speedup']:.2f}x" if "best_speedup" in r else "-"
        compiling = " / ".join(f"{v:.0f}" for v in r["compile_seconds_by_side"].values())
        lines.append(f"| {r['size']} | {r['precision']} | {' | '.join(cells)} | {best} | {compiling} |")
    return lines


def write_report(args, markers: tuple[str, str], doc_lines, measure: Callable[[], tuple[list[dict], Path | None, str,
                                                                                    dict]]) -> dict:
    """The JSON report (bench.report: measured and written to args.out, or args.from_result's), its table in args.doc
    between `markers`, a summary. measure() -> the cases, the reference's checkout (None: our side alone), the scale
    (the scales or sizes of the cases) and what goes in the report after the cases."""
    def measured_now() -> dict:
        rows, repo, scale, extra = measure()
        return {"machine": machine_name(), "threads": torch.get_num_threads(), "scale": scale,
                "reference": str(repo) if repo else "not given: our side alone", "cases": rows, **extra, **stamp()}

    report = report_of(args, measured_now)
    if args.doc:
        measured = Measured(report["scale"], f"{report['machine']} (cpu, {report['threads']} threads)",
                            joined(r["precision"] for r in report["cases"]))
        write_block(args.doc, *markers, doc_lines(report), measured, args.force)
    for r in report["cases"]:
        print(f"{r['size']} {r['precision']}: ours {r['median_seconds']['ours'] * 1000:.0f} ms"
              + (f", reference {r['median_seconds']['reference'] * 1000:.0f} ms, {r['speedup']:.2f}x"
                 if "speedup" in r else ""))
    return report
