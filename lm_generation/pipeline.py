"""Tokenizer + LM in one object, for use from Python.

    pipe = ARPipeline.from_pretrained("runs/small/lm_imagenet/final")
    images = pipe(labels=torch.tensor([0, 5]), guidance_scale=2.0, seed=0)   # (2, 3, 1, H, W) in [-1, 1]
    clips = pipe.predict(first_frames)                                           # frame prediction: (B, 3, 17, H, W)
    fast = ARPipeline.from_pretrained("runs/small/lm_imagenet/final", precision="auto")  # bf16 where faster

precision "bf16" keeps the LM's weights and KV cache in bf16 (logits and sampling in fp32): a decode step reads half
the bytes, and the CPU's bf16 products run faster (bench.reference_llamagen measures both); the tokenizer decodes
in fp32. Autocast over fp32 weights gains nothing here: it casts every weight at every token.

A pipeline folder is the LM's `save_pretrained` folder (config.json with the code layout and the sha256 of the
tokenizer folder, model.safetensors) with the VQ tokenizer's own save_pretrained folder inside it as `tokenizer/`;
loading checks that the tokenizer is still the one the LM was saved with, and keeps the sha256 of each part as
loaded (`provenance`: what a samples folder records).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from shared.atomic import follow_umask
from shared.provenance import check_sha256, component_sha256, earlier_version, file_sha256
from shared.training.precision import check_computed, choose_precision
from tokenizer import OmniTokenizer

from .model import CodeLayout, layout_of
from .sampling import sample_codes

TOKENIZER_DIR = "tokenizer"
COMPONENTS = {"model": "model.safetensors", "tokenizer": TOKENIZER_DIR}  # the parts a samples folder records


class ARPipeline:
    def __init__(self, lm: LlamaForCausalLM, tokenizer: OmniTokenizer, precision: str = "fp32"):
        if tokenizer.config.quantizer != "vq":
            raise ValueError("the LM generates VQ codes: its tokenizer must be an OmniTokenizer-VQVAE (quantizer vq)")
        layout = layout_of(lm)
        if tokenizer.config.codebook_size != layout.codebook_size:
            raise ValueError(f"tokenizer codebook has {tokenizer.config.codebook_size} entries, the LM was trained on "
                             f"{layout.codebook_size}")
        check_computed(precision)
        self.lm, self.tokenizer, self.precision = lm.eval(), tokenizer.eval(), precision
        self.provenance: dict[str, str] = {}  # "<part>_sha256" of the folder it was loaded from
        if precision == "bf16":
            self.lm.to(torch.bfloat16)

    @property
    def layout(self) -> CodeLayout:
        return layout_of(self.lm)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu",
                        precision: str | None = None) -> "ARPipeline":
        """precision: "fp32", "bf16" or "auto" (bf16 where this machine's matmul measures it faster); None: bf16 on
        CUDA, fp32 on a CPU (shared.training.precision.choose_precision)."""
        folder = Path(folder)
        precision, _ = choose_precision(precision, device)
        if not (folder / "config.json").is_file() or not (folder / TOKENIZER_DIR).is_dir():
            raise FileNotFoundError(f"{folder}: not a pipeline folder (expected config.json, model.safetensors and "
                                    f"{TOKENIZER_DIR}/ from ARPipeline.save_pretrained or lm_generation.train)")
        try:
            lm = LlamaForCausalLM.from_pretrained(folder).to(device)
        except Exception as exc:  # noqa: BLE001  transformers / safetensors raise many types for a bad file
            raise ValueError(f"{folder}: the LM's config.json / model.safetensors cannot be loaded "
                             f"({exc.__class__.__name__}: {str(exc)[:300]})") from None
        hashes = component_sha256(folder, COMPONENTS)
        recorded = getattr(lm.config, "tokenizer_sha256", None)
        if recorded is None:
            raise ValueError(earlier_version(folder / "config.json", "no tokenizer_sha256 of its tokenizer",
                                             "train it again (python -m lm_generation.train)"))
        check_sha256(folder / TOKENIZER_DIR, recorded, folder / "config.json",
                     f"Put back the {TOKENIZER_DIR}/ the LM was saved with", hashes["tokenizer_sha256"])
        pipe = cls(lm, OmniTokenizer.from_pretrained(folder / TOKENIZER_DIR).to(device), precision)
        pipe.provenance = hashes
        return pipe

    def save_pretrained(self, folder: str | Path, tokenizer_folder: str | Path | None = None) -> Path:
        """The LM, and the tokenizer (copied from `tokenizer_folder` byte for byte when given, else saved)."""
        folder = Path(folder)
        target = folder / TOKENIZER_DIR
        if tokenizer_folder is not None:
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(tokenizer_folder, target)
        else:
            self.tokenizer.save_pretrained(target)
        self.lm.config.tokenizer_sha256 = file_sha256(target)
        self.lm.save_pretrained(folder)
        follow_umask(folder)
        return folder

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T', h, w) -> pixels (B, 3, T, H, W) in [-1, 1]."""
        return self.tokenizer.decode_indices(codes, size=self.layout.size).sample.clamp(-1, 1)

    @torch.no_grad()
    def __call__(self, labels: torch.Tensor | None = None, given: torch.Tensor | None = None, **sampling) -> torch.Tensor:
        """Samples as pixels; `labels` (B,) classes (None: unconditional), `given` codes for frame prediction;
        `sampling`: guidance_scale, cfg_interval, temperature, top_k, top_p, seed (see sampling.sample_codes)."""
        return self.decode(sample_codes(self.lm, labels, given, **sampling))

    @property
    def given_frames(self) -> int:
        """Video frames whose codes frame prediction is given: those of the first cond_frames latent frames."""
        return 1 + (self.layout.cond_frames - 1) * self.tokenizer.config.temporal_patch_size

    @torch.no_grad()
    def predict(self, frames: torch.Tensor, labels: torch.Tensor | None = None, **sampling) -> torch.Tensor:
        """Frame prediction: pixels (B, 3, T, H, W) whose first 1 + (cond_frames - 1) * t frames are used (5 for
        2 latent frames at t = 4) -> the whole clip, those frames' codes kept as given."""
        layout, needed = self.layout, self.given_frames
        if layout.cond_frames == 0:
            raise ValueError("this LM does not predict frames (trained with no given latent frames)")
        if frames.dim() != 5 or frames.shape[2] < needed:
            raise ValueError(f"frames must be (B, 3, >= {needed}, H, W), got {tuple(frames.shape)}")
        device = next(self.lm.parameters()).device
        given = self.tokenizer.encode(frames[:, :, :needed].to(device)).indices
        return self(labels, given.reshape(given.shape[0], -1), **sampling)
