"""One call from class labels to pixels: VAE (OmniTokenizer KL) + denoiser (DiT or Latte) + diffusers scheduler.

    pipe = LatentDiffusionPipeline.from_pretrained("runs/small/dit_imagenet/final")
    images = pipe(labels=[0, 3, 7], guidance_scale=4.0, seed=0)      # (3, 3, 1, 64, 64) in [-1, 1]
    clips = LatentDiffusionPipeline.from_pretrained("runs/small/latte_ucf/final")(labels=[1, 2], sampler="ddim", steps=50)

A pipeline folder holds `model/` (the EMA weights, diffusers save_pretrained), `vae/` (the tokenizer's
save_pretrained) and `pipeline.json` (diffusion settings, latent shape, the latent scale measured at extraction,
class names, where the latents came from).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from shared.atomic import atomic_write_json, read_json_object
from shared.config import build, check_finite, check_seed
from shared.labels import class_labels
from shared.provenance import earlier_version
from shared.training.precision import autocast, check_computed, choose_precision
from tokenizer import OmniTokenizer

from .config import DiffusionConfig
from .diffusion import make_scheduler, sample
from .models import load_model

PIPELINE_FILE = "pipeline.json"


class LatentDiffusionPipeline:
    def __init__(self, vae: OmniTokenizer, model, diffusion: DiffusionConfig, latent_shape: tuple[int, ...],
                 latent_scale: float, classes: list[str] | None = None, info: dict | None = None,
                 precision: str = "fp32"):
        """latent_shape: one sample's latents, (C, h, w) for images or (C, T', h, w) for clips. latent_scale: the
        factor the denoiser's latents were multiplied by (measured at extraction, as diffusers keeps
        `vae.config.scaling_factor`). precision: the denoiser's, "fp32" or "bf16" (autocast; the scheduler's
        arithmetic and the VAE's decoding stay fp32)."""
        check_computed(precision)
        self.vae, self.model, self.diffusion, self.precision = vae.eval(), model.eval(), diffusion, precision
        self.latent_shape, self.latent_scale = tuple(latent_shape), float(latent_scale)
        self.classes, self.info = classes or [], info or {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> "LatentDiffusionPipeline":
        self.vae.to(device)
        self.model.to(device)
        return self

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> pixels (N, 3, T, H, W) in [-1, 1]."""
        z = latents / self.latent_scale
        if z.ndim == 4:  # images: one latent frame
            z = z.unsqueeze(2)
        return self.vae.decode(z).clamp(-1, 1)

    @torch.no_grad()
    def __call__(self, labels=None, num_samples: int | None = None, guidance_scale: float = 1.0,
                 sampler: str | None = None, steps: int | None = None, seed: int = 0,
                 latent_size: tuple[int, int] | None = None, progress: bool = False) -> torch.Tensor:
        """Pixels (N, 3, T, H, W) in [-1, 1]. labels: class indices (class-conditional) or None with num_samples
        (unconditional). guidance_scale: classifier-free guidance (1.0: none). latent_size: (h, w) to sample
        another size than the training one."""
        conditional = self.model.config.num_classes > 0
        if conditional:
            if labels is None:
                raise ValueError(f"this model is class-conditional ({self.model.config.num_classes} classes): "
                                 f"pass labels")
            labels = class_labels(labels, self.model.config.num_classes)
            n = labels.shape[0]
        else:
            if labels is not None:
                raise ValueError("this model is unconditional: pass num_samples, not labels")
            n = 1 if num_samples is None else num_samples
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        shape = self.latent_shape if latent_size is None else (*self.latent_shape[:-2], *latent_size)
        scheduler = make_scheduler(self.diffusion, self.model.config.learn_sigma, sampler, steps)
        check_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        check_finite("guidance_scale", guidance_scale)
        if guidance_scale != 1.0 and conditional and not self.model.config.class_dropout_prob:
            raise ValueError("this model was trained without class dropout (class_dropout_prob 0): it has no null "
                             "class to guide against; use guidance_scale 1")
        with autocast(self.precision, self.device):
            latents = sample(self.model, scheduler, (n, *shape), labels, guidance_scale, generator, self.device,
                             progress)
        return self.decode(latents)

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.model.save_pretrained(str(folder / "model"))
        self.vae.save_pretrained(folder / "vae")
        atomic_write_json(folder / PIPELINE_FILE, {"diffusion": dataclasses.asdict(self.diffusion),
                                                   "latent_shape": list(self.latent_shape),
                                                   "latent_scale": self.latent_scale,
                                                   "classes": self.classes, "info": self.info})
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, device=None, precision: str | None = None) -> "LatentDiffusionPipeline":
        """precision: "fp32", "bf16" or "auto" (bf16 where this machine's matmul measures it faster); None: bf16 on
        CUDA, fp32 on a CPU (shared.training.precision.choose_precision)."""
        folder = Path(folder)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        precision, _ = choose_precision(precision, device)
        path = folder / PIPELINE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; expected a folder written by the diffusion trainer "
                                    f"(model/, vae/, {PIPELINE_FILE})")
        record = read_json_object(path, "pipeline record")
        if "diffusion" not in record:
            raise ValueError(f"{path}: has no 'diffusion' settings; expected a file written by the diffusion trainer")
        lacks = (["no latent_scale: the denoiser's config held it"] if "latent_scale" not in record else []) + (
            ["a guidance_scale among its diffusion settings"] if "guidance_scale" in record["diffusion"] else [])
        if lacks:
            raise ValueError(earlier_version(path, "; ".join(lacks),
                                             "train it again (python -m diffusion_generation.train)"))
        diffusion = build(DiffusionConfig, record["diffusion"], str(path))
        vae, model = OmniTokenizer.from_pretrained(folder / "vae"), load_model(folder / "model")
        shape = record.get("latent_shape")
        if (not isinstance(shape, list) or len(shape) not in (3, 4) or not all(isinstance(v, int) and v > 0 for v in shape)
                or shape[0] != vae.config.latent_dim):
            raise ValueError(f"{path}: latent_shape must be [C, h, w] (images) or [C, T', h, w] (clips) with C = the "
                             f"VAE's {vae.config.latent_dim} channels, got {shape!r}")
        scale = record["latent_scale"]
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"{path}: latent_scale must be a positive number, got {scale!r}")
        pipe = cls(vae, model, diffusion, shape, scale, record.get("classes"), record.get("info"), precision)
        return pipe.to(device)
