"""One call from class labels to pixels: VAE (OmniTokenizer KL) + denoiser (DiT or Latte) + diffusers scheduler.

    pipe = LatentDiffusionPipeline.from_pretrained("runs/small/dit_imagenet/final")
    images = pipe(labels=[0, 3, 7], guidance_scale=4.0, seed=0)      # (3, 3, 1, 64, 64) in [-1, 1]
    clips = LatentDiffusionPipeline.from_pretrained("runs/small/latte_ucf/final")(labels=[1, 2], sampler="ddim", steps=50)

A diffusers `DiffusionPipeline`: one folder saves and loads the whole generator. It holds `transformer/` (the EMA
weights of the DiT or Latte), `vae/` (the tokenizer, whose `config.scaling_factor` is the latent scale measured at
extraction) and `model_index.json` (the two components, the diffusion settings, the latent shape, class names,
where the latents came from, and the sha256 of `vae/`). Loading refuses a `vae/` other than the one saved (another
KL tokenizer decodes the latents into other pixels, silently) and keeps the sha256 of each part as loaded
(`provenance`: what a samples folder records). The sampler is built at each call from the diffusion settings, DDPM
or DDIM at any step count (diffusion.py), so the folder holds no scheduler of its own.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from shared.atomic import follow_umask, read_json_object
from shared.config import build, check_finite, check_seed
from shared.labels import class_labels
from shared.provenance import check_sha256, component_sha256, earlier_version, file_sha256
from shared.training.precision import autocast, check_computed, choose_precision
from tokenizer import OmniTokenizer

from .config import DiffusionConfig
from .diffusion import make_scheduler, sample
from .dit import DiT
from .latte import Latte

COMPONENTS = {"model": "transformer", "vae": "vae"}  # the parts a samples folder records (as model_sha256, vae_sha256)
LATENT_DIMS = {"DiT": 3, "Latte": 4}  # one sample's latents: (C, h, w) images, (C, T', h, w) clips
REMEDY = "train it again (python -m diffusion_generation.train)"


def check_vae(vae: OmniTokenizer, where) -> None:
    """The denoiser's latents are a KL tokenizer's posteriors: a VQ tokenizer cannot decode them."""
    if vae.config.quantizer != "kl":
        raise ValueError(f"{where}: a {vae.config.quantizer.upper()} tokenizer; the pipeline's VAE must be the KL "
                         f"tokenizer (OmniTokenizer-VAE) whose latents the denoiser learnt")


class LatentDiffusionPipeline(DiffusionPipeline):
    def __init__(self, vae: OmniTokenizer, transformer: DiT | Latte, diffusion: DiffusionConfig | dict | None = None,
                 latent_shape: list[int] | None = None, classes: list[str] | None = None, info: dict | None = None,
                 vae_sha256: str | None = None):
        """vae: the KL tokenizer, its config.scaling_factor the factor the denoiser's latents were multiplied by
        (measured at extraction). diffusion: the DiffusionConfig or its fields. latent_shape: one sample's latents, (C, h, w)
        for images or (C, T', h, w) for clips. vae_sha256: the sha256 of vae/ as saved (save_pretrained writes it)."""
        super().__init__()
        check_vae(vae, "the pipeline's VAE")
        where = "the pipeline's latent_shape"
        dims = LATENT_DIMS[type(transformer).__name__]
        if (not isinstance(latent_shape, (list, tuple)) or len(latent_shape) != dims
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in latent_shape)
                or latent_shape[0] != vae.config.latent_dim):
            raise ValueError(f"{where} must be {'[C, T, h, w]' if dims == 4 else '[C, h, w]'} for its "
                             f"{type(transformer).__name__} with C = the VAE's {vae.config.latent_dim} channels, got "
                             f"{latent_shape!r}")
        self.register_modules(vae=vae.eval(), transformer=transformer.eval())
        settings = (diffusion if isinstance(diffusion, DiffusionConfig)
                    else build(DiffusionConfig, diffusion or {}, "the pipeline's diffusion settings"))
        self.register_to_config(diffusion=dataclasses.asdict(settings), latent_shape=list(latent_shape),
                                classes=classes or [], info=info or {}, vae_sha256=vae_sha256)
        self.settings = settings
        self.precision = "fp32"  # the denoiser's: "fp32" or "bf16" (autocast; the scheduler and the VAE stay fp32)
        self.provenance: dict[str, str] = {}  # "<part>_sha256" of the folder it was loaded from

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.config.latent_shape)

    @property
    def info(self) -> dict:
        return self.config.info

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> pixels (N, 3, T, H, W) in [-1, 1]."""
        z = latents / self.vae.config.scaling_factor
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
        conditional = self.transformer.config.num_classes > 0
        if conditional:
            if labels is None:
                raise ValueError(f"this model is class-conditional ({self.transformer.config.num_classes} classes): "
                                 f"pass labels")
            labels = class_labels(labels, self.transformer.config.num_classes)
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
        scheduler = make_scheduler(self.settings, self.transformer.config.learn_sigma, sampler, steps)
        check_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        check_finite("guidance_scale", guidance_scale)
        if guidance_scale != 1.0 and conditional and not self.transformer.config.class_dropout_prob:
            raise ValueError("this model was trained without class dropout (class_dropout_prob 0): it has no null "
                             "class to guide against; use guidance_scale 1")
        with autocast(self.precision, self.device):
            latents = sample(self.transformer, scheduler, (n, *shape), labels, guidance_scale, generator, self.device,
                             progress)
        return self.decode(latents)

    def _grid(self, latent_size) -> tuple[int, int]:
        """latent_size checked: two positive integers the patch size divides."""
        p = self.transformer.config.patch_size
        if (not isinstance(latent_size, (tuple, list)) or len(latent_size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % p == 0
                           for v in latent_size)):
            raise ValueError(f"latent_size must be (h, w): two positive integers divisible by the patch size {p}, got "
                             f"{latent_size!r}")
        return tuple(latent_size)

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> Path:
        """diffusers' save_pretrained, then the sha256 of the vae/ it wrote into model_index.json; returns the folder."""
        folder = Path(save_directory)
        super().save_pretrained(folder, **kwargs)
        self.register_to_config(vae_sha256=file_sha256(folder / "vae"))
        self.save_config(folder)
        follow_umask(folder)
        return folder

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, device=None, precision: str | None = None,
                        **kwargs) -> "LatentDiffusionPipeline":
        """diffusers' from_pretrained of a pipeline folder, with its vae/ checked against the sha256 it was saved
        with first. precision: "fp32", "bf16" or "auto" (bf16 where this machine's matmul measures it faster); None:
        bf16 on CUDA, fp32 on a CPU (shared.training.precision.choose_precision)."""
        folder = Path(pretrained_model_name_or_path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        precision, _ = choose_precision(precision, device)
        check_computed(precision)
        path = folder / cls.config_name
        if not path.is_file() and (folder / "pipeline.json").is_file():
            raise ValueError(earlier_version(folder / "pipeline.json", "a pipeline.json beside model/ and vae/", REMEDY))
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; expected a folder written by the diffusion trainer "
                                    f"(transformer/, vae/, {cls.config_name})")
        record = read_json_object(path, "pipeline record")
        if record.get("_class_name") != cls.__name__:
            raise ValueError(f"{path}: holds a {record.get('_class_name')!r}, not a {cls.__name__}")
        if not isinstance(record.get("vae_sha256"), str):
            raise ValueError(f"{path}: no vae_sha256 of its VAE; {REMEDY}")
        hashes = component_sha256(folder, COMPONENTS)
        check_sha256(folder / "vae", record["vae_sha256"], path,
                     "Put back the vae/ the pipeline was saved with: the denoiser learnt its latents",
                     hashes["vae_sha256"])
        try:
            pipe = super().from_pretrained(folder, **kwargs)
        except (TypeError, ValueError) as exc:  # a record that cannot build the pipeline: named
            raise ValueError(f"{path}: {exc}") from None
        pipe.precision, pipe.provenance = precision, hashes
        return pipe.to(device)
