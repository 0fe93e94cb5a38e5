"""Paper-scale dry run: every paper target at its published shape runs a few real training steps (optimizer
included), saves a checkpoint, resumes from it in fresh objects and takes one more step, which must equal the
step the uninterrupted objects took; then a few sampling steps. Each target runs in its own process, so that its
peak memory is its own.

    python -m bench.dry_run --scale paper --out bench/out/dry_run.json       # make dry-run SCALE=paper
    python -m bench.dry_run --scale tiny --out /tmp/dry_run.json             # the same code at test size

Targets: the three tokenizer stages (image 256², joint with a 17 x 256² clip, KL with a clip; GAN and perceptual
terms on, the perceptual network random offline), the LMs of each named size on 1,025-token image and 5,121-token
clip sequences, DiT-XL/2 on 32x32 latents and Latte-XL/2 on 5 x 32 x 32 latents. The data are random tensors of
the real shapes (a step's cost does not depend on their values). Precision: bf16 autocast on CUDA, on a CPU by
measurement (shared.training.precision); batch: 1 on a CPU, the config's per-process batch on CUDA (or --batch).

Recorded per target: seconds per step, FLOPs of one step (counted), the fraction of the machine's 2048² matmul
rate in that precision (a CPU's stand-in for its peak), peak memory split into weights, optimizer state and the
rest (activations, gradients, workspace), whether the resumed step was exact, and sampling seconds.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from bench.flops import DTYPES, count_flops, machine_name, matmul_gflops
from shared.atomic import atomic_write_json
from shared.memory import rss_bytes
from shared.timing import sync
from shared.training import EMA, load_checkpoint, save_checkpoint
from shared.training.precision import autocast, choose_precision

STEPS = 3  # timed steps after the counted one


@dataclasses.dataclass
class Built:
    modules: dict  # name -> nn.Module (checkpointed)
    optimizers: dict  # name -> optimizer (checkpointed)
    step: Callable[[int], float]  # one training step at step index i (its data and randomness a function of i)
    sample: Callable[[], dict] | None  # a few sampling steps; returns what it did
    what: str  # the step's shapes, in words


def seeded(step: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 + step)


# ----------------------------------------------------------------------------- the targets


def tokenizer_target(scale: str, stage_name: str, device: str, ctx, batch: int | None) -> Built:
    from tokenizer.losses import TokenizerLoss
    from tokenizer.model import OmniTokenizer
    from tokenizer.train import stage_model_config
    from tokenizer.train_config import tokenizer_config

    cfg = tokenizer_config(scale)
    stage = {s.name: s for s in cfg.train.stages}[stage_name]
    model = OmniTokenizer.from_scale(stage_model_config(cfg.model, stage)).to(device)
    loss_cfg = dataclasses.replace(cfg.train.stage_loss(stage), allow_random_perceptual=True, disc_start=0,
                                   perceptual_weights=None)
    loss_fn = TokenizerLoss(loss_cfg).to(device)
    opt_g = torch.optim.Adam(model.parameters(), lr=stage.lr, betas=stage.betas)
    opt_d = torch.optim.Adam(loss_fn.discriminator_parameters(), lr=stage.lr, betas=stage.betas)
    video = stage.pattern != "i"
    side = max(r if isinstance(r, int) else max(r) for r in stage.resolutions) if scale != "paper" else 256
    frames = cfg.train.data.num_frames if video else 1
    b = batch or (stage.batch_size_video if video else stage.batch_size_image)

    def step(i: int) -> float:
        x = (torch.rand(b, 3, frames, side, side, generator=seeded(i)) * 2 - 1).to(device)
        torch.manual_seed(i)
        with ctx():
            x_hat, enc = model(x)
            loss, _ = loss_fn(x, x_hat, enc, loss_fn.gan_on(i))
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), stage.grad_clip)
        opt_g.step()
        with ctx():
            d_loss, _ = loss_fn(x, x_hat.detach(), None, discriminator=True)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        return loss.item()

    @torch.no_grad()
    def encode() -> dict:
        """Inference as extraction runs it: one item encoded (its FLOPs size the extraction's loader)."""
        x = (torch.rand(1, 3, frames, side, side, generator=seeded(0)) * 2 - 1).to(device)
        model.eval()
        with ctx():
            flops = count_flops(lambda: model.encode(x))
            sync(device)
            start = time.perf_counter()
            model.encode(x)
            sync(device)
        model.train()
        return {"encode_flops_per_item": flops, "encode_seconds_per_item": time.perf_counter() - start}

    return Built({"model": model, "disc2d": loss_fn.disc2d, "disc3d": loss_fn.disc3d}, {"opt_g": opt_g, "opt_d": opt_d},
                 step, encode, f"{'clip' if video else 'image'} batch {b} x {frames} x {side}², {stage.quantizer} head, "
                               f"GAN + perceptual (random VGG16) on")


def lm_target(scale: str, size: str | None, kind: str, device: str, ctx, batch: int | None) -> Built:
    from lm_generation.config import lm_config
    from lm_generation.model import CodeLayout, build_lm, lm_loss
    from lm_generation.sampling import _loop  # the sampler's own token loop, for a few tokens

    cfg = lm_config(scale, task=kind)
    grid = 32 if scale == "paper" else 4
    frames = 5 if kind == "video" else 1
    layout = CodeLayout(codebook_size=8192 if scale == "paper" else 256, num_classes=1000 if kind == "image" else 101,
                        grid=(frames, grid, grid), size=(1 + 4 * (frames - 1), 8 * grid, 8 * grid))
    model = build_lm(cfg.shape(size), layout).to(device)
    t = cfg.train
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=t.lr, betas=t.betas)
    b = batch or t.batch_size

    def step(i: int) -> float:
        g = seeded(i)
        codes = torch.randint(0, layout.codebook_size, (b, *layout.grid), generator=g).to(device)
        labels = torch.randint(0, layout.num_classes, (b,), generator=g).to(device)
        drop = (torch.rand(b, generator=g) < t.class_dropout).to(device)
        with ctx():
            loss = lm_loss(model, codes, labels, layout, drop)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        return loss.item()

    def sample() -> dict:
        """8 tokens through the KV cache, guidance on (one doubled batch), after the class token."""
        tokens = 8
        prefix = torch.tensor([[layout.codebook_size], [layout.null_token]], device=device)
        start = time.perf_counter()
        with ctx():
            _loop(model.eval(), layout, prefix, tokens, 1, max(cfg.sample.guidance_scales), None, 1.0, 0, 1.0,
                  torch.Generator(device=device).manual_seed(0), True)
        sync(device)
        model.train()
        return {"tokens": tokens, "seconds_per_token": (time.perf_counter() - start) / tokens, "guidance": True}

    return Built({"model": model}, {"opt": opt}, step, sample,
                 f"batch {b} x {layout.seq_len} tokens ({kind}), vocabulary {layout.vocab_size}"
                 + (", gradient checkpointing" if t.gradient_checkpointing else ""))


def diffusion_target(scale: str, experiment: str, device: str, ctx, batch: int | None) -> Built:
    from diffusion_generation.config import experiment_config
    from diffusion_generation.diffusion import GaussianDiffusion, make_scheduler, sample
    from diffusion_generation.models import build_model

    cfg = experiment_config(scale, experiment)
    model = build_model(cfg.model).to(device)
    ema = EMA(model, cfg.train.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    diffusion = GaussianDiffusion(cfg.diffusion)
    grid = 32 if scale == "paper" else 4
    if experiment == "latte":  # the latent frames of the VAE of that scale
        from tokenizer.config import model_config

        frames = 1 + (cfg.data.num_frames - 1) // model_config(scale).temporal_patch_size
        shape = (cfg.model.in_channels, frames, grid, grid)
    else:
        shape = (cfg.model.in_channels, grid, grid)
    b = batch or cfg.train.batch_size
    classes = max(cfg.model.num_classes, 1)

    def step(i: int) -> float:
        g = seeded(i)
        x, noise = torch.randn(b, *shape, generator=g).to(device), torch.randn(b, *shape, generator=g).to(device)
        y = torch.randint(0, classes, (b,), generator=g).to(device) if cfg.model.num_classes else None
        t = torch.randint(0, diffusion.num_steps, (b,), generator=g).to(device)
        torch.manual_seed(i)
        with ctx():
            loss = diffusion.training_losses(model, x, t, y, noise)["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        ema.update(model)
        return loss.item()

    def sample_steps() -> dict:
        steps, scale_ = 2, 1.5
        labels = torch.zeros(1, dtype=torch.long) if cfg.model.num_classes else None
        start = time.perf_counter()
        with ctx():
            sample(ema.model, make_scheduler(cfg.diffusion, cfg.model.learn_sigma, "ddpm", steps), (1, *shape), labels,
                   scale_ if labels is not None else 1.0, torch.Generator().manual_seed(0), device)
        sync(device)
        return {"steps": steps, "seconds_per_step": (time.perf_counter() - start) / steps,
                "guidance": labels is not None}

    return Built({"model": model, "ema": ema.model}, {"opt": opt}, step, sample_steps,
                 f"batch {b} x latents {list(shape)}")


def targets(scale: str) -> dict[str, Callable]:
    """name -> builder(device, ctx, batch) of every target of a scale."""
    from lm_generation.config import lm_config

    out = {f"tokenizer_{s}": (lambda s: lambda *a: tokenizer_target(scale, s, *a))(s) for s in ("image", "joint", "kl")}
    sizes = sorted(lm_config(scale).sizes) or [None]
    for size in sizes:
        for kind in ("image", "video"):
            out[f"lm_{size or 'model'}_{kind}"] = (lambda size, kind: lambda *a: lm_target(scale, size, kind, *a))(size, kind)
    out["dit"] = lambda *a: diffusion_target(scale, "dit", *a)
    out["latte"] = lambda *a: diffusion_target(scale, "latte", *a)
    return out


# ----------------------------------------------------------------------------- one target, measured


def state_bytes(optimizers: dict) -> int:
    return sum(v.numel() * v.element_size() for opt in optimizers.values() for s in opt.state.values()
               for v in s.values() if torch.is_tensor(v))


def fingerprint(modules: dict) -> tuple[str, torch.Tensor]:
    """The weights' sha256 (bitwise identity) and each tensor's sum (how far two sets of weights are apart)."""
    digest = hashlib.sha256()
    sums = []
    for m in modules.values():
        for p in m.parameters():
            digest.update(p.detach().float().cpu().numpy().tobytes())
            sums.append(p.detach().double().sum().cpu())
    return digest.hexdigest(), torch.stack(sums)


def resumed_step(build: Callable, saved: Path, device: str, ctx, batch: int | None, step: int) -> tuple[float, tuple]:
    """Fresh objects, the checkpoint loaded into them, one step: its loss and the weights' fingerprint."""
    torch.manual_seed(0)
    fresh = build(device, ctx, batch)
    models, optims, _ = load_checkpoint(saved, map_location=device)
    for k, m in fresh.modules.items():
        m.load_state_dict(models[k])
    for k, o in fresh.optimizers.items():
        o.load_state_dict(optims[k])
    del models, optims
    loss = fresh.step(step)
    return loss, fingerprint(fresh.modules)


def run_target(scale: str, name: str, device: str, batch: int | None, precision: str = "auto") -> dict:
    precision, why = choose_precision(precision, device)
    ctx = lambda: autocast(precision, device)  # noqa: E731
    build = targets(scale)[name]
    torch.manual_seed(0)
    built = build(device, ctx, batch)
    weights = sum(p.numel() * p.element_size() for m in built.modules.values() for p in m.parameters())
    base = torch.cuda.memory_allocated() if device == "cuda" else rss_bytes("VmRSS")
    flops = count_flops(lambda: built.step(0))  # step 0, counted (under the counter: not timed)
    seconds, losses = [], []
    for i in range(1, 1 + STEPS):
        sync(device)
        start = time.perf_counter()
        losses.append(built.step(i))
        sync(device)
        seconds.append(time.perf_counter() - start)
    optimizer_state = state_bytes(built.optimizers)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss_bytes("VmHWM")
    sampling = built.sample() if built.sample else None
    what, parameters = built.what, sum(p.numel() for m in built.modules.values() for p in m.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(tmp, 1 + STEPS, {k: m.state_dict() for k, m in built.modules.items()},
                        {k: o.state_dict() for k, o in built.optimizers.items()}, {"config": {}})
        saved = next(Path(tmp).iterdir())
        checkpoint_bytes = sum(f.stat().st_size for f in saved.iterdir())
        after = built.step(1 + STEPS)
        uninterrupted = fingerprint(built.modules)
        del built  # one set of weights and optimizer state at a time: the 650M LM's fill most of 24 GB
        # resumed twice: if two resumes differ from each other, the step itself is not bitwise repeatable in this
        # precision on this machine (seen: bf16 3-D convolutions' backward on a CPU), and exactness cannot be asked
        first, again = (resumed_step(build, saved, device, ctx, batch, 1 + STEPS) for _ in range(2))
    apart = lambda a, b: float(((a[1] - b[1]).abs() / b[1].abs().clamp_min(1e-12)).max())  # noqa: E731
    dtype = DTYPES[precision]
    rate = matmul_gflops(device, dtype) * 1e9
    best = min(seconds)
    return {"target": name, "what": what, "device": device, "precision": precision, "precision_reason": why,
            "parameters": parameters,
            "seconds_per_step": seconds, "flops_per_step": flops, "matmul_flops_per_s": rate,
            "fraction_of_matmul_rate": flops / best / rate, "losses": losses, "loss_finite": all(map(math.isfinite, losses)),
            "memory_bytes": {"weights": weights, "optimizer_state": optimizer_state,
                             "peak": peak, "before_steps": base,
                             "rest": max(0, peak - base - optimizer_state)},
            "checkpoint_bytes": checkpoint_bytes, "resume_exact": after == first[0] and uninterrupted[0] == first[1][0],
            "step_repeatable": again[1][0] == first[1][0],
            "resume": {"loss_uninterrupted": after, "loss_resumed": first[0], "loss_resumed_again": again[0],
                       "max_relative_difference_of_weight_sums": apart(first[1], uninterrupted),
                       "max_relative_difference_between_two_resumes": apart(again[1], first[1])},
            "sampling": sampling,
            "threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------- all targets, each in its own process


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="paper", help="paper (the published shapes) or tiny (the test's)")
    ap.add_argument("--target", action="append", default=None, help="run only these targets (repeatable)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="per-process batch (default: 1 on a CPU, the config's on CUDA)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="auto: bf16 on CUDA, on a CPU where it measures faster")
    ap.add_argument("--out", default=None, help="JSON to write (one target's record goes to stdout with --child)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    batch = args.batch or (1 if args.device == "cpu" else None)
    names = args.target or list(targets(args.scale))
    unknown = sorted(set(names) - set(targets(args.scale)))
    if unknown:
        raise SystemExit(f"unknown target(s) {unknown}; {args.scale} has {list(targets(args.scale))}")
    if args.child:
        print(json.dumps(run_target(args.scale, names[0], args.device, batch, args.precision)))
        return {}
    report = {"scale": args.scale, "device": args.device, "machine": machine_name(), "batch": batch,
              "precision_asked": args.precision,
              "threads": torch.get_num_threads(), "targets": {}}
    if args.target and args.out and Path(args.out).is_file():  # some targets again: the others' records are kept
        earlier = json.loads(Path(args.out).read_text())
        if {k: earlier.get(k) for k in ("scale", "device", "batch")} == {k: report[k] for k in ("scale", "device", "batch")}:
            report["targets"] = {k: v for k, v in earlier.get("targets", {}).items() if k not in names}
    for name in names:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "bench.dry_run", "--child", "--scale", args.scale, "--target", name,
               "--device", args.device, "--precision", args.precision] + (["--batch", str(batch)] if batch else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        if proc.returncode != 0:
            report["targets"][name] = {"target": name, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
            print(f"{name}: FAILED: {proc.stderr[-2000:]}", file=sys.stderr)
        else:
            report["targets"][name] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = report["targets"][name]
            print(f"{name}: {min(r['seconds_per_step']):.2f} s/step, {r['flops_per_step'] / 1e12:.2f} TFLOP, "
                  f"{r['fraction_of_matmul_rate']:.0%} of the matmul rate, peak {r['memory_bytes']['peak'] / 2**30:.1f} "
                  f"GiB, resume exact: {r['resume_exact']} (step repeatable: {r['step_repeatable']}) "
                  f"({time.perf_counter() - start:.0f} s)")
        if args.out:
            atomic_write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
