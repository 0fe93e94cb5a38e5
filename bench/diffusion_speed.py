"""Training and sampling speed of our DiT / Latte (diffusion_generation/) against diffusers' DiTTransformer2DModel.

For each case: training steps/s (forward, MSE + VB loss, backward, and the AdamW step at the small shapes) and
sampling seconds per image / clip (denoiser forwards of one guided, doubled batch, timed over a few steps and
scaled to the configured sampling steps), with FLOPs from torch's FlopCounterMode and the share of the fp32 (or
bf16) matmul rate measured in the same run. diffusers' DiT runs at the same config where it can (square image
latents; it has its own per-block embedders, so its FLOPs differ slightly); the two models take turns, round
after round, and the best round counts, so a change in the machine's load does not favour one of them.

    python -m bench.diffusion_speed --out bench/out/diffusion_speed.json --doc docs/diffusion_generation.md  # CPU
    python -m bench.diffusion_speed --device cuda --dtype bf16 --out bench/out/diffusion_speed_cuda.json

With --doc, the table goes into that page between its markers (DOC_BEGIN / DOC_END).
"""
from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

import torch

from bench.flops import DTYPES, flop_counter_mode, machine_name, matmul_gflops
from bench.report import add_report_arguments, report_of
from diffusion_generation.config import DiffusionConfig, experiment_config
from diffusion_generation.diffusion import GaussianDiffusion, guided_output
from diffusion_generation.models import build_model
from shared.doc_blocks import Measured, joined, write_block
from shared.timing import sync

DOC_BEGIN = "<!-- diffusion speed: written by `python -m bench.diffusion_speed --doc` from its JSON; do not edit -->"
DOC_END = "<!-- end of diffusion speed -->"

# name: (scale, experiment, batch, latent size (C, [T,] h, w), steps a round, rounds, with the AdamW step)
CASES = {
    "dit_small": ("small", "dit", 64, (8, 8, 8), 5, 5, True),
    "latte_small": ("small", "latte", 16, (8, 5, 8, 8), 5, 5, True),
    # XL/2 (~675M parameters): batch 1 keeps a CPU step at ~0.7-3.5 TFLOP; without AdamW's moments both models
    # (ours and diffusers') fit in memory at once and can take turns
    "dit_xl2": ("paper", "dit", 1, (8, 32, 32), 1, 2, False),
    "latte_xl2": ("paper", "latte", 1, (8, 5, 32, 32), 1, 1, False),
}


class DiffusersDiT(torch.nn.Module):
    """diffusers' DiTTransformer2DModel behind our forward(x, t, y) -> (N, 2C, h, w)."""

    def __init__(self, cfg, size: int):
        super().__init__()
        from diffusers import DiTTransformer2DModel

        self.net = DiTTransformer2DModel(num_attention_heads=cfg.num_heads,
                                         attention_head_dim=cfg.hidden_size // cfg.num_heads,
                                         in_channels=cfg.in_channels, out_channels=2 * cfg.in_channels,
                                         num_layers=cfg.depth, sample_size=size, patch_size=cfg.patch_size,
                                         num_embeds_ada_norm=cfg.num_classes)
        self.config = SimpleNamespace(num_classes=cfg.num_classes)  # what guided_output reads (the null class)

    def forward(self, x, t, y):
        return self.net(x, timestep=t, class_labels=y).sample


class Timer:
    """One model's training step (forward, MSE + VB loss, backward[, AdamW step]) and guided sampling step."""

    def __init__(self, model, diffusion, x, y, device: str, autocast, optimizer: bool):
        self.model, self.diffusion, self.x, self.y, self.device, self.autocast = model, diffusion, x, y, device, autocast
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0) if optimizer else None
        self.train_times, self.sample_times = [], []
        with flop_counter_mode()(display=False) as counter:  # also the warm-up
            self.train_step()
        self.train_flops = counter.get_total_flops()
        with flop_counter_mode()(display=False) as counter:
            self.sample_step()
        self.sample_flops = counter.get_total_flops()

    def train_step(self) -> None:
        self.model.train()
        t = torch.randint(0, 1000, (self.x.shape[0],), device=self.device)
        with self.autocast:
            loss = self.diffusion.training_losses(self.model, self.x, t, self.y, torch.randn_like(self.x))["loss"]
        self.model.zero_grad(set_to_none=self.opt is not None)
        loss.mean().backward()
        if self.opt is not None:
            self.opt.step()

    @torch.no_grad()
    def sample_step(self) -> None:
        self.model.eval()
        t = torch.full((self.x.shape[0],), 500, device=self.device)
        with self.autocast:
            guided_output(self.model, self.x, t, self.y, 4.0)

    def time(self, steps: int) -> None:
        for fn, times in ((self.train_step, self.train_times), (self.sample_step, self.sample_times)):
            sync(self.device)
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            sync(self.device)
            times.append((time.perf_counter() - start) / steps)


def run_case(name: str, device: str, dtype: str, rate: float, with_diffusers: bool) -> dict:
    scale, experiment, batch, shape, steps, rounds, optimizer = CASES[name]
    cfg = experiment_config(scale, experiment)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda") and dtype == "bf16")
    diffusion = GaussianDiffusion(DiffusionConfig())
    torch.manual_seed(0)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, cfg.model.num_classes, (batch,), device=device)
    models = {"ours": build_model(cfg.model)}
    if with_diffusers and experiment == "dit" and shape[-1] == shape[-2]:
        models["diffusers"] = DiffusersDiT(cfg.model, shape[-1])
    timers = {who: Timer(m.to(device), diffusion, x, y, device, autocast, optimizer) for who, m in models.items()}
    for _ in range(rounds):  # the models take turns, so a change in the machine's load hits both alike
        for timer in timers.values():
            timer.time(steps)
    out = {"scale": scale, "experiment": experiment, "batch": batch, "latent_shape": list(shape),
           "train_step": "forward + MSE/VB loss + backward" + (" + AdamW step" if optimizer else ""),
           "timing": f"best of {rounds} rounds of {steps} steps, models alternating",
           "sampling_steps": cfg.diffusion.sampling_steps}
    for who, timer in timers.items():
        sec, s_sec = min(timer.train_times), min(timer.sample_times)
        out[who] = {"parameters": sum(p.numel() for p in timer.model.parameters()),
                    "train_steps_per_s": 1 / sec, "train_gflop_per_step": timer.train_flops / 1e9,
                    "train_fraction_of_matmul_rate": timer.train_flops / sec / 1e9 / rate,
                    "sample_seconds_per_item": s_sec * cfg.diffusion.sampling_steps / batch,
                    "sample_fraction_of_matmul_rate": timer.sample_flops / s_sec / 1e9 / rate}
    if "diffusers" in out:
        out["ours_vs_diffusers_train_speed"] = out["ours"]["train_steps_per_s"] / out["diffusers"]["train_steps_per_s"]
        out["ours_vs_diffusers_sample_speed"] = (out["diffusers"]["sample_seconds_per_item"]
                                                 / out["ours"]["sample_seconds_per_item"])
    return out


def doc_lines(report: dict) -> list[str]:
    """Markdown: one row per case (ours, and diffusers' DiT in brackets where it ran); the conditions."""
    rows = ["| case (batch x latent) | training step | training steps/s | share of the matmul rate | sampling s / item "
            "(guided) | ours vs diffusers' DiT (train, sample) |", "|---|---|---|---|---|---|"]
    for name, c in report["cases"].items():
        ours, ref = c["ours"], c.get("diffusers")
        def both(key: str, fmt: str) -> str:
            return format(ours[key], fmt) + (f" (diffusers {format(ref[key], fmt)})" if ref else "")
        ratio = (f"{c['ours_vs_diffusers_train_speed']:.2f}x, {c['ours_vs_diffusers_sample_speed']:.2f}x" if ref
                 else "(no diffusers model)")
        rows.append(f"| {c['experiment']} {c['scale']} ({c['batch']} x {'x'.join(map(str, c['latent_shape']))}; "
                    f"{ours['parameters'] / 1e6:.1f}M) | {c['train_step']}; {c['timing']} | {both('train_steps_per_s', '.3g')} | "
                    f"{both('train_fraction_of_matmul_rate', '.2f')} | {ours['sample_seconds_per_item']:.3g} "
                    f"({c['sampling_steps']} steps) | {ratio} |")
    rows += ["", f"Machine: {report['cpu']}, {report['device']}, {report['threads']} threads, torch {report['torch']}, "
             f"{report['dtype']}; the {report['dtype']} 2048² matmul rate measured {report['matmul_gflops']:.0f} "
             f"GFLOP/s at the start (a share above 1: the rate ran higher during the case than at the start)."]
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_report_arguments(ap, "bench/out/diffusion_speed.json")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast, CUDA only")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--no-diffusers", action="store_true", help="skip diffusers' DiTTransformer2DModel")
    args = ap.parse_args(argv)
    if args.dtype == "bf16" and not args.device.startswith("cuda"):
        raise SystemExit("--dtype bf16 is for CUDA (the trainers use bf16 autocast on CUDA only)")
    report = report_of(args, lambda: measure(args))
    if args.doc:
        measured = Measured(joined(c["scale"] for c in report["cases"].values()),
                            f"{report['cpu']} ({report['device']}, {report['threads']} threads)", report["dtype"])
        done = write_block(args.doc, DOC_BEGIN, DOC_END, doc_lines(report), measured, args.force)
        print(f"{args.doc}: diffusion speed table {'written' if done else 'not written (no markers)'}")
    return report


def measure(args: argparse.Namespace) -> dict:
    rate = matmul_gflops(args.device, DTYPES[args.dtype])
    report = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
              "cpu": machine_name(), "threads": torch.get_num_threads(),
              "dtype": args.dtype, "matmul_gflops": rate, "torch": torch.__version__, "cases": {}}
    for name in args.cases:
        report["cases"][name] = run_case(name, args.device, args.dtype, rate, not args.no_diffusers)
        print(name, json.dumps(report["cases"][name], indent=1), flush=True)
    return report

if __name__ == "__main__":
    main()
