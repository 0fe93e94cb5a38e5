"""The public release's checkpoints (FoundationVision/OmniTokenizer, PyTorch Lightning .ckpt files) as our model.

    python -m tokenizer.convert_release imagenet_k600.ckpt runs/release/imagenet_k600   # a save_pretrained folder
    model = OmniTokenizer.from_release("imagenet_k600.ckpt")

A release file's `state_dict` holds its VQGAN's tensors: encoder and decoder, the linear maps before and after the
codebook, the codebook (code vectors and three EMA statistics of training), and the training-only discriminators and
LPIPS network. The architecture is read from the tensors' names and shapes. The hyper-parameters, where the file
stores them (Lightning's `hyper_parameters['args']`), are checked against the tensors and give what the tensors
cannot: whether temporal attention and the PEG are causal. The release's files spell those two flags
`casual_in_temporal_transformer` / `casual_in_peg`, its code `causal_...`: either is read.

The model built is release-compatible (OmniTokenizerConfig.release_compatible: the release's computation, see
docs/release_weights.md). Every tensor of the file is mapped or dropped by name (the training-only parts, statistics
that encoding and decoding never read, and position-bias weights that the release builds in its temporal blocks but
never calls); every tensor of the model comes from the file, or is a bias that the release lacks and is fixed at
zero. Anything else is refused, naming it. Two exact changes: the query and key channels of RoPE blocks are
reordered (the release rotates interleaved pairs, we rotate halves: the same attention), and the pixel heads are
doubled (the release decodes to [-0.5, 0.5], we to [-1, 1]; doubling is exact in floating point).
"""
from __future__ import annotations

import argparse
import math
import pickle
import re
from pathlib import Path

import torch

from shared.provenance import file_sha256

from .config import OmniTokenizerConfig
from .model import OmniTokenizer

# parts of the release's VQGAN that only its training uses
TRAINING_ONLY = ("image_discriminator.", "video_discriminator.", "perceptual_model.")
# the release's codebook statistics of its EMA training (counts, running sums, usage): encoding never reads them
EMA_STATISTICS = ("codebook.N", "codebook.z_avg", "codebook.codebook_usage")
STACKS = {  # our stack: (release prefix, stage: spatial or temporal, which of our norms its norm_out is)
    "encoder.spatial": ("encoder.enc_spatial_transformer", "encoder.stage_norm"),
    "encoder.temporal": ("encoder.enc_temporal_transformer", "encoder.norm"),
    "decoder.temporal": ("decoder.dec_temporal_transformer", "decoder.stage_norm"),
    "decoder.spatial": ("decoder.dec_spatial_transformer", "decoder.norm"),
}
# hyper-parameters of the release with another spelling in its published files
SPELLINGS = {"causal_in_temporal_transformer": "casual_in_temporal_transformer", "causal_in_peg": "casual_in_peg"}


class ReleaseCheckpointError(ValueError):
    pass


# ----------------------------------------------------------------------------- reading the file


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The file's state dict and hyper-parameters (None where it stores none). Read as tensors and plain values
    only (argparse.Namespace allowed, which is how Lightning stores the release's arguments) unless trust_pickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise ReleaseCheckpointError(f"{path}: not a PyTorch checkpoint, or truncated or corrupt") from None
        raise ReleaseCheckpointError(
            f"{path}: holds Python objects besides tensors and hyper-parameters ({found.group(1)}); if you trust the "
            f"file, --trust-pickle (trust_pickle=True) reads it with pickle") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ReleaseCheckpointError(f"{path}: not a PyTorch checkpoint, or truncated or corrupt ({exc})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state, hparams = obj["state_dict"], obj.get("hyper_parameters")
    elif isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        state, hparams = obj, None
    else:
        raise ReleaseCheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict') nor a state dict")
    if isinstance(hparams, dict) and isinstance(hparams.get("args"), argparse.Namespace):
        hparams = vars(hparams["args"])
    elif isinstance(hparams, argparse.Namespace):
        hparams = vars(hparams)
    return state, (dict(hparams) if isinstance(hparams, dict) and hparams else None)


def _flag(hparams: dict | None, name: str, path: Path, default: bool) -> bool:
    """A causal flag under either spelling; the default (every published script's setting) where none is stored."""
    values = {k: hparams[k] for k in (name, SPELLINGS[name]) if hparams and k in hparams}
    if len(set(map(bool, values.values()))) > 1:
        raise ReleaseCheckpointError(f"{path}: hyper-parameters {' and '.join(values)} disagree ({values})")
    return bool(next(iter(values.values()))) if values else default


# ----------------------------------------------------------------------------- the architecture


class _Reader:
    """The file's tensors, read by name; a missing one is an error naming it."""

    def __init__(self, state: dict[str, torch.Tensor], path: Path):
        self.state, self.path, self.used = state, path, set()

    def __contains__(self, key: str) -> bool:
        return key in self.state

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise ReleaseCheckpointError(f"{self.path}: missing tensor {key!r}")
        self.used.add(key)
        return self.state[key]

    def drop(self, prefix: str) -> None:
        """Tensors under `prefix` (or the one named so) read and set aside."""
        self.used.update(k for k in self.state if k == prefix or k.startswith(prefix + "."))

    def layers(self, prefix: str) -> list[int]:
        found = {int(m.group(1)) for k in self.state if (m := re.match(re.escape(prefix) + r"\.layers\.(\d+)\.", k))}
        if found != set(range(len(found))):
            raise ReleaseCheckpointError(f"{self.path}: the layers of {prefix} are not numbered 0..n-1 ({sorted(found)})")
        return sorted(found)

    def kinds(self, prefix: str) -> str:
        """Our letters for the release's blocks: 'g' for its 't' (global attention), 'w' for window attention."""
        kinds = ""
        for i in self.layers(prefix):
            if f"{prefix}.layers.{i}.1.to_q.weight" in self.state:
                kinds += "g"
            elif f"{prefix}.layers.{i}.1.relative_position_bias_table" in self.state:
                kinds += "w"
            else:
                raise ReleaseCheckpointError(f"{self.path}: block {i} of {prefix} is neither global nor window attention "
                                             f"(the release's pooling and upsampling blocks are not supported)")
        return kinds


def release_config(state: dict[str, torch.Tensor], hparams: dict | None, path: str | Path,
                   sdpa: bool = True) -> OmniTokenizerConfig:
    """Our release-compatible config for the file's tensors, checked against its hyper-parameters where stored."""
    path, r = Path(path), _Reader(state, Path(path))
    if "encoder.to_patch_emb_first_frame.1.weight" not in r:
        raise ReleaseCheckpointError(f"{path}: no 'encoder.to_patch_emb_first_frame.1.weight': not an OmniTokenizer "
                                     f"release VQGAN with the linear patch embedding (patch_embed 'linear')")
    p = math.isqrt(r["encoder.to_patch_emb_first_frame.1.weight"].numel() // 3)
    t = r["encoder.to_patch_emb.1.weight"].numel() // (3 * p * p)
    dim = r["encoder.to_patch_emb_first_frame.2.weight"].shape[0]
    kinds = {ours: r.kinds(prefix) for ours, (prefix, _) in STACKS.items()}
    if len(kinds["encoder.temporal"]) != len(kinds["decoder.temporal"]) or {"w"} & set(kinds["encoder.temporal"] +
                                                                                        kinds["decoder.temporal"]):
        raise ReleaseCheckpointError(f"{path}: temporal blocks {kinds['encoder.temporal']!r} / "
                                     f"{kinds['decoder.temporal']!r}: the release has one depth of global blocks")
    first = {ours: f"{STACKS[ours][0]}.layers.{kind.index('g')}.1" for ours, kind in kinds.items() if "g" in kind}
    windows = [f"{STACKS[ours][0]}.layers.{kind.index('w')}.1" for ours, kind in kinds.items() if "w" in kind]
    if first:
        head_dim = r[next(iter(first.values())) + ".q_scale"].numel()
        if r[next(iter(first.values())) + ".to_q.weight"].shape[0] != dim:
            raise ReleaseCheckpointError(f"{path}: attention width (heads x dim_head) differs from embedding_dim {dim}, "
                                         f"which our attention needs")
        heads = dim // head_dim
    else:
        heads = r[windows[0] + ".relative_position_bias_table"].shape[1]
    window = (math.isqrt(r[windows[0] + ".relative_position_bias_table"].shape[0]) + 1) // 2 if windows else 8
    codes = r["codebook.embeddings"]
    pre = r["pre_vq_conv.1.weight"].shape[0]
    if pre not in (codes.shape[1], 2 * codes.shape[1]):
        raise ReleaseCheckpointError(f"{path}: pre_vq_conv gives {pre} channels for {codes.shape[1]}-channel codes")
    ff_mult = float(hparams.get("ff_mult", 4.0)) if hparams else 4.0
    inner = r[f"{STACKS['encoder.temporal'][0]}.layers.0.3.1.weight"].shape[0] // 2
    if int(dim * ff_mult * 2 / 3) != inner:
        raise ReleaseCheckpointError(f"{path}: feed-forward width {inner} is not int({dim} * ff_mult {ff_mult} * 2/3)")
    relative = {ours for ours, prefix in first.items() if prefix + ".spatial_rel_pos_bias.net.0.0.weight" in r}
    spatial_global = {k for k in first if k.endswith("spatial")}
    if relative & spatial_global not in (set(), spatial_global):
        raise ReleaseCheckpointError(f"{path}: relative-position weights in some global spatial blocks only")
    position = "relative" if relative & spatial_global else "rope"
    causal = _flag(hparams, "causal_in_temporal_transformer", path, True)
    if not _flag(hparams, "causal_in_peg", path, True):
        raise ReleaseCheckpointError(f"{path}: causal_in_peg is off; only the release's causal PEG (every published "
                                     f"checkpoint) is supported")
    to_release = {"g": "t", "w": "w"}
    if hparams:
        expected = {"patch_embed": "linear", "patch_size": p, "temporal_patch_size": t, "embedding_dim": dim,
                    "n_codes": codes.shape[0], "codebook_dim": codes.shape[1], "use_vae": pre != codes.shape[1],
                    "twod_window_size": window if windows else hparams.get("twod_window_size"),
                    "enc_block": "".join(to_release[c] for c in kinds["encoder.spatial"]),
                    "dec_block": "".join(to_release[c] for c in kinds["decoder.spatial"]),
                    "spatial_pos": {"relative": "rel", "rope": "rope"}[position] if spatial_global
                    else hparams.get("spatial_pos"),
                    "defer_temporal_pool": False, "defer_spatial_pool": False, "gen_upscale": None,
                    "use_external_codebook": False}
        if pre == codes.shape[1]:
            expected["l2_code"] = True  # the release's codes without l2 normalisation: not published
        if "heads" in hparams and "dim_head" in hparams:
            expected.update(heads=heads, dim_head=dim // heads)
        wrong = {k: (hparams[k], v) for k, v in expected.items() if k in hparams and hparams[k] != v}
        if wrong:
            raise ReleaseCheckpointError(f"{path}: hyper-parameters that this converter cannot honour or that disagree "
                                         f"with the tensors (stored, expected): {wrong}")
    return OmniTokenizerConfig(
        patch_size=p, temporal_patch_size=t, dim=dim, heads=heads, ff_mult=ff_mult,
        encoder_spatial=kinds["encoder.spatial"], encoder_temporal=len(kinds["encoder.temporal"]),
        decoder_temporal=len(kinds["decoder.temporal"]), decoder_spatial=kinds["decoder.spatial"], causal=causal,
        window_size=window, quantizer="kl" if pre != codes.shape[1] else "vq", latent_dim=codes.shape[1],
        codebook_size=codes.shape[0], release_compatible=True, release_spatial_position=position, release_sdpa=sdpa)


# ----------------------------------------------------------------------------- the tensors


def rope_channel_order(head_dim: int) -> torch.Tensor:
    """For each of our query / key channels in a head, the release's: it rotates the pairs (2j, 2j+1), the odd pairs
    with the row and the even with the column, frequency j // 2; we rotate (i, i + d/2), the first quarter with the
    row and the second with the column. Both get the same angles, so attention is unchanged."""
    quarter, half = head_dim // 4, head_dim // 2
    order = torch.empty(head_dim, dtype=torch.long)
    for i in range(quarter):
        order[i], order[i + half] = 4 * i + 2, 4 * i + 3  # rows: the release's pair 2i + 1
        order[quarter + i], order[quarter + i + half] = 4 * i, 4 * i + 1  # columns: its pair 2i
    return order


def convert_state(state: dict[str, torch.Tensor], config: OmniTokenizerConfig, path: str | Path,
                  model: OmniTokenizer) -> dict[str, torch.Tensor]:
    """Our state dict for `model` (built from `config`) from the release's tensors; refuses what it cannot place."""
    path, r = Path(path), _Reader(state, Path(path))
    expected = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}  # our key: the release's
    heads, head_dim = config.heads, config.dim // config.heads
    order = rope_channel_order(head_dim)

    def rope_rows(w: torch.Tensor) -> torch.Tensor:  # rows (heads * head_dim, ...) reordered within each head
        return w.reshape(heads, head_dim, *w.shape[1:])[:, order].reshape(w.shape)

    def put(ours: str, release: str, tensor: torch.Tensor) -> None:
        out[ours], sources[ours] = tensor, release

    def weight_bias(ours: str, release: str, bias: bool = True, scale: float = 1.0) -> None:
        put(f"{ours}.weight", f"{release}.weight", r[f"{release}.weight"] * scale)
        if bias:
            put(f"{ours}.bias", f"{release}.bias", r[f"{release}.bias"] * scale)
        else:  # a bias the release's layer lacks
            out[f"{ours}.bias"] = torch.zeros_like(expected[f"{ours}.bias"])

    def layer_norm(ours: str, release: str) -> None:  # the release's own LayerNorm: gamma, and beta as a buffer
        put(f"{ours}.weight", f"{release}.gamma", r[f"{release}.gamma"])
        put(f"{ours}.bias", f"{release}.beta", r[f"{release}.beta"])

    for ours, release in (("embed_first", "encoder.to_patch_emb_first_frame"), ("embed_rest", "encoder.to_patch_emb")):
        weight_bias(f"{ours}.norm_in", f"{release}.1")
        weight_bias(f"{ours}.proj", f"{release}.2")
        weight_bias(f"{ours}.norm_out", f"{release}.3")
    for stack, (prefix, norm) in STACKS.items():
        kinds = config.encoder_spatial if stack == "encoder.spatial" else config.decoder_spatial \
            if stack == "decoder.spatial" else "g" * config.encoder_temporal
        spatial = stack.endswith("spatial")
        for i, kind in enumerate(kinds):
            ours, src = f"{stack}.{i}", f"{prefix}.layers.{i}"
            layer_norm(f"{ours}.norm1", f"{src}.1.norm")
            weight_bias(f"{ours}.norm2", f"{src}.3.0")
            weight_bias(f"{ours}.ff.proj_in", f"{src}.3.1", bias=False)
            weight_bias(f"{ours}.ff.proj_out", f"{src}.3.4", bias=False)
            if kind == "w":
                put(f"{ours}.attn.qkv.weight", f"{src}.1.qkv.weight", r[f"{src}.1.qkv.weight"])
                weight_bias(f"{ours}.attn.proj", f"{src}.1.proj")
                put(f"{ours}.rel_bias", f"{src}.1.relative_position_bias_table", r[f"{src}.1.relative_position_bias_table"])
                index = r[f"{src}.1.relative_position_index"]
                if not torch.equal(index, model.get_submodule(ours).rel_index):
                    raise ReleaseCheckpointError(f"{path}: {src}.1.relative_position_index is not the window's")
                continue
            rope = spatial and config.release_spatial_position == "rope"
            q, kv = r[f"{src}.1.to_q.weight"], r[f"{src}.1.to_kv.weight"]
            k, v = kv.chunk(2)
            reorder = rope_rows if rope else (lambda w: w)
            put(f"{ours}.attn.qkv.weight", f"{src}.1.to_q.weight + to_kv.weight", torch.cat([reorder(q), reorder(k), v]))
            weight_bias(f"{ours}.attn.proj", f"{src}.1.to_out", bias=False)
            for name in ("q_scale", "k_scale"):
                scale = r[f"{src}.1.{name}"]
                put(f"{ours}.attn.{name}", f"{src}.1.{name}", scale[order] if rope else scale)
            weight_bias(f"{ours}.peg.conv", f"{src}.0.dsconv")
            r.drop(f"{src}.1.context_norm")  # a norm for cross-attention context, which these blocks never get
            mlp = f"{src}.1.spatial_rel_pos_bias.net"
            if spatial and config.release_spatial_position == "relative":
                for ours_j, src_j in ((0, "0.0"), (2, "1.0"), (4, "2")):
                    weight_bias(f"{ours}.position.net.{ours_j}", f"{mlp}.{src_j}")
            elif not spatial:  # built by the release's temporal attention, used only by spatial attention
                r.drop(f"{src}.1.spatial_rel_pos_bias")
        layer_norm(norm, f"{prefix}.norm_out")
    weight_bias("head.proj", "pre_vq_conv.1")
    weight_bias("post_head", "post_vq_conv.1")
    if config.quantizer == "vq":
        put("head.codebook", "codebook.embeddings", r["codebook.embeddings"])
        out["head.initialized"] = torch.tensor(True)
        for name in EMA_STATISTICS:
            r.drop(name)
    else:  # the release builds a codebook in its VAE too, and never uses it
        r.drop("codebook")
    # the release decodes to [-0.5, 0.5]; doubled (exact in floating point), ours decode to [-1, 1]
    weight_bias("out_first", "decoder.to_pixels_first_frame.0", scale=2.0)
    weight_bias("out_rest", "decoder.to_pixels.0", scale=2.0)
    for prefix in TRAINING_ONLY:
        r.drop(prefix.rstrip("."))

    unknown = sorted(k for k in state if k not in r.used)
    if unknown:
        raise ReleaseCheckpointError(f"{path}: {len(unknown)} tensors this converter does not know: {unknown[:8]}")
    missing = sorted(k for k in expected if k not in out)
    wrong = [f"{sources.get(k, k)} {tuple(v.shape)} for {k} {tuple(expected[k].shape)}" for k, v in out.items()
             if k in expected and v.shape != expected[k].shape]
    if missing or wrong:
        raise ReleaseCheckpointError(f"{path}: does not fill the model: missing {missing[:8]}, shapes {wrong[:8]}")
    return {k: v.to(expected[k].dtype) for k, v in out.items()}


def load_release(path: str | Path, sdpa: bool = True, trust_pickle: bool = False) -> OmniTokenizer:
    """A release checkpoint as a release-compatible OmniTokenizer in eval mode."""
    state, hparams = read_checkpoint(path, trust_pickle)
    config = release_config(state, hparams, path, sdpa)
    model = OmniTokenizer.from_scale(config)
    model.load_state_dict(convert_state(state, config, path, model))
    return model.eval()


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a release .ckpt (imagenet_k600.ckpt, imagenet_ucf_vae.ckpt, ...)")
    ap.add_argument("out", help="the folder to write (config.json + diffusion_pytorch_model.safetensors + README.md)")
    ap.add_argument("--no-sdpa", dest="sdpa", action="store_false",
                    help="the release's explicit attention path, where its position biases take part (the ImageNet-"
                         "only VQVAE was trained so); default: its SDPA path, which drops them")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="read a file that holds Python objects besides tensors, with pickle (only a trusted file)")
    args = ap.parse_args(argv)
    model = load_release(args.checkpoint, args.sdpa, args.trust_pickle)
    digest = file_sha256(args.checkpoint)
    out = model.save_pretrained(args.out, card={"source": {"file": Path(args.checkpoint).name, "sha256": digest}})
    c = model.config
    print(f"{args.checkpoint} (sha256 {digest}): {c.quantizer.upper()} release tokenizer, encoder "
          f"{c.encoder_spatial} decoder {c.decoder_spatial} (g global, w window), patch {c.patch_size}, frames per "
          f"tube {c.temporal_patch_size}, {c.release_spatial_position} positions, "
          f"{'SDPA' if c.release_sdpa else 'explicit'} attention path -> {out}")
    return out


if __name__ == "__main__":
    main()
