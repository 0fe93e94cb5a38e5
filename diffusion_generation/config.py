"""Configuration of the diffusion generators: one YAML per scale (configs/<scale>.yaml) with a section per
experiment (`dit`: images, `latte`: videos), each mapped onto `ExperimentConfig`.

    cfg = experiment_config("small", "dit", overrides=["train.steps=200"])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared.config import at_least, check_finite, check_seed, load_config
from shared.training.config import TrainerConfig

CONFIG_DIR = Path(__file__).parent / "configs"
EXPERIMENTS = ("dit", "latte")


@dataclass
class ModelConfig:
    """The denoiser. `latte` alternates spatial and temporal blocks (depth counts both kinds)."""
    kind: Literal["dit", "latte"] = "dit"
    in_channels: int = 8  # latent channels of the tokenizer
    patch_size: int = 2
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000  # 0: unconditional
    class_dropout_prob: float = 0.1  # label dropped (once per sample) for classifier-free guidance
    learn_sigma: bool = True  # output 2 x in_channels: epsilon and the variance interpolation

    def __post_init__(self):
        if self.hidden_size < 1 or self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must split into num_heads {self.num_heads} equal heads")
        at_least(self, depth=1, patch_size=1, in_channels=1, num_classes=0)
        if not 0 <= self.class_dropout_prob < 1:
            raise ValueError(f"class_dropout_prob must be in [0, 1), got {self.class_dropout_prob}")


@dataclass
class DiffusionConfig:
    train_steps: int = 1000  # T, linear betas
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sampler: Literal["ddpm", "ddim"] = "ddpm"  # ddpm: learned-range variance (DiT's sampler); ddim: eta 0
    sampling_steps: int = 250

    def __post_init__(self):
        at_least(self, train_steps=1, sampling_steps=1)
        # betas are variances added per step: outside (0, 1) the forward process is no diffusion (beta 1 erases the
        # signal at once, beta > 1 gives negative alphas and NaN samples), and the schedule rises
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"beta_start and beta_end must satisfy 0 < beta_start < beta_end < 1, got beta_start "
                             f"{self.beta_start}, beta_end {self.beta_end}")
        if self.sampling_steps > self.train_steps:
            raise ValueError(f"sampling_steps {self.sampling_steps} must be at most train_steps {self.train_steps}")


@dataclass
class DiffusionDataConfig:
    """What the latents are extracted from (extract_latents.py)."""
    source: str = "embedded"  # "embedded" (photos / clips) or a folder (ImageNet layout, UCF-101 ...)
    split: str = "train"
    video_layout: str = "ucf101"  # ucf101 | classes | plain
    resolution: int = 256
    num_frames: int = 1  # 1: images; 17: clips
    frame_stride: int = 1  # the release's "frame interval" (3 for UCF-101)
    items: int | None = None  # at most this many source items (None: the whole split; embedded: its length)
    flip: bool = True  # also store each item's horizontal flip
    batch_size: int = 16

    def __post_init__(self):
        at_least(self, resolution=1, num_frames=1, frame_stride=1, batch_size=1)
        if self.items is not None:
            at_least(self, items=1)


@dataclass
class DiffusionTrainConfig(TrainerConfig):
    """shared.training.TrainerConfig's fields (DiT's defaults: constant lr, no warm-up), then the denoisers' own."""
    steps: int = 400_000
    batch_size: int = 256  # per process
    checkpoint_every: int = 10_000
    validate_every: int = 50_000
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    grad_clip: float | None = None  # max gradient norm; None: no clipping
    grad_clip_from: int = 0  # clip from this step on (Latte's release: 0.1 from step 100k)
    num_workers: int = 0


@dataclass
class DiffusionSampleConfig:
    """Sampling for evaluation (sample.py): how many per class, and the guidance scales to write (one folder each;
    1.0: none). Validation grids use the last."""
    per_class: int = 50
    classes: int | None = None  # sample the first N classes (None: all)
    guidance_scales: tuple[float, ...] = (1.0,)
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        at_least(self, per_class=1, batch_size=1)
        check_seed(self.seed)
        if self.classes is not None:
            at_least(self, classes=1)
        if not self.guidance_scales:
            raise ValueError("guidance_scales must name at least one scale (1.0: no guidance)")
        for scale in self.guidance_scales:
            check_finite("guidance_scales", scale)


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DiffusionDataConfig = field(default_factory=DiffusionDataConfig)
    train: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)
    sample: DiffusionSampleConfig = field(default_factory=DiffusionSampleConfig)


def experiment_config(scale: str | Path, experiment: str, overrides: list[str] | None = None) -> ExperimentConfig:
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {EXPERIMENTS}, got {experiment!r}")
    return load_config(ExperimentConfig, scale, CONFIG_DIR, overrides, section=experiment)
