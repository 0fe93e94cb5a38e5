"""Our tokenizer's encode + decode beside the public release's (FoundationVision/OmniTokenizer), same layout and
shapes, in one process.

    python -m bench.reference_tokenizer --release-repo /path/to/OmniTokenizer --out bench/out/reference_tokenizer.json \
        --doc docs/speed.md

The release's encoder and decoder classes, its codebook and its own `VQGAN.encode` / `VQGAN.decode` are imported
from --release-repo (its `OmniTokenizer/` package); nothing of it is copied into the project. The release is built
at our config's shapes (width, heads, patch and tube sizes, spatial blocks, temporal depth, window, codebook) with
the rest of its stage-2 script's settings (`scripts/recons/train.sh`: linear patch embedding, 2-D RoPE, causal
temporal attention and PEG, L2-normalised codes). Two sizes: our `small` (without its deblocking head, which the
release lacks) at 64², and the `paper` preset at the release's own layout, which the paper-size release is (encoder
`ttww` and decoder `tttt` in its letters: global attention in the encoder's first two and all the decoder's spatial
blocks, windows of 8 in the rest) at 256²; each as an image and a 17-frame clip. The two models
differ where the release is wrong or differs (docs/release_differences.md: its patch embedding's LayerNorms, its
PEG's axes, the biases its SDPA path drops), so weights are not mapped and the outputs not compared: each side has
its own initial weights, and each side's FLOPs are counted on its own. The release's VQGAN class needs
pytorch_lightning, beartype and fairscale at import: where one is not installed, a stand-in takes its place for
the names these classes import and never call at inference (the Lightning base class, whose save_hyperparameters
records the arguments as Lightning does, the type-checking decorator, the activation-checkpoint wrapper). A
release-compatible model of ours does map the release's weights (docs/release_weights.md; the comparison is
tests/test_release_weights.py); this bench times our default model. Each case times encode to codes and decode back, the two sides in
turns, in fp32 and in bf16 autocast where this CPU multiplies faster in it. Without --release-repo our side runs
alone. With --doc the table goes into that page between its markers. The timing and report parts are shared with
the other reference benches (reference_pair.py).
"""
from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import sys
import types
import warnings
from pathlib import Path

import torch
from einops.layers.torch import Rearrange
from torch import nn

from bench.reference_pair import checkout, doc_table, parser, precisions, take_turns, write_report
from shared.timing import timed
from bench.tokenizer_speed import LAYOUTS
from shared.training.precision import autocast
from tokenizer import OmniTokenizer
from tokenizer.config import OmniTokenizerConfig

# case: (our scale, its overrides, frames, resolution). `small` without its deblocking head (the release has none);
# `paper` at the release's layout
SIZES = {"small image 64²": ("small", {"deblock_channels": 0}, 1, 64),
         "small clip 17 x 64²": ("small", {"deblock_channels": 0}, 17, 64),
         "paper image 256²": ("paper", LAYOUTS["release"], 1, 256),
         "paper clip 17 x 256²": ("paper", LAYOUTS["release"], 17, 256)}
REPO_NAME = "FoundationVision/OmniTokenizer"
DOC_BEGIN = "<!-- tokenizer beside the release: written by `python -m bench.reference_tokenizer --doc`; do not edit -->"
DOC_END = "<!-- end of tokenizer beside the release -->"
# ours through OmniTokenizer.compile_for_inference() (the release has no compiled path: it runs eager)
COMPILED = {f"{size}, ours compiled": size for size in ("paper image 256²", "paper clip 17 x 256²")}
RELEASE_BLOCK = {"g": "t", "w": "w"}  # our spatial letters in the release's: its 't' is global attention

# ----------------------------------------------------------------------------- the release's model


class _LightningModule(nn.Module):
    """Lightning's base class where it is not installed: save_hyperparameters() records the caller's __init__
    arguments in `hparams`, as Lightning does (the release's VQGAN(args) stores {'args': args})."""

    def save_hyperparameters(self) -> None:
        frame = inspect.currentframe().f_back
        self.hparams = {name: frame.f_locals[name] for name in inspect.getargvalues(frame).args[1:]}


def _stand_ins() -> None:
    """Modules the release imports for training only, where they are not installed: the names it takes from them."""
    def missing(name: str) -> bool:
        return name not in sys.modules and importlib.util.find_spec(name) is None

    if missing("pytorch_lightning"):
        sys.modules["pytorch_lightning"] = types.SimpleNamespace(LightningModule=_LightningModule)
    if missing("beartype"):
        sys.modules["beartype"] = types.SimpleNamespace(beartype=lambda fn: fn)
    if missing("fairscale"):
        fairscale_nn = types.SimpleNamespace(checkpoint_wrapper=lambda module, **kw: module)
        sys.modules["fairscale"] = types.SimpleNamespace(nn=fairscale_nn)
        sys.modules["fairscale.nn"] = fairscale_nn


def release_module(repo: Path, name: str = "omnitokenizer"):
    """The release's `OmniTokenizer.<name>` module (`omnitokenizer`, `fvd.fvd`), imported without its package's
    __init__ (which imports its data loaders and language model too)."""
    _stand_ins()
    package = types.ModuleType("OmniTokenizer")
    package.__path__ = [str(repo / "OmniTokenizer")]
    sys.modules.setdefault("OmniTokenizer", package)
    with warnings.catch_warnings():  # its deprecated timm and torch.cuda.amp imports, a SyntaxWarning: its own
        warnings.simplefilter("ignore")
        return importlib.import_module(f"OmniTokenizer.{name}")


def release_settings(cfg: OmniTokenizerConfig, resolution: int) -> dict:
    """The release's encoder / decoder arguments for our config's shape, with the rest of its stage-2 script's
    settings (linear patch embedding, 2-D RoPE, causal temporal attention and PEG)."""
    if cfg.encoder_temporal != cfg.decoder_temporal:
        raise ValueError("the release has one temporal depth for its encoder and decoder")
    return dict(image_size=resolution, patch_embed="linear", norm_type="batch", window_size=cfg.window_size,
                spatial_pos="rope", image_channel=3, patch_size=cfg.patch_size,
                temporal_patch_size=cfg.temporal_patch_size, temporal_depth=cfg.encoder_temporal,
                causal_in_temporal_transformer=cfg.causal, causal_in_peg=True, dim=cfg.dim,
                dim_head=cfg.dim // cfg.heads, heads=cfg.heads, ff_mult=cfg.ff_mult)


class ReleaseTokenizer(nn.Module):
    """The parts of the release's VQGAN that encode and decode, built as its VQGAN.__init__ builds them (no external
    codebook, no VAE head, L2-normalised codes); `encode` / `decode` are the release's own methods."""

    def __init__(self, module, cfg: OmniTokenizerConfig, resolution: int):
        super().__init__()
        self.release = module
        settings = release_settings(cfg, resolution)
        blocks = {k: "".join(RELEASE_BLOCK[c] for c in s) for k, s in
                  (("encoder", cfg.encoder_spatial), ("decoder", cfg.decoder_spatial))}
        self.encoder = module.OmniTokenizer_Encoder(block=blocks["encoder"], spatial_depth=len(blocks["encoder"]),
                                                    **settings)
        self.decoder = module.OmniTokenizer_Decoder(block=blocks["decoder"], spatial_depth=len(blocks["decoder"]),
                                                    **settings)
        self.codebook = module.Codebook(cfg.codebook_size, cfg.latent_dim, no_random_restart=True)
        self.pre_vq_conv = nn.Sequential(Rearrange("b c t h w -> b t h w c"), nn.Linear(cfg.dim, cfg.latent_dim),
                                         Rearrange("b t h w c -> b c t h w"))
        self.post_vq_conv = nn.Sequential(Rearrange("b c t h w -> b t h w c"), nn.Linear(cfg.latent_dim, cfg.dim),
                                          Rearrange("b t h w c -> b c t h w"))
        self.use_vae, self.use_external_codebook, self.l2_code = False, False, True
        self.resolution, self.patch_size = resolution, cfg.patch_size

    def encode(self, x, is_image):
        return self.release.VQGAN.encode(self, x, is_image)

    def decode(self, encodings, is_image):
        return self.release.VQGAN.decode(self, encodings, is_image)


# ----------------------------------------------------------------------------- one case


def compare(size: str, precision: str, repo: Path | None, batch: int, rounds: int) -> dict:
    scale, overrides, frames, resolution = SIZES[COMPILED.get(size, size)]
    torch.manual_seed(0)
    ours = OmniTokenizer.from_scale(scale, **overrides).eval()
    x = torch.empty(batch, 3, frames, resolution, resolution).uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    image = frames == 1

    def call(model):
        with torch.inference_mode(), autocast(precision, "cpu"):
            return model.decode(model.encode(x).latents).sample

    case = {"size": size, "precision": precision, "batch": batch}
    sides = {"ours": types.SimpleNamespace(step=lambda: call(ours))}
    if size in COMPILED:  # its FLOPs are the eager call's
        compiled = copy.deepcopy(ours).compile_for_inference()
        sides["ours"] = types.SimpleNamespace(step=lambda: call(compiled), flops_step=sides["ours"].step)
        case["compile_seconds"] = timed(sides["ours"].step, "cpu")
    if repo is not None:
        with warnings.catch_warnings():  # torch.meshgrid's indexing warning, from its window attention
            warnings.simplefilter("ignore")
            release = ReleaseTokenizer(release_module(repo), ours.config, resolution).eval()
        release_x = x[:, :, 0] if image else x  # the release takes images as b c h w

        def release_call():
            with torch.inference_mode(), autocast(precision, "cpu"):
                return release.decode(release.encode(release_x, image), image)

        sides["reference"] = types.SimpleNamespace(step=release_call)
    for name, side in sides.items():  # each side gives back the input's pixels
        out = side.step()
        if out.numel() != x.numel() or out.shape[-2:] != x.shape[-2:]:
            raise RuntimeError(f"{name}: encode + decode of a {tuple(x.shape)} input gave {tuple(out.shape)}")
    return take_turns(case, sides, rounds, difference=None, replay=size not in COMPILED)


def doc_lines(report: dict) -> list[str]:
    return doc_table(report, "Tokenizer encode to codes + decode (`small` without its deblocking head; `paper` at the "
                             "release's layout: encoder ggww, decoder gggg, windows of 8; the release built at the "
                             "same shapes; each side its own initial weights: the architectures differ, outputs not "
                             "compared)", REPO_NAME)


def main(argv=None) -> dict:
    ap = parser(__doc__, "--release-repo", REPO_NAME, {**SIZES, **COMPILED}, batch=1)
    ap.set_defaults(rounds=5)
    args = ap.parse_args(argv)

    def measure():
        repo = checkout(args.release_repo, REPO_NAME, "OmniTokenizer/omnitokenizer.py", needs=("timm",))
        rows = [compare(size, p, repo, args.batch, args.rounds) for size in args.sizes for p in precisions()]
        scales = dict.fromkeys(SIZES[COMPILED.get(size, size)][0] for size in args.sizes)
        return rows, repo, ", ".join(scales), {}

    return write_report(args, (DOC_BEGIN, DOC_END), doc_lines, measure)


if __name__ == "__main__":
    main()
