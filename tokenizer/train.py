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
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from shared.atomic import atomic_write_json, remove_temporary_files
from shared.training import (MetricsLog, NonFiniteGuard, locks_run_folder, lr_at, make_accelerator, precision_record,
                             resume, save_checkpoint, seed_step, set_lr)
from shared.training.checkpoint import as_record, config_difference
from shared.data import StepSchedule, open_dataset, step_loader
from shared.data.transforms import as_size
from shared.paths import run_dir, run_result, seeded, tokenizer_run, tokenizer_run_parts
from shared.provenance import machine_name

from .config import OmniTokenizerConfig, model_config
from .evaluate import evaluate, reconstruct
from .losses import TokenizerLoss
from .model import OmniTokenizer
from .train_config import StageConfig, TokenizerDataConfig, TokenizerTrainConfig, tokenizer_config
from .transfer import transfer_weights
from .visualize import image_grid, side_by_side_video

log = logging.getLogger("tokenizer.train")


# ----------------------------------------------------------------------------- data


def build_datasets(data: TokenizerDataConfig, stage: StageConfig, eval_resolution) -> tuple[dict, dict]:
    """Training datasets for the kinds the stage's pattern uses; validation datasets for both kinds."""
    base = as_size(stage.resolutions[0])
    train, val = {}, {}
    splits = {"image": ("train", "val") if data.images == "embedded" else data.image_splits,
              "video": ("train", "val") if data.videos == "embedded" else data.video_splits}
    for kind, source in (("image", data.images), ("video", data.videos)):
        if not source:
            continue
        opened = [open_dataset(kind, source, split, size, data.num_frames, data.frame_stride, data.fps,
                               data.video_layout) for split, size in zip(splits[kind], (base, eval_resolution))]
        train[kind], val[kind] = opened
    kinds = {StepSchedule.KINDS[c] for c in stage.pattern}
    for kind in kinds & set(val):
        files = lambda d: {str(p) for p, _ in getattr(d, "samples", [])}  # noqa: E731
        if files(val[kind]) and files(val[kind]) <= files(train[kind]):
            log.warning("the %s validation split is the training files themselves (a plain folder has no split): "
                        "its figures measure fitting, not generalisation", kind)
    return {k: v for k, v in train.items() if k in kinds}, val


# ----------------------------------------------------------------------------- model of a stage


def stage_model_config(model_cfg: OmniTokenizerConfig, stage: StageConfig) -> OmniTokenizerConfig:
    """The model a stage trains: the scale's model with the stage's quantizer, tube length and overrides."""
    overrides = {**stage.model, "quantizer": stage.quantizer}
    if stage.temporal_patch_size:
        overrides["temporal_patch_size"] = stage.temporal_patch_size
    return model_config(model_cfg, **overrides)


def stage_model(model_cfg: OmniTokenizerConfig, stage: StageConfig, stages_done: dict[str, Path]) -> tuple[OmniTokenizer, list]:
    model = OmniTokenizer(stage_model_config(model_cfg, stage))
    notes = []
    if stage.init_from:
        src_dir = stages_done.get(stage.init_from) or Path(stage.init_from)
        if not (src_dir / "config.json").is_file():
            raise FileNotFoundError(f"{src_dir}: stage '{stage.name}' starts from '{stage.init_from}', which is "
                                    f"neither a finished stage of this run nor a save_pretrained folder")
        notes = transfer_weights(OmniTokenizer.from_pretrained(src_dir), model)
    return model, notes


# StageConfig fields added after runs were recorded, each with the value those runs trained with: a stage recorded
# without the field is reused or resumed by a config that keeps that value
ADDED_STAGE_FIELDS = {"edge_lr_scale": 1.0}


def stage_record(cfg: TokenizerTrainConfig, model_cfg: OmniTokenizerConfig, stage: StageConfig) -> dict:
    """What a stage's checkpoints and summary record of its configuration, and what a resumed or reused stage
    must match: the stage's settings, the model it trains, and the data it trains on (folders, layouts, splits,
    frames; not the number of loader workers)."""
    data = {k: v for k, v in as_record(cfg.data).items() if k != "num_workers"}
    return {**as_record(stage), "data": data, "model_config": as_record(stage_model_config(model_cfg, stage))}


# ----------------------------------------------------------------------------- one stage


def train_stage(cfg: TokenizerTrainConfig, model_cfg: OmniTokenizerConfig, stage: StageConfig, out: Path,
                accelerator: Accelerator, stages_done: dict[str, Path], stop_at: int | None = None) -> dict:
    """Train one stage (resuming from its latest checkpoint); returns its summary.

    stop_at: leave after that many steps (a checkpoint is written), as if the run had been killed.
    """
    stage_dir, main = out / stage.name, accelerator.is_main_process
    ckpt_dir = stage_dir / "checkpoints"
    if main:  # what a killed run left half-written (resume below cleans the checkpoint folder)
        for folder in (stage_dir, stage_dir / "final"):
            remove_temporary_files(folder)

    # Model, losses, optimizers:
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and in every run of this config
    model, notes = stage_model(model_cfg, stage, stages_done)
    model.latent_frames(cfg.data.num_frames)  # a clear error now if the clip length does not fit t
    loss_cfg = cfg.stage_loss(stage)
    loss_fn = TokenizerLoss(loss_cfg)
    opt_g = torch.optim.Adam(model.parameter_groups(stage.edge_lr_scale), lr=stage.lr, betas=stage.betas)
    opt_d = torch.optim.Adam(loss_fn.discriminator_parameters(), lr=stage.lr * loss_cfg.disc_lr_ratio, betas=stage.betas)

    # Resume:
    state = {"elapsed": 0.0, "nonfinite_skipped": 0, "unreadable": {"count": 0, "first": []}, "notes": notes}
    config_record = stage_record(cfg, model_cfg, stage)
    meta = resume(ckpt_dir, config_record, {"model": model, "disc2d": loss_fn.disc2d, "disc3d": loss_fn.disc3d},
                  {"opt_g": opt_g, "opt_d": opt_d}, what=f"stage '{stage.name}'", added=ADDED_STAGE_FIELDS)
    start = meta["step"] if meta else 0
    if meta:
        state = {k: meta[k] for k in state}
        if main:
            log.info("stage %s: resuming from %s (step %d)", stage.name, meta["path"], start)
    model, loss_fn, opt_g, opt_d = accelerator.prepare(model, loss_fn, opt_g, opt_d)
    raw, raw_loss = accelerator.unwrap_model(model), accelerator.unwrap_model(loss_fn)

    # Data:
    train_sets, val_sets = build_datasets(cfg.data, stage, cfg.data.eval_resolution or as_size(stage.resolutions[0]))
    for dataset in val_sets.values():  # a validation split that cannot be read fails now, not after the last step
        dataset[0]
    schedule = StepSchedule(lengths={k: len(v) for k, v in train_sets.items()},
                            batch_sizes={"image": stage.batch_size_image, "video": stage.batch_size_video},
                            pattern=stage.pattern, resolutions=stage.resolutions, seed=cfg.seed,
                            rank=accelerator.process_index, world_size=accelerator.num_processes)
    stop = stage.steps if stop_at is None else min(stage.steps, stop_at)
    loader = step_loader(train_sets, schedule, start, stop, cfg.data.num_workers)
    metrics = MetricsLog(stage_dir, start, enabled=main)
    guard = NonFiniteGuard(cfg.max_nonfinite_in_row, state["nonfinite_skipped"])
    t0 = time.perf_counter()

    def checkpoint(step: int):
        if main:
            save_checkpoint(ckpt_dir, step, {"model": raw.state_dict(), **raw_loss.discriminator_state()},
                            {"opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()},
                            {**state, "elapsed": state["elapsed"] + time.perf_counter() - t0,
                             "nonfinite_skipped": guard.skipped, "config": config_record},
                            keep=cfg.keep_checkpoints)
        accelerator.wait_for_everyone()

    # Train:
    bar = tqdm(total=stage.steps, initial=start, desc=f"{stage.name}", disable=not main, dynamic_ncols=True)
    for step, batch in zip(range(start, stop), loader):
        seed_step(cfg.seed, step, accelerator.process_index, accelerator.num_processes)
        lr = lr_at(step, stage.lr, stage.min_lr, stage.warmup_steps, stage.steps)
        set_lr(opt_g, lr)
        set_lr(opt_d, lr * loss_cfg.disc_lr_ratio)
        count_unreadable(state["unreadable"], batch["unreadable"], f"stage {stage.name}, step {step}", accelerator)
        x = batch["pixels"].to(accelerator.device)
        with accelerator.autocast():
            x_hat, enc = model(x)
            loss, terms = loss_fn(x, x_hat, enc, step)
        bad = guard.is_bad(loss, accelerator)
        opt_g.zero_grad(set_to_none=True)
        accelerator.backward(loss)  # always, so that every rank's reducer sees a backward
        if guard.record(bad):
            checkpoint(step)
            raise guard.error(f"stage {stage.name}", step, terms, ckpt_dir)
        bar.update(1)
        if bad:
            opt_g.zero_grad(set_to_none=True)
            continue
        if stage.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), stage.grad_clip)
        opt_g.step()
        if raw_loss.gan_on(step):
            with accelerator.autocast():
                _, d_terms = loss_fn(x, x_hat.detach(), None, step, discriminator=True)
            terms.update(d_terms)
            opt_d.zero_grad(set_to_none=True)
            accelerator.backward(d_terms["gan_d"])
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
        done = step + 1
        if done % cfg.log_every == 0 or done == stop:
            record = {"kind": "video" if x.shape[2] > 1 else "image", "resolution": list(x.shape[-2:]), "lr": lr,
                      "loss": loss.item(), **{k: v.item() for k, v in {**terms, **enc.stats}.items()},
                      "nonfinite_skipped": guard.skipped, "unreadable_skipped": state["unreadable"]["count"],
                      "seconds": state["elapsed"] + time.perf_counter() - t0}
            metrics.log(done, record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", recon=f"{record['recon']:.4f}")
        if done % cfg.checkpoint_every == 0 or done == stop:
            checkpoint(done)
    bar.close()
    elapsed = state["elapsed"] + time.perf_counter() - t0
    if stop < stage.steps:
        metrics.close()
        return {"stage": stage.name, "stopped_at": stop}

    # Final weights, validation, summary:
    checksum = torch.tensor([sum(p.double().sum().item() for p in raw.parameters())], device=accelerator.device)
    unreadable = state["unreadable"]
    summary = {"stage": stage.name, "quantizer": stage.quantizer, "steps": stage.steps,
               "processes": accelerator.num_processes, "threads": torch.get_num_threads(), "wall_seconds": elapsed,
               **precision_record(accelerator),
               "nonfinite_skipped": guard.skipped,
               "unreadable_skipped": int(accelerator.reduce(torch.tensor([unreadable["count"]], device=accelerator.device), "sum").item()),
               "unreadable_first": unreadable["first"],  # this rank's; every rank logs its own
               "short_videos_looped": sorted(str(p) for p in getattr(train_sets.get("video"), "looped", ())),
               "perceptual_network": raw_loss.perceptual.source if raw_loss.perceptual is not None else None,
               "init_notes": state["notes"], "rank_weight_checksums": accelerator.gather(checksum).tolist(),
               "config": config_record, "loss": dataclasses.asdict(loss_cfg)}
    if main:
        raw.save_pretrained(stage_dir / "final")
        summary["validation"] = validate(raw, val_sets, cfg, stage_dir / "samples", stage.name)
        for kind, m in summary["validation"].items():
            metrics.scalars(stage.steps, m, f"val_{kind}")
        atomic_write_json(stage_dir / "summary.json", summary)
    metrics.close()
    accelerator.wait_for_everyone()
    return summary


def count_unreadable(unreadable: dict, errors: list[str], where: str, accelerator: Accelerator) -> None:
    """Log the items of a batch that were replaced because they could not be read; keep a count and the first 20."""
    for error in errors:
        log.warning("%s (rank %d): skipped unreadable item: %s", where, accelerator.process_index, error)
    unreadable["count"] += len(errors)
    unreadable["first"] = sorted(set(unreadable["first"]) | set(errors))[:20]


def validate(model: OmniTokenizer, val_sets: dict, cfg: TokenizerTrainConfig, samples_dir: Path, name: str) -> dict:
    """PSNR / SSIM / codebook usage on each validation split, plus a PNG grid and GIFs to look at."""
    model.eval()  # the pictures below too: no training-mode behaviour (codebook restarts) while looking
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


@locks_run_folder
def run(scale: str, out: str | Path, stage_names: list[str] | None = None, variant: str | None = None,
        restart: bool = False, results: str | Path | None = None, accelerator: Accelerator | None = None,
        stop_at: int | None = None, overrides: list[str] | None = None, **train_overrides) -> dict:
    """Run the stages of a scale's config in order; finished stages (summary.json present) are reused.

    overrides: `section.field=value` strings (--set); train_overrides: top-level `train` fields (dicts merge)."""
    full = tokenizer_config(scale, overrides, **train_overrides)
    cfg = full.train
    stages = cfg.stage_list(variant)
    if stage_names:
        unknown = set(stage_names) - {s.name for s in stages}
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; this run has {[s.name for s in stages]}")
    out = Path(out)
    accelerator = accelerator or make_accelerator(find_unused_parameters=True, precision=cfg.precision)
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
            differences = config_difference(summaries[stage.name].get("config"), stage_record(cfg, full.model, stage),
                                            added=ADDED_STAGE_FIELDS)
            if differences:
                raise ValueError(f"{stage_dir}: finished with a different configuration of stage '{stage.name}' "
                                 f"({'; '.join(differences)}); pass --restart to train it again")
            if accelerator.is_main_process:
                log.info("stage %s: finished earlier, reusing %s", stage.name, stage_dir / "final")
        else:
            stage_dir.mkdir(parents=True, exist_ok=True)
            summaries[stage.name] = train_stage(cfg, full.model, stage, out, accelerator, done, stop_at)
            if "stopped_at" in summaries[stage.name]:
                return summaries
        done[stage.name] = stage_dir / "final"
    report = {"scale": scale, "variant": variant, "seed": cfg.seed, "machine": machine_name(),
              "data": {"images": cfg.data.images, "videos": cfg.data.videos},
              "out": str(out), "stages": summaries,
              "wall_seconds": sum(s.get("wall_seconds", 0.0) for s in summaries.values())}
    if results and accelerator.is_main_process:
        atomic_write_json(results, report)
    return report


def _edge(value: float | None) -> str:
    """A block-edge ratio for the printed table; '-' for a stage validated before the ratio was measured."""
    return "-" if value is None else f"{value:.2f}"


def _figures(m: dict) -> str:
    """PSNR / SSIM / block-edge ratio of a validation split or a baseline."""
    return f"{m['psnr']:.2f}/{m['ssim']:.3f}/{_edge(m.get('block_edge'))}"


def print_summary(report: dict) -> None:
    print(f"\nOmniTokenizer, scale {report['scale']}" + (f", variant {report['variant']}" if report["variant"] else ""))
    print(f"{'stage':<12}{'head':<6}{'steps':>7}{'minutes':>9}  {'image PSNR/SSIM/edge':>21}  {'video PSNR/SSIM/edge':>21}  "
          f"codebook usage / perplexity (image, video)")
    baselines, inputs = {}, {}
    for name, s in report["stages"].items():
        val = s.get("validation", {})
        for kind, v in val.items():
            baselines.setdefault(kind, {}).update(v.get("bicubic", {}))
            inputs[kind] = v.get("block_edge_input")
        cells = [_figures(val[k]) if k in val else "-" for k in ("image", "video")]
        codes = ", ".join(f"{val[k]['codebook_usage']:.1%} / {val[k]['codebook_perplexity']:.0f}" for k in ("image", "video")
                          if "codebook_usage" in val.get(k, {}))
        print(f"{name:<12}{s['quantizer']:<6}{s['steps']:>7}{s['wall_seconds'] / 60:>9.1f}  {cells[0]:>21}  "
              f"{cells[1]:>21}  {codes}")
    for kind, bicubic in baselines.items():
        print(f"bicubic down-and-up on the same {kind} items (same numbers / bits as the last stage with them), "
              f"PSNR/SSIM/edge: " + ", ".join(f"{k.replace('_', ' ')} {_figures(b)}" for k, b in bicubic.items())
              + f"; the {kind} inputs' own block-edge ratio {_edge(inputs[kind])}")
    print("edge: the block-edge ratio, mean pixel step across the patch grid's lines / inside the patches (1: no grid)")
    print(f"total {report['wall_seconds'] / 60:.1f} min; outputs in {report['out']}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small", help="tiny | small | paper | path to a YAML config")
    ap.add_argument("--out", default=None, help="run folder (default runs/<scale>/tokenizer[_<variant>])")
    ap.add_argument("--stage", action="append", help="run only this stage (repeatable); earlier ones must be done")
    ap.add_argument("--variant", default=None, help="a stage list from the config's `variants` (Tables 7, 10)")
    ap.add_argument("--run", default=None, help="a run's name instead of --variant/--seed: tokenizer[_<variant>][_seed<k>]")
    ap.add_argument("--images", default=None, help="image folder (ImageNet layout); default: embedded photos")
    ap.add_argument("--videos", default=None, help="video folder; default: embedded clips")
    ap.add_argument("--video-layout", default=None, choices=["ucf101", "classes", "plain"])
    ap.add_argument("--seed", type=int, default=None, help="model init and data order (default: train.seed of the "
                    "config); seed k > 0 names the run <run>_seed<k> and starts a variant from the default run of that seed")
    ap.add_argument("--restart", action="store_true", help="discard the stages' checkpoints and train again")
    ap.add_argument("--results", default=None, help="results JSON (default results/<scale>/tokenizer[_<variant>].json)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override a config value, e.g. --set train.data.num_workers=4 (repeatable; type-checked)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = {k: v for k, v in {"images": args.images, "videos": args.videos, "video_layout": args.video_layout}.items() if v}
    if args.run:
        if args.variant or args.seed is not None:
            raise SystemExit("--run names the variant and the seed: give it without --variant / --seed")
        args.variant, args.seed = tokenizer_run_parts(args.run)
    seed = args.seed if args.seed is not None else tokenizer_config(args.scale, args.set).train.seed
    name, run_name = Path(args.scale).stem, seeded(tokenizer_run(args.variant), seed)
    out = args.out or run_dir(name, run_name)
    results = args.results or run_result(name, run_name)
    overrides = {**({"data": data} if data else {}), **({"seed": args.seed} if args.seed is not None else {})}
    report = run(args.scale, out, args.stage, args.variant, args.restart, results, overrides=args.set, **overrides)
    print_summary(report)
    print(f"results: {results}")


if __name__ == "__main__":
    main()
