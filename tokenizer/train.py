"""Train OmniTokenizer with the progressive schedule (image VQ -> joint VQ -> KL), from one config per scale.

    python -m tokenizer.train --scale small --out runs/small/tokenizer            # embedded photos + clips
    accelerate launch -m tokenizer.train --scale paper --images /data/imagenet --videos /data/ucf101 \
        --out runs/paper/tokenizer                                                # one or many GPUs
    python -m tokenizer.train --scale small --init runs/small/tokenizer/kl/final --stage kl \
        --images my/photos --videos my/clips --out runs/small/my_vae             # fine-tune existing weights

--init starts the first stage the call trains from existing weights (a save_pretrained folder, or a public release
checkpoint .ckpt, converted as tokenizer.convert_release converts it): the run takes their
architecture (the stages' own head, tube length and overrides on top), every tensor that fits (the codebook too, as
trained), a fresh optimizer, and records their sha256 in the stage's configuration and the results.

Every stage writes `<out>/<stage>/`: checkpoints (resumed automatically), `final/` (save_pretrained),
metrics.jsonl, TensorBoard logs, validation/step_<N>/ (at the stage's last step N: a reconstruction grid
images.png and side-by-side GIFs video_<i>.gif), and summary.json. A stage
whose summary exists is reused, so a killed run picks up where it stopped. The run ends by writing
results/<scale>/tokenizer[_<variant>].json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator

from shared.atomic import atomic_write_json
from shared.training import Run, Step, locks_run_folder, make_accelerator, precision_record, run_loop, start_run
from shared.training.checkpoint import as_record, config_difference
from shared.training.compile import compiled
from shared.training.config import TrainerConfig
from shared.data import StepSchedule, open_dataset, step_loader
from shared.data.transforms import as_size
from shared.paths import run_dir, run_result, seeded, tokenizer_run, tokenizer_run_parts
from shared.provenance import file_sha256, machine_name

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


def is_release_checkpoint(path: Path) -> bool:
    return path.is_file() and path.suffix == ".ckpt"


def source_model(path: Path) -> OmniTokenizer:
    """Weights a stage starts from: a save_pretrained folder, or a public release checkpoint (.ckpt), converted as
    `python -m tokenizer.convert_release` converts it (release-compatible; docs/release_weights.md)."""
    return OmniTokenizer.from_release(str(path)) if is_release_checkpoint(path) else OmniTokenizer.from_pretrained(path)


def init_weights(path: str | Path) -> tuple[OmniTokenizer, str]:
    """The model a run starts from (--init) and the sha256 of its folder or release checkpoint."""
    path = Path(path)
    if not (path.is_dir() or is_release_checkpoint(path)):
        raise FileNotFoundError(f"{path}: --init takes a save_pretrained folder (config.json + "
                                f"diffusion_pytorch_model.safetensors), such as a finished stage's final/, or a public "
                                f"release checkpoint (.ckpt)")
    return source_model(path), file_sha256(path)


def stage_model(model_cfg: OmniTokenizerConfig, stage: StageConfig, stages_done: dict[str, Path]) -> tuple[OmniTokenizer, list]:
    model = OmniTokenizer.from_scale(stage_model_config(model_cfg, stage))
    notes = []
    if stage.init_from:
        src = stages_done.get(stage.init_from) or Path(stage.init_from)
        if not ((src / "config.json").is_file() or is_release_checkpoint(src)):
            raise FileNotFoundError(f"{src}: stage '{stage.name}' starts from '{stage.init_from}', which is neither a "
                                    f"finished stage of this run, a save_pretrained folder nor a release checkpoint")
        notes = transfer_weights(source_model(src), model)
    return model, notes


def stage_record(cfg: TokenizerTrainConfig, model_cfg: OmniTokenizerConfig, stage: StageConfig,
                 init_sha256: str | None = None) -> dict:
    """What a stage's checkpoints and summary record of its configuration, and what a resumed or reused stage
    must match: the stage's settings, the model it trains, the data it trains on (folders, layouts, splits,
    frames; not the number of loader workers), and the sha256 of the weights it starts from when given (--init)."""
    data = {k: v for k, v in as_record(cfg.data).items() if k != "num_workers"}
    record = {**as_record(stage), "data": data, "model_config": as_record(stage_model_config(model_cfg, stage))}
    return record if init_sha256 is None else {**record, "init_sha256": init_sha256}


# ----------------------------------------------------------------------------- one stage


def stage_schedule(cfg: TokenizerTrainConfig, stage: StageConfig) -> TrainerConfig:
    """A stage's steps, learning rate (warm-up, then cosine to min_lr), cadences and guard as the training loop reads
    them; validation at the stage's last step."""
    return TrainerConfig(seed=cfg.seed, steps=stage.steps, lr=stage.lr, min_lr=stage.min_lr,
                         warmup_steps=stage.warmup_steps, decay="cosine", log_every=cfg.log_every,
                         checkpoint_every=cfg.checkpoint_every, keep_checkpoints=cfg.keep_checkpoints,
                         validate_every=stage.steps, max_nonfinite_in_row=cfg.max_nonfinite_in_row,
                         precision=cfg.precision, compile=cfg.compile)


def stage_batches(cfg: TokenizerTrainConfig, stage: StageConfig, accelerator: Accelerator, run: Run):
    """The stage's batches of steps run.start .. run.stop, and its training and validation datasets (a validation
    split that cannot be read fails now, not after the last step)."""
    train_sets, val_sets = build_datasets(cfg.data, stage, cfg.data.eval_resolution or as_size(stage.resolutions[0]))
    for dataset in val_sets.values():
        dataset[0]
    schedule = StepSchedule(lengths={k: len(v) for k, v in train_sets.items()},
                            batch_sizes={"image": stage.batch_size_image, "video": stage.batch_size_video},
                            pattern=stage.pattern, resolutions=stage.resolutions, seed=cfg.seed,
                            rank=accelerator.process_index, world_size=accelerator.num_processes)
    return step_loader(train_sets, schedule, run.start, run.stop, cfg.data.num_workers), train_sets, val_sets


def gan_step(model, loss_fn, opt_g, opt_d, stage: StageConfig, accelerator: Accelerator, unreadable: dict) -> Step:
    """A stage's step (prepared model, loss and optimizers): the generator's loss (reconstruction, codebook or KL,
    perceptual, GAN) steps opt_g in the training loop; then, once the GAN is on, the discriminators' hinge loss on
    the same batch steps opt_d. Unreadable items replaced in a batch are counted in `unreadable`."""
    raw, raw_loss, pair = accelerator.unwrap_model(model), accelerator.unwrap_model(loss_fn), {}

    def inputs(step: int, batch: dict):
        count_unreadable(unreadable, batch["unreadable"], f"stage {stage.name}, step {step}", accelerator)
        return batch["pixels"].to(accelerator.device), raw_loss.gan_on(step)

    def generator(x: torch.Tensor, gan: bool):  # the part of a step train.compile compiles
        x_hat, enc = model(x)
        loss, terms = loss_fn(x, x_hat, enc, gan)
        pair.update(x=x, x_hat=x_hat.detach())  # for the discriminators, after the generator's update
        return loss, {**terms, **enc.stats}

    def discriminators(step: int) -> dict | None:
        x, x_hat = pair.pop("x"), pair.pop("x_hat")
        if not raw_loss.gan_on(step):
            return None
        with accelerator.autocast():
            _, d_terms = loss_fn(x, x_hat, None, discriminator=True)
        opt_d.zero_grad(set_to_none=True)
        accelerator.backward(d_terms["gan_d"])
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        return d_terms

    def compiled_stacks():
        """The generator's loss with the encoder and decoder stacks compiled (the transformer blocks: the step's
        FLOPs). Not the whole loss: the quantizer writes its codebook in its forward (initialisation, dead-code
        restarts), which compiled autograd refuses ("modified by an inplace operation" in the backward, measured),
        and decides on data (codes to restart) where compiled code would break its graph."""
        stacks = {stack: compiled(stack.forward) for stack in (raw.encoder, raw.decoder)}

        def loss(x: torch.Tensor, gan: bool):
            for stack, forward in stacks.items():
                stack.forward = forward
            try:
                return generator(x, gan)
            finally:
                for stack in stacks:
                    del stack.forward

        return loss

    return Step(inputs, generator, model, opt_g, stage.grad_clip or None, after=discriminators,
                compiled=compiled_stacks)


def train_stage(cfg: TokenizerTrainConfig, model_cfg: OmniTokenizerConfig, stage: StageConfig, out: Path,
                accelerator: Accelerator, stages_done: dict[str, Path], stop_at: int | None = None,
                init_sha256: str | None = None) -> dict:
    """Train one stage (resuming from its latest checkpoint); returns its summary.

    stop_at: leave after that many steps (a checkpoint is written), as if the run had been killed. init_sha256: the
    sha256 of the weights the stage starts from, when the run was given them (--init).
    """
    stage_dir, device = out / stage.name, accelerator.device

    # Model, losses, optimizers (the generator's and the discriminators'); resume; data:
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and in every run of this config
    model, notes = stage_model(model_cfg, stage, stages_done)
    model.latent_frames(cfg.data.num_frames)  # a clear error now if the clip length does not fit t
    loss_cfg = cfg.stage_loss(stage)
    loss_fn = TokenizerLoss(loss_cfg)
    opt_g = torch.optim.Adam(model.parameter_groups(stage.edge_lr_scale), lr=stage.lr, betas=stage.betas)
    opt_d = torch.optim.Adam(loss_fn.discriminator_parameters(), lr=stage.lr * loss_cfg.disc_lr_ratio, betas=stage.betas)
    config_record = stage_record(cfg, model_cfg, stage, init_sha256)
    run = start_run(accelerator, stage_dir, stage_schedule(cfg, stage), config_record,
                    {"model": model, "disc2d": loss_fn.disc2d, "disc3d": loss_fn.disc3d}, {"opt_g": opt_g, "opt_d": opt_d},
                    stop_at=stop_at, lr_ratios={"opt_d": loss_cfg.disc_lr_ratio},
                    state={"unreadable": {"count": 0, "first": []}, "notes": notes}, what=f"stage '{stage.name}'")
    model, loss_fn, opt_g, opt_d = accelerator.prepare(model, loss_fn, opt_g, opt_d)
    raw, raw_loss = accelerator.unwrap_model(model), accelerator.unwrap_model(loss_fn)
    batches, train_sets, val_sets = stage_batches(cfg, stage, accelerator, run)
    unreadable = run.state["unreadable"]

    # Train, then validate at the last step:
    trained = run_loop(accelerator, run, gan_step(model, loss_fn, opt_g, opt_d, stage, accelerator, unreadable),
                       batches, lambda step, folder: validate(raw, val_sets, cfg, folder, stage.name),
                       extras=lambda *_: {"unreadable_skipped": unreadable["count"]}, desc=stage.name)
    if trained.stopped_at is not None:
        return {"stage": stage.name, "stopped_at": trained.stopped_at}

    # Final weights, summary:
    checksum = torch.tensor([sum(p.double().sum().item() for p in raw.parameters())], device=device)
    summary = {"stage": stage.name, "quantizer": stage.quantizer, "steps": stage.steps,
               "processes": accelerator.num_processes, "threads": torch.get_num_threads(),
               "wall_seconds": trained.seconds, **precision_record(accelerator), **trained.compile,
               "nonfinite_skipped": trained.nonfinite_skipped,
               "unreadable_skipped": int(accelerator.reduce(torch.tensor([unreadable["count"]], device=device), "sum").item()),
               "unreadable_first": unreadable["first"],  # this rank's; every rank logs its own
               "short_videos_looped": sorted(str(p) for p in getattr(train_sets.get("video"), "looped", ())),
               "perceptual_network": raw_loss.perceptual.source if raw_loss.perceptual is not None else None,
               "init_notes": run.state["notes"], "rank_weight_checksums": accelerator.gather(checksum).tolist(),
               "config": config_record, "loss": dataclasses.asdict(loss_cfg)}
    if accelerator.is_main_process:
        data = {kind: getattr(cfg.data, kind) for kind, letter in (("images", "i"), ("videos", "v")) if letter in stage.pattern}
        training = {"stage": stage.name, "steps": stage.steps, "init_from": stage.init_from, "data": data,
                    "resolutions": stage.resolutions, "processes": accelerator.num_processes,
                    "precision": summary["precision"], "wall_seconds": trained.seconds}
        raw.save_pretrained(stage_dir / "final", card={"training": training, "validation": trained.validation})
        summary["validation"] = trained.validation
        atomic_write_json(stage_dir / "summary.json", summary)
    accelerator.wait_for_everyone()
    return summary


def count_unreadable(unreadable: dict, errors: list[str], where: str, accelerator: Accelerator) -> None:
    """Log the items of a batch that were replaced because they could not be read; keep a count and the first 20."""
    for error in errors:
        log.warning("%s (rank %d): skipped unreadable item: %s", where, accelerator.process_index, error)
    unreadable["count"] += len(errors)
    unreadable["first"] = sorted(set(unreadable["first"]) | set(errors))[:20]


def validate(model: OmniTokenizer, val_sets: dict, cfg: TokenizerTrainConfig, folder: Path, name: str) -> dict:
    """PSNR / SSIM / codebook usage on each validation split, plus a PNG grid and GIFs to look at in `folder`."""
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
        image_grid(x[:, :, 0].cpu(), x_hat[:, :, 0].cpu(), folder / "images.png")
    if "video" in val_sets:
        for i in range(min(3, len(val_sets["video"]))):
            x = val_sets["video"][i]["pixels"][None].to(device)
            x_hat, _ = reconstruct(model, x, cfg.eval_max_tokens)
            side_by_side_video(x[0].cpu(), x_hat[0].cpu(), folder / f"video_{i}.gif")
    return results


# ----------------------------------------------------------------------------- a whole run


@locks_run_folder
def run(scale: str, out: str | Path, stage_names: list[str] | None = None, variant: str | None = None,
        restart: bool = False, results: str | Path | None = None, stop_at: int | None = None,
        overrides: list[str] | None = None, init: str | Path | None = None, **train_overrides) -> dict:
    """Run the stages of a scale's config in order; finished stages (summary.json present) are reused.

    overrides: `section.field=value` strings (--set); train_overrides: top-level `train` fields (dicts merge).
    init: a save_pretrained folder the first stage this call trains starts from (module docstring)."""
    full = tokenizer_config(scale, overrides, **train_overrides)
    cfg = full.train
    stages = cfg.stage_list(variant, Path(out).parent)
    if stage_names:
        unknown = set(stage_names) - {s.name for s in stages}
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; this run has {[s.name for s in stages]}")
    init_sha256, first = None, None
    if init is not None:  # the source's architecture for every stage; the first stage trained starts from it
        source, init_sha256 = init_weights(init)
        full = dataclasses.replace(full, model=model_config(source.config))
        first = next(s.name for s in stages if not stage_names or s.name in stage_names)
        stages = [dataclasses.replace(s, init_from=str(Path(init).resolve())) if s.name == first else s for s in stages]
    out = Path(out)
    # the processes of the run; each stage trains under its own Accelerator, in the precision its checkpoints record
    processes = make_accelerator(find_unused_parameters=True, precision=cfg.precision)
    done: dict[str, Path] = {}
    summaries = {}
    for stage in stages:
        stage_dir, stage_init = out / stage.name, init_sha256 if stage.name == first else None
        if stage_names and stage.name not in stage_names:
            if (stage_dir / "final" / "config.json").is_file():
                done[stage.name] = stage_dir / "final"
            continue
        if restart and processes.is_main_process:
            shutil.rmtree(stage_dir, ignore_errors=True)
        processes.wait_for_everyone()
        if (stage_dir / "summary.json").is_file():
            summaries[stage.name] = json.loads((stage_dir / "summary.json").read_text())
            differences = config_difference(summaries[stage.name].get("config"),
                                            stage_record(cfg, full.model, stage, stage_init))
            if differences:
                raise ValueError(f"{stage_dir}: finished with a different configuration of stage '{stage.name}' "
                                 f"({'; '.join(differences)}); pass --restart to train it again")
            if processes.is_main_process:
                log.info("stage %s: finished earlier, reusing %s", stage.name, stage_dir / "final")
        else:
            stage_dir.mkdir(parents=True, exist_ok=True)
            accelerator = make_accelerator(find_unused_parameters=True, precision=cfg.precision, run=stage_dir)
            summaries[stage.name] = train_stage(cfg, full.model, stage, out, accelerator, done, stop_at, stage_init)
            if "stopped_at" in summaries[stage.name]:
                return summaries
        done[stage.name] = stage_dir / "final"
    report = {"scale": scale, "variant": variant, "seed": cfg.seed, "machine": machine_name(),
              "init": None if init is None else {"weights": str(Path(init).resolve()), "sha256": init_sha256},
              "data": {"images": cfg.data.images, "videos": cfg.data.videos},
              "out": str(out), "stages": summaries,
              "wall_seconds": sum(s.get("wall_seconds", 0.0) for s in summaries.values())}
    if results and processes.is_main_process:
        atomic_write_json(results, report)
    return report


def _edge(value: float) -> str:
    """A block-edge ratio for the printed table."""
    return f"{value:.2f}"


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
    ap.add_argument("--init", default=None, help="a save_pretrained folder or a public release .ckpt the first stage "
                    "trained starts from (its architecture and weights, the codebook kept, a fresh optimizer; its sha256 recorded)")
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
    report = run(args.scale, out, args.stage, args.variant, args.restart, results, overrides=args.set, init=args.init,
                 **overrides)
    print_summary(report)
    print(f"results: {results}")


if __name__ == "__main__":
    main()
