"""The GPU check: what a CUDA machine lent for minutes should measure, in one command of at most 8 minutes; the same
code at `tiny` shapes on a CPU in seconds (the test runs that).

    bench/gpu_check.sh                                   # make gpu-check: CUDA, paper shapes, bench/out/gpu_check.json
    python -m bench.gpu_check --scale tiny --out /tmp/gpu_check.json --eager-only        # the CPU path, tiny

Parts, in this order (the ones that fit the time left: --budget seconds; the JSON is written after every case, so
that a run cut short keeps what it measured):
  dry_run    each target of the paper dry run (bench/dry_run.py: the tokenizer's three stages, the LMs of each size on
             image and clip sequences, DiT-XL/2, Latte-XL/2) at its real shape and per-process batch: seconds per
             training step (forward, loss, backward, optimizer), its FLOPs (counted) and its MFU: FLOPs per second
             over the GPU's dense bf16 peak (PEAK_FLOPS, by the GPU's name) and over the 2048² matmul rate measured
             here (the dry run's figure; a CPU's only one)
  train      our training step eager and compiled (shared.training.compile: torch.compile over the model and loss),
             the two in turns, for DiT-B/2 and Latte-B/2 (8-channel 32 x 32 latents, Latte 5 latent frames) and the LM
             at LlamaGen's GPT-B shape (256 codes of ImageNet's 8,192 + a class token); compile seconds, and after
             how many steps the compiled step has paid for its compilation
  decode     the LM's guided sampling (guidance 4, one doubled batch) at GPT-B, eager and with the compiled decode
             step over a static cache: seconds per token, and whether greedy decoding gives the same codes
  tokenizer  encode + decode of a 256² image and a 17-frame 256² clip by the paper-shaped tokenizer, eager and
             through compile_for_inference
Precision: bf16 autocast on CUDA, fp32 on a CPU (shared.training.precision's default). At --scale tiny the models
and inputs are the tiny configs' (batch 1-2), and --eager-only leaves out every compiled side (torch.compile takes
tens of seconds per graph on a CPU).
The reference implementations' benches (bench/reference_*.py) run on a CPU and are not part of this check.
"""
from __future__ import annotations

import argparse
import copy
import gc
import time
from pathlib import Path
from typing import Callable

import torch

from bench.flops import DTYPES, count_flops, machine_name, matmul_gflops
from shared.atomic import atomic_write_json
from shared.timing import best_in_turns, timed
from shared.training.compile import compiled
from shared.training.precision import autocast, choose_precision

PEAK_FLOPS = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12), ("L40S", 362e12))
ROUNDS = 3  # timed steps of each side, in turns, after the first
DIFFUSION_B2 = {"hidden_size": 768, "depth": 12, "num_heads": 12}  # DiT's B/2 (Latte-B: the same widths)


def peak_flops(device: str) -> float | None:
    """The GPU's dense bf16 peak from its name; None on a CPU or an unknown GPU."""
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_FLOPS if key in name), None)


class Check:
    """The report, written after every case; the time left of the budget."""

    def __init__(self, out: Path, scale: str, device: str, precision: str, budget: float):
        self.out, self.scale, self.device, self.precision = out, scale, device, precision
        self.deadline = time.monotonic() + budget
        self.rate = matmul_gflops(device, DTYPES[precision]) * 1e9
        self.peak = peak_flops(device)
        self.report = {"scale": scale, "device": device, "gpu": torch.cuda.get_device_name() if device != "cpu" else None,
                       "machine": machine_name(), "precision": precision, "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "matmul_flops_per_s": self.rate, "peak_flops": self.peak,
                       "budget_seconds": budget, "parts": {}}

    def case(self, part: str, name: str, fn: Callable[[], dict], needs: float) -> None:
        """Run one case (`needs`: the seconds it takes at most, by the first runs) unless the budget is spent; an
        error is recorded, and the check goes on."""
        cases = self.report["parts"].setdefault(part, {})
        left = self.deadline - time.monotonic()
        if left < needs:
            cases[name] = {"skipped": f"{max(left, 0):.0f} s of the budget left, the case needs up to {needs:.0f} s"}
        else:
            start = time.monotonic()
            try:
                cases[name] = fn()
            except Exception as exc:  # one case that fails (out of memory, a compiler error) leaves the others
                cases[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            cases[name]["wall_seconds"] = time.monotonic() - start
            release(self.device)
        print(f"{part} {name}: {cases[name]}", flush=True)
        atomic_write_json(self.out, self.report)

    def needs(self, eager_only: bool, cuda_compiled: float) -> float:
        """The seconds a case takes at most, as the first runs took them: a compiled case on CUDA `cuda_compiled`,
        on a CPU (tiny) 60; an eager one 20 on CUDA, 10 on a CPU."""
        cuda = self.device.startswith("cuda")
        if eager_only:
            return 20 if cuda else 10
        return cuda_compiled if cuda else 60

    def mfu(self, flops: float, seconds: float) -> dict:
        return {"flops_per_step": flops, "flops_per_s": flops / seconds,
                "mfu": self.peak and flops / seconds / self.peak, "fraction_of_matmul_rate": flops / seconds / self.rate}


def release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


# ----------------------------------------------------------------------------- dry run targets


def dry_run_part(check: Check) -> None:
    from bench.dry_run import targets

    ctx = lambda: autocast(check.precision, check.device)  # noqa: E731
    batch = None if check.device.startswith("cuda") else 1  # the dry run's: the config's per-process batch on CUDA
    for name, build in targets(check.scale).items():
        def run(build=build) -> dict:
            torch.manual_seed(0)
            built = build(check.device, ctx, batch)
            flops = count_flops(lambda: built.step(0))
            seconds = min(timed(lambda i=i: built.step(i), check.device) for i in range(1, 1 + ROUNDS))
            return {"what": built.what, "seconds_per_step": seconds, **check.mfu(flops, seconds),
                    "peak_memory_gb": peak_gb(check.device)}

        check.case("dry_run", name, run, needs=check.needs(True, 20))


# ----------------------------------------------------------------------------- training steps, eager and compiled


def train_cases(scale: str, device: str) -> dict[str, Callable[[], tuple]]:
    """name -> builder of (model, loss(model-free inputs) -> (loss, terms), inputs, what) on `device`."""
    from diffusion_generation.config import DiffusionConfig, ModelConfig, experiment_config
    from diffusion_generation.diffusion import GaussianDiffusion
    from diffusion_generation.models import build_model
    from lm_generation.config import GPTShape, lm_config
    from lm_generation.model import CodeLayout, build_lm, lm_inputs

    paper = scale != "tiny"

    def diffusion(kind: str) -> tuple:
        tiny = experiment_config("tiny", kind).model
        model_cfg = ModelConfig(kind=kind, num_classes=1000 if kind == "dit" else 101, **DIFFUSION_B2) if paper else tiny
        model = build_model(model_cfg).to(device)
        grid, batch = (32, 32 if kind == "dit" else 4) if paper else (4, 2)
        shape = (8, grid, grid) if kind == "dit" else (8, 5 if paper else 2, grid, grid)
        g = torch.Generator().manual_seed(0)
        x, noise = (torch.randn(batch, *shape, generator=g).to(device) for _ in range(2))
        t = torch.randint(0, 1000, (batch,), generator=g).to(device)
        y = torch.randint(0, model_cfg.num_classes, (batch,), generator=g).to(device)
        diff = GaussianDiffusion(DiffusionConfig())

        def loss(x, t, y, noise):  # diffusion_generation.train's step loss
            terms = {k: v.mean() for k, v in diff.training_losses(model, x, t, y, noise).items()}
            return terms["loss"], terms

        return model, loss, (x, t, y, noise), f"{'B/2' if paper else 'tiny'}, batch {batch} x latents {list(shape)}"

    def lm() -> tuple:
        shape = GPTShape(layers=12, heads=12, width=768, intermediate=2048) if paper else lm_config("tiny").model
        layout = CodeLayout(codebook_size=8192 if paper else 256, num_classes=1000, grid=(1, 16, 16) if paper else (1, 4, 4),
                            size=(1, 256, 256) if paper else (1, 32, 32))
        model = build_lm(shape, layout).to(device)
        batch = 32 if paper else 2
        g = torch.Generator().manual_seed(0)
        codes = torch.randint(0, layout.codebook_size, (batch, *layout.grid), generator=g).to(device)
        labels = torch.randint(0, layout.num_classes, (batch,), generator=g).to(device)
        ids, targets = lm_inputs(codes, labels, layout)

        def loss(ids, targets):  # lm_generation.train's step loss
            return model(input_ids=ids, labels=targets).loss, {}

        return model, loss, (ids, targets), f"{'GPT-B' if paper else 'tiny'}, batch {batch} x {layout.seq_len} tokens"

    return {"dit": lambda: diffusion("dit"), "latte": lambda: diffusion("latte"), "lm": lm}


def train_part(check: Check, eager_only: bool) -> None:
    for name, build in train_cases(check.scale, check.device).items():
        def run(build=build) -> dict:
            torch.manual_seed(0)
            model, loss, inputs, what = build()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # the trainers' fused AdamW

            def step(fn) -> None:
                with autocast(check.precision, check.device):
                    value, _ = fn(*inputs)
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()

            flops = count_flops(lambda: step(loss))
            sides = {"eager": lambda: step(loss)}
            out = {"what": what}
            if not eager_only:
                fast = compiled(loss)
                out["compile_seconds"] = timed(lambda: step(fast), check.device)  # the first call: compilation
                sides["compiled"] = lambda: step(fast)
            seconds = best_in_turns(sides, check.device, ROUNDS)
            out |= {"seconds_per_step": seconds, **check.mfu(flops, min(seconds.values())),
                    "peak_memory_gb": peak_gb(check.device)}
            if "compiled" in seconds:
                gain = seconds["eager"] - seconds["compiled"]
                out["speedup"] = seconds["eager"] / seconds["compiled"]
                out["steps_to_repay_compilation"] = out["compile_seconds"] / gain if gain > 0 else None
            return out

        check.case("train", name, run, needs=check.needs(eager_only, 90))


# ----------------------------------------------------------------------------- the LM's decode step


def decode_part(check: Check, eager_only: bool) -> None:
    from lm_generation.config import GPTShape, lm_config
    from lm_generation.model import CodeLayout, build_lm
    from lm_generation.sampling import sample_codes

    paper = check.scale != "tiny"

    def run() -> dict:
        shape = GPTShape(layers=12, heads=12, width=768, intermediate=2048) if paper else lm_config("tiny").model
        layout = CodeLayout(codebook_size=8192 if paper else 256, num_classes=1000, grid=(1, 16, 16) if paper else (1, 4, 4),
                            size=(1, 256, 256) if paper else (1, 32, 32))
        torch.manual_seed(0)
        model = build_lm(shape, layout).to(check.device).eval()
        with torch.no_grad():
            model.lm_head.weight.normal_(std=0.02)  # not the zero head of a fresh LM: greedy codes that differ
        labels = torch.arange(16 if paper else 2) % layout.num_classes
        tokens = layout.num_codes * len(labels)

        def sampled(compile: bool, **kw) -> torch.Tensor:
            with autocast(check.precision, check.device):
                return sample_codes(model, labels, guidance_scale=4.0, seed=0, compile=compile, **kw)

        sides = {"eager": lambda: sampled(False)}
        out = {"what": f"{'GPT-B' if paper else 'tiny'}, {len(labels)} samples x {layout.num_codes} codes, guidance 4 "
                       f"(a doubled batch)"}
        if not eager_only:
            out["compile_seconds"] = timed(lambda: sampled(True), check.device)
            sides["compiled"] = lambda: sampled(True)
            out["greedy_codes_equal"] = bool(torch.equal(sampled(False, top_k=1), sampled(True, top_k=1)))
        seconds = best_in_turns(sides, check.device, 2)
        out |= {"seconds_per_run": seconds, "tokens_per_s": {k: tokens / s for k, s in seconds.items()}}
        if "compiled" in seconds:
            out["speedup"] = seconds["eager"] / seconds["compiled"]
        return out

    check.case("decode", "lm", run, needs=check.needs(eager_only, 90))


# ----------------------------------------------------------------------------- the tokenizer


def tokenizer_part(check: Check, eager_only: bool) -> None:
    from tokenizer import OmniTokenizer
    from tokenizer.train_config import train_config

    paper = check.scale != "tiny"
    frames_of_clip = 17 if paper else train_config("tiny").data.num_frames
    side = 256 if paper else 32
    for name, frames in (("image", 1), ("clip", frames_of_clip)):
        def run(frames=frames) -> dict:
            torch.manual_seed(0)
            model = OmniTokenizer.from_scale("paper" if paper else "tiny").to(check.device).eval()
            x = torch.empty(1, 3, frames, side, side, device=check.device).uniform_(-1, 1)

            def call(m) -> torch.Tensor:
                with torch.inference_mode(), autocast(check.precision, check.device):
                    return m.decode(m.encode(x).latents).sample

            flops = count_flops(lambda: call(model))
            sides = {"eager": lambda: call(model)}
            out = {"what": f"encode + decode of 1 x {frames} x {side}²"}
            if not eager_only:
                fast = copy.deepcopy(model).compile_for_inference()
                out["compile_seconds"] = timed(lambda: call(fast), check.device)
                sides["compiled"] = lambda: call(fast)
            seconds = best_in_turns(sides, check.device, ROUNDS)
            out |= {"seconds_per_call": seconds, **check.mfu(flops, min(seconds.values())),
                    "peak_memory_gb": peak_gb(check.device)}
            if "compiled" in seconds:
                out["speedup"] = seconds["eager"] / seconds["compiled"]
            return out

        check.case("tokenizer", name, run, needs=check.needs(eager_only, 60))


PARTS = {"dry_run": lambda check, eager_only: dry_run_part(check), "train": train_part, "decode": decode_part,
         "tokenizer": tokenizer_part}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default=None, help="paper (the real shapes; the default on CUDA) or tiny (on a CPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--budget", type=float, default=450.0, help="seconds; a case that would not fit is skipped")
    ap.add_argument("--eager-only", action="store_true", help="leave out the compiled sides")
    ap.add_argument("--out", default="bench/out/gpu_check.json")
    args = ap.parse_args(argv)
    scale = args.scale or ("paper" if args.device.startswith("cuda") else "tiny")
    precision, _ = choose_precision(None, args.device)
    check = Check(Path(args.out), scale, args.device, precision, args.budget)
    for part in args.parts:
        PARTS[part](check, args.eager_only)
    return check.report


if __name__ == "__main__":
    main()
