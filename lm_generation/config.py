"""The LM generator's configuration: dataclasses mapped from configs/<scale>.yaml (tiny, small, paper).

    cfg = lm_config("small", overrides=["train.steps=100", "model.layers=4"], task="video")

Sections: `model` (the transformer's shape; the vocabulary and sequence length come from the extracted codes),
`sizes` (other named shapes of that scale: paper's 227M), `data` (what extraction encodes), `train`, `sample`,
and `tasks` (overrides of `train` / `sample` for the video and frame-prediction tasks, 5x longer sequences).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from shared.config import ConfigError, apply_overrides, at_least, build, check_finite, check_seed, read_yaml, scale_file
from shared.training.compile import check_compile
from shared.training.config import TrainerConfig

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class GPTShape:
    layers: int = 24
    heads: int = 16
    width: int = 1536
    intermediate: int = 3584  # SwiGLU inner width
    attention_dropout: float = 0.0
    rope_theta: float = 10000.0

    def __post_init__(self):
        at_least(self, layers=1, heads=1, width=1, intermediate=1)
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must split into {self.heads} equal heads")


@dataclass
class LMDataConfig:
    resolution: int = 256
    num_frames: int = 17  # frames of a clip (17 -> 5 latent frames at t = 4)
    frame_stride: int = 1
    video_layout: Literal["ucf101", "classes", "plain"] = "ucf101"
    image_split: str = "train"
    video_split: str = "train"
    # the embedded data: how many random crops (images) and clips (videos) to encode (the real folders: all)
    embedded_images: int = 2048
    embedded_clips: int = 2048
    flip: bool = True  # also store each item's horizontal flip (LlamaGen's default augmentation)
    # images: LlamaGen's ten-crop instead: each image resized to resolution * crop_range, its 4 corner and centre
    # crops at `resolution`, each also flipped when `flip` (10 rows per image)
    ten_crop: bool = False
    crop_range: float = 1.1
    shard_size: int = 1024  # source items per shard
    batch_size: int = 16  # items encoded at once

    def __post_init__(self):
        at_least(self, resolution=1, num_frames=1, frame_stride=1, embedded_images=1, embedded_clips=1, shard_size=1, batch_size=1)


@dataclass
class LMTrainConfig(TrainerConfig):
    """shared.training.TrainerConfig's fields (the LM's defaults), then the LM's own."""
    steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 1e-4
    log_every: int = 10
    checkpoint_every: int = 200
    validate_every: int = 500
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    class_dropout: float = 0.1  # share of sequences whose class token becomes the null class (for guidance)
    conditional: bool = True  # false: every sequence gets the null class (unconditional, as K600)
    cond_latent_frames: int = 2  # frame prediction: latent frames given (with tubes of 4 frames, 2 = the first 5)
    # recompute each layer's activations in the backward pass instead of keeping them (transformers' gradient
    # checkpointing): about a third more compute for memory that no longer grows with depth x sequence
    gradient_checkpointing: bool = False

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.class_dropout <= 1:
            raise ValueError(f"class_dropout must be in [0, 1], got {self.class_dropout}")


def check_settings(guidance_scale: float, cfg_interval: tuple[float, float] | None, temperature: float,
                   top_k: int, top_p: float) -> None:
    """Refuse sampling settings that would silently give wrong codes (NaN guidance makes every code the last entry,
    top_p = 0 masks even the most likely token) with an error that names the setting."""
    check_finite("guidance_scale", guidance_scale)
    check_finite("temperature", temperature)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0: no top-k), got {top_k!r}")
    check_finite("top_p", top_p)
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1: no nucleus filtering), got {top_p}")
    if cfg_interval is not None:
        if len(cfg_interval) != 2:
            raise ValueError(f"cfg_interval must be (start, end), got {cfg_interval!r}")
        for value in cfg_interval:
            check_finite("cfg_interval", value)
        a, b = cfg_interval
        if not 0 <= a < b <= 1:
            raise ValueError(f"cfg_interval must be (start, end) with 0 <= start < end <= 1 (shares of the sequence), "
                             f"got {tuple(cfg_interval)}")


@dataclass
class LMSampleConfig:
    # classifier-free guidance scales, one samples folder each (1.0: none); validation grids use the last
    guidance_scales: tuple[float, ...] = (1.0, 1.5)
    cfg_interval: Optional[tuple[float, float]] = None  # guidance only on this share of the generated tokens
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    seed: int = 0
    per_class: int = 8
    batch_size: int = 16
    grid_classes: int = 8  # classes shown in the validation grid
    # decode steps through torch.compile over a static KV cache: true, false, or "auto": where a measurement of a few
    # steps shows it faster (sampling.py)
    compile: Literal["auto", True, False] = False

    def __post_init__(self):
        if not self.guidance_scales:
            raise ValueError("guidance_scales must name at least one scale (1.0: no guidance)")
        for scale in self.guidance_scales:
            check_settings(scale, self.cfg_interval, self.temperature, self.top_k, self.top_p)
        at_least(self, per_class=1, batch_size=1, grid_classes=1)
        check_seed(self.seed)
        check_compile(self.compile)


@dataclass
class LMConfig:
    model: GPTShape = field(default_factory=GPTShape)
    sizes: dict[str, GPTShape] = field(default_factory=dict)
    data: LMDataConfig = field(default_factory=LMDataConfig)
    train: LMTrainConfig = field(default_factory=LMTrainConfig)
    sample: LMSampleConfig = field(default_factory=LMSampleConfig)
    # per task ("video", "frames"): overrides of the train and sample sections, e.g. {"train": {"steps": 500}}
    tasks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def shape(self, size: str | None) -> GPTShape:
        """The model shape: `model`, or the named entry of `sizes`."""
        if size is None:
            return self.model
        if size not in self.sizes:
            raise ConfigError(f"no model size {size!r} in this config; sizes: {sorted(self.sizes) or 'none'}")
        return self.sizes[size]


def lm_config(scale: str | Path, overrides: list[str] | None = None, task: str | None = None) -> LMConfig:
    """A scale's config; with `task`, its `tasks[task]` sections applied first, then the `overrides` (--set)."""
    values = read_yaml(scale_file(scale, CONFIG_DIR))
    for section, changes in (values.get("tasks", {}).get(task, {}) if task else {}).items():
        if section not in ("train", "sample"):
            raise ConfigError(f"{scale}: tasks.{task}.{section}: only train and sample can be set per task")
        values[section] = {**values.get(section, {}), **changes}
    return build(LMConfig, apply_overrides(values, overrides), str(scale_file(scale, CONFIG_DIR)))
