"""Train OmniTokenizer with the progressive schedule (image VQ -> joint VQ -> KL), from one config per scale.

    python -m tokenizer.train --scale small --out runs/small/tokenizer            # embedded photos + clips
    accelerate launch -m tokenizer.train --scale paper --images /data/imagenet --videos /data/ucf101 \
        --out runs/paper/tokenizer                                                # one or many GPUs

Every stage writes `<out>/<stage>/`: checkpoints (resumed automatically), `final/` (save_pretrained),
metrics.jsonl, TensorBoard logs, a reconstruction grid and side-by-side GIFs, and summary.json. A stage
whose summary exists is reused, so a killed run picks up where it stopped. The run ends by writing
results/<scale>/tokenizer[_<variant>].json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from shared.atomic import atomic_write_json
from shared.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from shared.data import EmbeddedClips, EmbeddedPhotos, ImageFolder, StepSchedule, VideoFolder, step_loader
from shared.data.transforms import as_size

from .config import model_config
from .discriminators import PatchGAN
from .evaluate import evaluate, reconstruct
from .losses import (PerceptualLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss, reconstruction_loss,
                     video_frames_for_perceptual)
from .model import OmniTokenizer
from .train_config import DataConfig, StageConfig, TrainConfig, train_config
from .transfer import transfer_weights
from .visualize import image_grid, side_by_side_video

log = logging.getLogger("tokenizer.train")


# ----------------------------------------------------------------------------- data


def build_datasets(data: DataConfig, stage: StageConfig, eval_resolution) -> tuple[dict, dict]:
    """Training datasets for the kinds the stage's pattern uses; validation datasets for both kinds."""
    base = as_size(stage.resolutions[0])
    train, val = {}, {}
    if data.images == "embedded":
        train["image"] = EmbeddedPhotos("train", base)
        val["image"] = EmbeddedPhotos("val", eval_resolution)
    else:
        train["image"] = ImageFolder(data.images, data.image_splits[0], base)
        val["image"] = ImageFolder(data.images, data.image_splits[1], eval_resolution)
    clip = dict(num_frames=data.num_frames, frame_stride=data.frame_stride)
    if data.videos == "embedded":
        train["video"] = EmbeddedClips("train", base, **clip)
        val["video"] = EmbeddedClips("val", eval_resolution, **clip)
    elif data.videos:
        folder = dict(layout=data.video_layout, fps=data.fps, **clip)
        train["video"] = VideoFolder(data.videos, split=data.video_splits[0], resolution=base, **folder)
        val["video"] = VideoFolder(data.videos, split=data.video_splits[1], resolution=eval_resolution, **folder)
    kinds = {StepSchedule.KINDS[c] for c in stage.pattern}
    return {k: v for k, v in train.items() if k in kinds}, val


# ----------------------------------------------------------------------------- schedule


def lr_at(step: int, stage: StageConfig) -> float:
    """Linear warm-up to stage.lr, then cosine to stage.min_lr at the last step."""
    if step < stage.warmup_steps:
        return stage.lr * (step + 1) / stage.warmup_steps
    progress = (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps)
    return stage.min_lr + 0.5 * (stage.lr - stage.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def stage_model(cfg_scale: str, stage: StageConfig, stages_done: dict[str, Path]) -> tuple[OmniTokenizer, list]:
    overrides = {**stage.model, "quantizer": stage.quantizer}
    if stage.temporal_patch_size:
        overrides["temporal_patch_size"] = stage.temporal_patch_size
    model = OmniTokenizer(model_config(cfg_scale, **overrides))
    notes = []
    if stage.init_from:
        src_dir = stages_done.get(stage.init_from) or Path(stage.init_from)
        if not (src_dir / "config.json").is_file():
            raise FileNotFoundError(f"{src_dir}: stage '{stage.name}' starts from '{stage.init_from}', which is "
                                    f"neither a finished stage of this run nor a save_pretrained folder")
        notes = transfer_weights(OmniTokenizer.from_pretrained(src_dir), model)
    return model, notes


def stage_record(stage: StageConfig) -> dict:
    """A stage's configuration as checkpoints and summaries store it (JSON: tuples become lists), for the check
    that a resumed or reused stage was trained with the configuration asked for."""
    return json.loads(json.dumps(dataclasses.asdict(stage)))


# ----------------------------------------------------------------------------- one stage


def train_stage(cfg: TrainConfig, scale: str, stage: StageConfig, out: Path, accelerator: Accelerator,
                stages_done: dict[str, Path], stop_at: int | None = None) -> dict:
    """Train one stage (resuming from its latest checkpoint); returns its summary.

    stop_at: leave after that many steps (a checkpoint is written), as if the run had been killed.
    """
    stage_dir = out / stage.name
    ckpt_dir = stage_dir / "checkpoints"
    main = accelerator.is_main_process
    loss_cfg = cfg.stage_loss(stage)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and in every run of this config
    model, notes = stage_model(scale, stage, stages_done)
    eval_res = cfg.data.eval_resolution or as_size(stage.resolutions[0])
    model.latent_frames(cfg.data.num_frames)  # a clear error now if the clip length does not fit t
    disc2d = PatchGAN(2, loss_cfg.disc_channels, loss_cfg.disc_layers)
    disc3d = PatchGAN(3, loss_cfg.disc_channels, loss_cfg.disc_layers)
    perceptual = None
    if loss_cfg.perceptual_weight > 0:
        perceptual = PerceptualLoss(loss_cfg.perceptual_weights, loss_cfg.allow_random_perceptual).to(accelerator.device)
    opt_g = torch.optim.Adam(model.parameters(), lr=stage.lr, betas=tuple(stage.betas))
    opt_d = torch.optim.Adam(list(disc2d.parameters()) + list(disc3d.parameters()), lr=stage.lr * loss_cfg.disc_lr_ratio,
                             betas=tuple(stage.betas))
    start, elapsed, skipped_total = 0, 0.0, 0
    unreadable = {"count": 0, "first": []}  # items replaced because they could not be read, and the first errors
    resume_from = latest_checkpoint(ckpt_dir)
    if resume_from is not None:
        models, optims, meta = load_checkpoint(resume_from)
        if meta["stage"] != stage_record(stage):
            raise ValueError(f"{resume_from}: written with a different configuration of stage '{stage.name}' "
                             f"({meta['stage']}); resume with that configuration, or pass --restart to train again")
        model.load_state_dict(models["model"])
        disc2d.load_state_dict(models["disc2d"])
        disc3d.load_state_dict(models["disc3d"])
        opt_g.load_state_dict(optims["opt_g"])
        opt_d.load_state_dict(optims["opt_d"])
        start, elapsed, skipped_total = meta["step"], meta["elapsed"], meta["nonfinite_skipped"]
        unreadable = meta.get("unreadable", unreadable)
        notes = meta["notes"]
        if main:
            log.info("stage %s: resuming from %s (step %d)", stage.name, resume_from, start)
    model, disc2d, disc3d, opt_g, opt_d = accelerator.prepare(model, disc2d, disc3d, opt_g, opt_d)
    raw = accelerator.unwrap_model(model)

    train_sets, val_sets = build_datasets(cfg.data, stage, eval_res)
    schedule = StepSchedule(lengths={k: len(v) for k, v in train_sets.items()},
                            batch_sizes={"image": stage.batch_size_image, "video": stage.batch_size_video},
                            pattern=stage.pattern, resolutions=stage.resolutions, seed=cfg.seed,
                            rank=accelerator.process_index, world_size=accelerator.num_processes)
    stop = stage.steps if stop_at is None else min(stage.steps, stop_at)
    loader = step_loader(train_sets, schedule, start, stop, cfg.data.num_workers)
    writer = SummaryWriter(str(stage_dir / "tb")) if main else None
    metrics_file = open(stage_dir / "metrics.jsonl", "a") if main else None

    def checkpoint(step: int):
        if main:
            save_checkpoint(ckpt_dir, step,
                            {"model": raw.state_dict(), "disc2d": accelerator.unwrap_model(disc2d).state_dict(),
                             "disc3d": accelerator.unwrap_model(disc3d).state_dict()},
                            {"opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()},
                            {"elapsed": elapsed + time.perf_counter() - t0, "nonfinite_skipped": skipped_total,
                             "unreadable": unreadable, "notes": notes, "stage": dataclasses.asdict(stage)},
                            keep=cfg.keep_checkpoints)
        accelerator.wait_for_everyone()

    t0 = time.perf_counter()
    in_a_row = 0
    bar = tqdm(total=stage.steps, initial=start, desc=f"{stage.name}", disable=not main, dynamic_ncols=True)
    for step, batch in zip(range(start, stop), loader):
        torch.manual_seed(cfg.seed * 1_000_003 + step * accelerator.num_processes + accelerator.process_index)
        lr = lr_at(step, stage)
        for group in opt_g.param_groups:
            group["lr"] = lr
        for group in opt_d.param_groups:
            group["lr"] = lr * loss_cfg.disc_lr_ratio
        for error in batch["unreadable"]:
            log.warning("stage %s, step %d (rank %d): skipped unreadable item: %s", stage.name, step,
                        accelerator.process_index, error)
        unreadable["count"] += len(batch["unreadable"])
        unreadable["first"] = sorted(set(unreadable["first"]) | set(batch["unreadable"]))[:20]
        x = batch["pixels"].to(accelerator.device)
        is_video = x.shape[2] > 1
        disc = disc3d if is_video else disc2d
        as_disc_input = (lambda v: v) if is_video else (lambda v: v[:, :, 0])  # noqa: E731
        gan_on = loss_cfg.gan_weight > 0 and step >= loss_cfg.disc_start
        terms = {}
        with accelerator.autocast():
            x_hat, enc = model(x)
            terms["recon"] = reconstruction_loss(x_hat.float(), x, loss_cfg.recon)
            terms["quant" if stage.quantizer == "vq" else "kl"] = enc.loss
            loss = loss_cfg.recon_weight * terms["recon"] + enc.loss
            if perceptual is not None:
                a, b = video_frames_for_perceptual(x_hat, x) if is_video else (x_hat[:, :, 0], x[:, :, 0])
                terms["perceptual"] = perceptual(a.float(), b)
                loss = loss + loss_cfg.perceptual_weight * terms["perceptual"]
            if gan_on:
                n = x.shape[0]
                logits, feats = disc(torch.cat([as_disc_input(x), as_disc_input(x_hat)]))
                terms["gan_g"] = hinge_g_loss(logits[n:].float())
                terms["feature_matching"] = feature_matching_loss([f[:n] for f in feats], [f[n:] for f in feats])
                loss = loss + loss_cfg.gan_weight * terms["gan_g"] + loss_cfg.feature_matching_weight * terms["feature_matching"]
        bad = accelerator.reduce((~torch.isfinite(loss.detach())).float().reshape(1), "sum").item() > 0
        opt_g.zero_grad(set_to_none=True)
        accelerator.backward(loss)  # always, so that every rank's reducer sees a backward
        if bad:
            opt_g.zero_grad(set_to_none=True)
            skipped_total += 1
            in_a_row += 1
            if in_a_row >= cfg.max_nonfinite_in_row:
                checkpoint(step)
                raise RuntimeError(f"stage {stage.name}: {in_a_row} non-finite losses in a row at step {step} "
                                   f"(last terms {({k: v.item() for k, v in terms.items()})}); the last good weights "
                                   f"are in {ckpt_dir}. Lower the learning rate or check the data.")
            bar.update(1)
            continue
        in_a_row = 0
        if stage.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), stage.grad_clip)
        opt_g.step()
        if gan_on:
            with accelerator.autocast():
                logits, _ = disc(torch.cat([as_disc_input(x), as_disc_input(x_hat.detach())]))
                terms["gan_d"] = hinge_d_loss(logits[:n].float(), logits[n:].float())
            opt_d.zero_grad(set_to_none=True)
            accelerator.backward(terms["gan_d"])
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
        bar.update(1)
        done = step + 1
        if main and (done % cfg.log_every == 0 or done == stop):
            record = {"step": done, "kind": "video" if is_video else "image", "resolution": list(x.shape[-2:]),
                      "lr": lr, "loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                      **{k: v.item() for k, v in enc.stats.items()}, "nonfinite_skipped": skipped_total,
                      "unreadable_skipped": unreadable["count"],
                      "seconds": elapsed + time.perf_counter() - t0}
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            for k, v in record.items():
                if isinstance(v, float):
                    writer.add_scalar(f"train/{k}", v, done)
            bar.set_postfix(loss=f"{record['loss']:.4f}", recon=f"{record['recon']:.4f}")
        if done % cfg.checkpoint_every == 0 or done == stop:
            checkpoint(done)
    bar.close()
    if metrics_file:
        metrics_file.close()
    elapsed += time.perf_counter() - t0
    if stop < stage.steps:
        return {"stage": stage.name, "stopped_at": stop}

    checksum = torch.tensor([sum(p.double().sum().item() for p in raw.parameters())], device=accelerator.device)
    checksums = accelerator.gather(checksum).tolist()
    unreadable_total = int(accelerator.reduce(torch.tensor([unreadable["count"]], device=accelerator.device), "sum").item())
    summary = {"stage": stage.name, "quantizer": stage.quantizer, "steps": stage.steps,
               "processes": accelerator.num_processes, "threads": torch.get_num_threads(), "wall_seconds": elapsed,
               "nonfinite_skipped": skipped_total, "unreadable_skipped": unreadable_total,
               "unreadable_first": unreadable["first"],  # this rank's; every rank logs its own
               "perceptual_network": perceptual.source if perceptual is not None else None,
               "init_notes": notes, "rank_weight_checksums": checksums, "config": dataclasses.asdict(stage),
               "loss": dataclasses.asdict(loss_cfg)}
    if main:
        raw.save_pretrained(stage_dir / "final")
        summary["validation"] = validate(raw, val_sets, cfg, stage_dir / "samples", stage.name)
        if writer:
            for kind, m in summary["validation"].items():
                for k, v in m.items():
                    writer.add_scalar(f"val_{kind}/{k}", v, stage.steps)
            writer.close()
        atomic_write_json(stage_dir / "summary.json", summary)
    accelerator.wait_for_everyone()
    return summary


def validate(model: OmniTokenizer, val_sets: dict, cfg: TrainConfig, samples_dir: Path, name: str) -> dict:
    """PSNR / SSIM / codebook usage on each validation split, plus a PNG grid and GIFs to look at."""
    limits = {"image": cfg.data.val_images, "video": cfg.data.val_videos}
    results = {}
    for kind, dataset in val_sets.items():
        results[kind] = evaluate(model, dataset, cfg.eval_batch_size, limits[kind], cfg.eval_max_tokens,
                                 desc=f"{name} val {kind}")
    device = next(model.parameters()).device
    if "image" in val_sets:
        items = [val_sets["image"][i]["pixels"] for i in range(min(8, len(val_sets["image"])))]
        x = torch.stack(items).to(device)
        x_hat, _ = reconstruct(model, x, cfg.eval_max_tokens)
        image_grid(x[:, :, 0].cpu(), x_hat[:, :, 0].cpu(), samples_dir / "images.png")
    if "video" in val_sets:
        for i in range(min(3, len(val_sets["video"]))):
            x = val_sets["video"][i]["pixels"][None].to(device)
            x_hat, _ = reconstruct(model, x, cfg.eval_max_tokens)
            side_by_side_video(x[0].cpu(), x_hat[0].cpu(), samples_dir / f"video_{i}.gif")
    return results


# ----------------------------------------------------------------------------- a whole run


def run(scale: str, out: str | Path, stage_names: list[str] | None = None, variant: str | None = None,
        restart: bool = False, results: str | Path | None = None, accelerator: Accelerator | None = None,
        stop_at: int | None = None, **overrides) -> dict:
    """Run the stages of a scale's config in order; finished stages (summary.json present) are reused."""
    cfg = train_config(scale, **overrides)
    stages = cfg.stage_list(variant)
    if stage_names:
        unknown = set(stage_names) - {s.name for s in stages}
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; this run has {[s.name for s in stages]}")
    out = Path(out)
    accelerator = accelerator or Accelerator(
        mixed_precision="bf16" if torch.cuda.is_available() else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    done: dict[str, Path] = {}
    summaries = {}
    for stage in stages:
        stage_dir = out / stage.name
        if stage_names and stage.name not in stage_names:
            if (stage_dir / "final" / "config.json").is_file():
                done[stage.name] = stage_dir / "final"
            continue
        if restart and accelerator.is_main_process:
            shutil.rmtree(stage_dir, ignore_errors=True)
        accelerator.wait_for_everyone()
        if (stage_dir / "summary.json").is_file():
            summaries[stage.name] = json.loads((stage_dir / "summary.json").read_text())
            if summaries[stage.name].get("config") != stage_record(stage):
                raise ValueError(f"{stage_dir}: finished with a different configuration of stage '{stage.name}' "
                                 f"({summaries[stage.name].get('config')}); pass --restart to train it again")
            if accelerator.is_main_process:
                log.info("stage %s: finished earlier, reusing %s", stage.name, stage_dir / "final")
        else:
            stage_dir.mkdir(parents=True, exist_ok=True)
            summaries[stage.name] = train_stage(cfg, scale, stage, out, accelerator, done, stop_at)
            if "stopped_at" in summaries[stage.name]:
                return summaries
        done[stage.name] = stage_dir / "final"
    report = {"scale": scale, "variant": variant, "data": {"images": cfg.data.images, "videos": cfg.data.videos},
              "out": str(out), "stages": summaries,
              "wall_seconds": sum(s.get("wall_seconds", 0.0) for s in summaries.values())}
    if results and accelerator.is_main_process:
        atomic_write_json(results, report)
    return report


def print_summary(report: dict) -> None:
    print(f"\nOmniTokenizer, scale {report['scale']}" + (f", variant {report['variant']}" if report["variant"] else ""))
    print(f"{'stage':<12}{'head':<6}{'steps':>7}{'minutes':>9}  {'image PSNR/SSIM':>17}  {'video PSNR/SSIM':>17}  usage")
    for name, s in report["stages"].items():
        val = s.get("validation", {})
        cell = lambda k: f"{val[k]['psnr']:6.2f} / {val[k]['ssim']:.3f}" if k in val else "-"  # noqa: E731
        usage = val.get("image", {}).get("codebook_usage")
        print(f"{name:<12}{s['quantizer']:<6}{s['steps']:>7}{s['wall_seconds'] / 60:>9.1f}  {cell('image'):>17}  "
              f"{cell('video'):>17}  {'' if usage is None else f'{usage:.1%}'}")
    print(f"total {report['wall_seconds'] / 60:.1f} min; outputs in {report['out']}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", help="tiny | small | paper | path to a YAML config")
    ap.add_argument("--out", default=None, help="run folder (default runs/<scale>/tokenizer[_<variant>])")
    ap.add_argument("--stage", action="append", help="run only this stage (repeatable); earlier ones must be done")
    ap.add_argument("--variant", default=None, help="a stage list from the config's `variants` (Tables 7, 10)")
    ap.add_argument("--images", default=None, help="image folder (ImageNet layout); default: embedded photos")
    ap.add_argument("--videos", default=None, help="video folder; default: embedded clips")
    ap.add_argument("--video-layout", default=None, choices=["ucf101", "classes", "plain"])
    ap.add_argument("--restart", action="store_true", help="discard the stages' checkpoints and train again")
    ap.add_argument("--results", default=None, help="results JSON (default results/<scale>/tokenizer[_<variant>].json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = {k: v for k, v in {"images": args.images, "videos": args.videos, "video_layout": args.video_layout}.items() if v}
    name = Path(args.scale).stem
    suffix = f"_{args.variant}" if args.variant else ""
    out = args.out or f"runs/{name}/tokenizer{suffix}"
    results = args.results or f"results/{name}/tokenizer{suffix}.json"
    report = run(args.scale, out, args.stage, args.variant, args.restart, results, **({"data": data} if data else {}))
    print_summary(report)
    print(f"results: {results}")


if __name__ == "__main__":
    main()
