"""Training configuration: one YAML per scale (configs/<scale>.yaml, section `train`) mapped onto dataclasses.

A run is a list of stages. The published schedule is image (VQ, fixed resolution) -> joint (VQ, images
and videos alternating, several resolutions) -> kl (KL fine-tuning); the ablations of Tables 7 and 10
are other stage lists in the same file (`variants`), not code. `stage_defaults` holds what the stages of a
file share, so that each stage states only what differs.

`tokenizer_config(scale, overrides)` reads a scale's YAML once into a `TokenizerConfig` (model + train), applying
`--set section.field=value` overrides; every value is type-checked (shared/config.py).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.config import ConfigError, apply_overrides, build, read_yaml, scale_file
from shared.paths import model_dir, other_run_stage, seeded, tokenizer_run_parts
from shared.training.compile import check_compile

from .config import CONFIG_DIR, OmniTokenizerConfig


@dataclass
class LossConfig:
    recon: str = "l2"  # the paper's L2; "l1" as in the release
    recon_weight: float = 1.0
    # L1 between the reconstruction's and the input's pixel steps (horizontal and vertical image gradients of every
    # frame): penalises steps the input does not have, such as edges along the patch grid
    gradient_weight: float = 0.0
    # L1 between the reconstruction's and the input's steps from one frame to the next (videos): the motion a judge
    # of clips reads, which an L2 on each frame's pixels weighs little
    motion_weight: float = 0.0
    perceptual_weight: float = 4.0  # LPIPS (VGG16); one random frame per video
    perceptual_weights: str | None = None  # local torchvision vgg16 state dict; None: torchvision download
    allow_random_perceptual: bool = False  # offline only: fixed-seed random VGG16, recorded in the metadata
    gan_weight: float = 0.01  # hinge; 2-D PatchGAN for images, 3-D for videos
    feature_matching_weight: float = 4.0
    disc_start: int = 0  # step of the stage at which the GAN terms start
    disc_lr_ratio: float = 1.0  # discriminator lr = ratio * generator lr
    disc_channels: int = 64
    disc_layers: int = 3


@dataclass
class TokenizerDataConfig:
    images: str = "embedded"  # "embedded" (photos) or a folder: ImageNet layout or a plain folder
    videos: str = "embedded"  # "embedded" (clips) or a folder (layout below)
    video_layout: str = "ucf101"  # ucf101 | classes | plain
    image_splits: tuple[str, str] = ("train", "val")
    video_splits: tuple[str, str] = ("train", "test")
    num_frames: int = 17
    frame_stride: int = 1
    fps: float | None = None  # when set, the stride follows each video's frame rate
    eval_resolution: int | None = None  # validation size; None: the stage's first training resolution
    num_workers: int = 0
    val_images: int = 50_000  # at most this many validation items are evaluated
    val_videos: int = 10_000


@dataclass
class StageConfig:
    name: str
    quantizer: str = "vq"
    # a stage of this run ("image"), another run's stage ("tokenizer/image", shared.paths), a save_pretrained folder
    init_from: str | None = None
    steps: int = 1000
    pattern: str = "i"  # one letter a step, cycling: i = image batch, v = video batch
    resolutions: list[int | tuple[int, int]] = field(default_factory=lambda: [256])  # per batch: side or (h, w)
    batch_size_image: int = 8  # per process
    batch_size_video: int = 2
    temporal_patch_size: int | None = None  # overrides the model's t (stage 1 of the paper uses 2)
    lr: float = 1e-3
    min_lr: float = 5e-5
    # lr (and min_lr) multiplier of the layers that meet pixels or latents: the patch embeddings, the head's
    # projection, post_head and the pixel heads (OmniTokenizer.parameter_groups)
    edge_lr_scale: float = 1.0
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    loss: dict = field(default_factory=dict)  # overrides of LossConfig for this stage
    model: dict = field(default_factory=dict)  # overrides of the model config (ablations: attention kinds)


@dataclass
class TokenizerTrainConfig:
    seed: int = 0
    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stages: list[StageConfig] = field(default_factory=list)
    variants: dict[str, list[StageConfig]] = field(default_factory=dict)
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    max_nonfinite_in_row: int = 20
    eval_batch_size: int = 4
    eval_max_tokens: int | None = 65536
    # None: bf16 autocast on CUDA, fp32 on a CPU; "auto": also the CPU's bf16 where it measures faster; "fp32"/"bf16"
    precision: str | None = None
    # torch.compile over each stage's model and generator loss: true, false, or "auto": where a measurement at a stage's
    # start shows it faster (shared.training.compile); recorded in the stage's checkpoints and summary
    compile: Literal["auto", True, False] = False

    def __post_init__(self):
        check_compile(self.compile)

    def stage_loss(self, stage: StageConfig) -> LossConfig:
        return build(LossConfig, {**dataclasses.asdict(self.loss), **stage.loss}, f"stage {stage.name} loss")

    def stage_list(self, variant: str | None, runs: str | Path) -> list[StageConfig]:
        """The default schedule's stages (variant None) or a variant's. A stage that starts from another run's stage
        ("<run>/<stage>") starts from that run's model in `runs` (the folder of this scale's runs, the run's own
        folder's parent), the run trained with this config's seed: each seed's ablations branch from the default run
        of the same seed."""
        if variant is not None and variant not in self.variants:
            raise ValueError(f"unknown variant {variant!r}; this config has {sorted(self.variants)}")
        stages = self.stages if variant is None else self.variants[variant]
        return [self._resolved(s, runs) for s in stages]

    def _resolved(self, stage: StageConfig, runs: str | Path) -> StageConfig:
        source = other_run_stage(stage.init_from)
        if not source:
            return stage
        run, name = source
        return dataclasses.replace(stage, init_from=str(model_dir(runs, seeded(run, self.seed), name)))


@dataclass
class TokenizerConfig:
    """A whole scale: the model and its training."""
    model: OmniTokenizerConfig
    train: TokenizerTrainConfig


def _stages(items: list[dict], defaults: dict, source: str) -> list[StageConfig]:
    return [build(StageConfig, {**defaults, **s}, f"{source} stage {s.get('name', i)}") for i, s in enumerate(items)]


def _train(raw: dict, overrides: dict, source: str) -> TokenizerTrainConfig:
    raw = dict(raw)
    for key in ("data", "loss"):
        if key in overrides:
            raw[key] = {**(raw.get(key) or {}), **overrides.pop(key)}
    raw.update(overrides)
    defaults = raw.pop("stage_defaults", None) or {}
    data = build(TokenizerDataConfig, raw.pop("data", None) or {}, f"{source} data")
    loss = build(LossConfig, raw.pop("loss", None) or {}, f"{source} loss")
    stages = _stages(raw.pop("stages", None) or [], defaults, source)
    variants = {k: _stages(v, defaults, f"{source} variant {k}") for k, v in (raw.pop("variants", None) or {}).items()}
    for name in variants:
        if re.search(r"_seed\d+$", name):
            raise ConfigError(f"{source}: variant '{name}': a name ending in _seed<digits> would read as a seed of "
                              f"variant '{name.rpartition('_seed')[0]}' (shared.paths.seeded); rename it")
    cfg = build(TokenizerTrainConfig, {**raw, "data": data, "loss": loss, "stages": stages, "variants": variants}, source)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: stage names must be unique, got {names}")
    _check_other_runs(cfg, source)
    return cfg


def _check_other_runs(cfg: TokenizerTrainConfig, source: str) -> None:
    """A stage that starts from another run's stage ("<run>/<stage>") names a run of this config, without a seed,
    and one of its stages."""
    for variant, stages in [(None, cfg.stages), *cfg.variants.items()]:
        for stage in stages:
            ref = other_run_stage(stage.init_from)
            if not ref:
                continue
            (run, name), (other, seed) = ref, tokenizer_run_parts(ref[0])
            where = f"{source}: {'stage' if variant is None else f'variant {variant!r} stage'} {stage.name!r} " \
                    f"starts from {stage.init_from!r}"
            if seed:
                raise ConfigError(f"{where}: name the run without a seed (with seed k the stage starts from the "
                                  "run's seed-k copy by itself)")
            if other is not None and other not in cfg.variants:
                raise ConfigError(f"{where}: this config has no variant {other!r} (variants: {sorted(cfg.variants)})")
            theirs = [s.name for s in (cfg.stages if other is None else cfg.variants[other])]
            if name not in theirs:
                raise ConfigError(f"{where}: run {run!r} has no stage {name!r} (its stages: {theirs})")


def tokenizer_config(scale: str, overrides: list[str] | None = None, **train_overrides) -> TokenizerConfig:
    """A scale's YAML (or a YAML path) as a TokenizerConfig. overrides: `section.field=value` strings (--set);
    train_overrides: top-level `train` fields (data/loss given as dicts merge into the file's)."""
    path = scale_file(scale, CONFIG_DIR)
    values = apply_overrides(read_yaml(path), overrides)
    unknown = sorted(set(values) - {"model", "train"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; a tokenizer config has `model:` and `train:`")
    return TokenizerConfig(build(OmniTokenizerConfig, values.get("model") or {}, f"{path} model"),
                           _train(values.get("train") or {}, train_overrides, f"{path} train"))


def train_config(scale: str, **overrides) -> TokenizerTrainConfig:
    """The `train` section of a scale's YAML; overrides replace top-level fields (data/loss as dicts merge)."""
    return tokenizer_config(scale, **overrides).train
