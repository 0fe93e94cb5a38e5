"""One call from class labels to pixels: VAE (OmniTokenizer KL) + denoiser (DiT or Latte) + diffusers scheduler.

    pipe = LatentDiffusionPipeline.from_pretrained("runs/small/dit_imagenet/final")
    images = pipe(labels=[0, 3, 7], guidance_scale=4.0, seed=0)      # (3, 3, 1, 64, 64) in [-1, 1]
    clips = LatentDiffusionPipeline.from_pretrained("runs/small/latte_ucf/final")(labels=[1, 2], sampler="ddim", steps=50)

A pipeline folder holds `model/` (the EMA weights, diffusers save_pretrained), `vae/` (the tokenizer's
save_pretrained) and `pipeline.json` (diffusion settings, latent shape, the latent scale measured at extraction,
class names, where the latents came from, the sha256 of `vae/`). Loading refuses a `vae/` other than the one saved
(another KL tokenizer decodes the latents into other pixels, silently) and keeps the sha256 of each part as loaded
(`provenance`: what a samples folder records).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from shared.atomic import atomic_write_json, follow_umask, read_json_object
from shared.config import build, check_finite, check_seed
from shared.labels import class_labels
from shared.provenance import check_sha256, component_sha256, earlier_version, file_sha256
from shared.training.precision import autocast, check_computed, choose_precision
from tokenizer import OmniTokenizer

from .config import DiffusionConfig
from .diffusion import make_scheduler, sample
from .models import load_model

PIPELINE_FILE = "pipeline.json"
COMPONENTS = {"model": "model", "vae": "vae"}  # the parts a samples folder records
LATENT_DIMS = {"DiT": 3, "Latte": 4}  # one sample's latents: (C, h, w) images, (C, T', h, w) clips


def check_vae(vae: OmniTokenizer, where) -> None:
    """The denoiser's latents are a KL tokenizer's posteriors: a VQ tokenizer cannot decode them."""
    if vae.config.quantizer != "kl":
        raise ValueError(f"{where}: a {vae.config.quantizer.upper()} tokenizer; the pipeline's VAE must be the KL "
                         f"tokenizer (OmniTokenizer-VAE) whose latents the denoiser learnt")


class LatentDiffusionPipeline:
    def __init__(self, vae: OmniTokenizer, model, diffusion: DiffusionConfig, latent_shape: tuple[int, ...],
                 latent_scale: float, classes: list[str] | None = None, info: dict | None = None,
                 precision: str = "fp32"):
        """latent_shape: one sample's latents, (C, h, w) for images or (C, T', h, w) for clips. latent_scale: the
        factor the denoiser's latents were multiplied by (measured at extraction, as diffusers keeps
        `vae.config.scaling_factor`). precision: the denoiser's, "fp32" or "bf16" (autocast; the scheduler's
        arithmetic and the VAE's decoding stay fp32)."""
        check_computed(precision)
        check_vae(vae, "the pipeline's VAE")
        self.vae, self.model, self.diffusion, self.precision = vae.eval(), model.eval(), diffusion, precision
        self.latent_shape, self.latent_scale = tuple(latent_shape), float(latent_scale)
        self.classes, self.info = classes or [], info or {}
        self.provenance: dict[str, str] = {}  # "<part>_sha256" of the folder it was loaded from

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
        return self.vae.decode(z).sample.clamp(-1, 1)

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
            if num_samples is not None and num_samples != n:
                raise ValueError(f"num_samples {num_samples!r} with {n} labels: a class-conditional model draws one "
                                 f"sample per label; pass the labels alone")
        else:
            if labels is not None:
                raise ValueError("this model is unconditional: pass num_samples, not labels")
            n = 1 if num_samples is None else num_samples
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        shape = self.latent_shape if latent_size is None else (*self.latent_shape[:-2], *self._grid(latent_size))
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

    def _grid(self, latent_size) -> tuple[int, int]:
        """latent_size checked: two positive integers the patch size divides."""
        p = self.model.config.patch_size
        if (not isinstance(latent_size, (tuple, list)) or len(latent_size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % p == 0
                           for v in latent_size)):
            raise ValueError(f"latent_size must be (h, w): two positive integers divisible by the patch size {p}, got "
                             f"{latent_size!r}")
        return tuple(latent_size)

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.model.save_pretrained(str(folder / "model"))
        self.vae.save_pretrained(folder / "vae")
        atomic_write_json(folder / PIPELINE_FILE, {"diffusion": dataclasses.asdict(self.diffusion),
                                                   "latent_shape": list(self.latent_shape),
                                                   "latent_scale": self.latent_scale,
                                                   "classes": self.classes, "info": self.info,
                                                   "vae_sha256": file_sha256(folder / "vae")})
        follow_umask(folder)
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
        hashes = component_sha256(folder, COMPONENTS)
        if "vae_sha256" not in record:
            raise ValueError(earlier_version(path, "no vae_sha256 of its VAE",
                                             "train it again (python -m diffusion_generation.train)"))
        check_sha256(folder / "vae", record["vae_sha256"], path,
                     "Put back the vae/ the pipeline was saved with: the denoiser learnt its latents",
                     hashes["vae_sha256"])
        vae, model = OmniTokenizer.from_pretrained(folder / "vae"), load_model(folder / "model")
        check_vae(vae, folder / "vae")
        shape, dims = record.get("latent_shape"), LATENT_DIMS[type(model).__name__]
        if (not isinstance(shape, list) or len(shape) != dims or not all(isinstance(v, int) and v > 0 for v in shape)
                or shape[0] != vae.config.latent_dim):
            raise ValueError(f"{path}: latent_shape must be {'[C, T, h, w]' if dims == 4 else '[C, h, w]'} for its "
                             f"{type(model).__name__} with C = the VAE's {vae.config.latent_dim} channels, got {shape!r}")
        scale = record["latent_scale"]
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"{path}: latent_scale must be a positive number, got {scale!r}")
        pipe = cls(vae, model, diffusion, shape, scale, record.get("classes"), record.get("info"), precision)
        pipe.provenance = hashes
        return pipe.to(device)
