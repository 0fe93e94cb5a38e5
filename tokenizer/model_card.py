"""The model card (README.md) in every saved tokenizer folder: what the model is, what it was trained on and for how
long, how well it reconstructs held-out data beside the bicubic baselines, its latent scale, and where it came from,
so that a folder explains itself wherever it is copied (a model hub shows README.md as the model's page). Folder
hashes (shared.provenance.file_sha256) leave it out: the same weights saved again hash the same.

OmniTokenizer.save_pretrained writes it from the config alone; the trainer adds the stage, its data and its
validation, the release converter the file it converted.
"""
from __future__ import annotations

from pathlib import Path

from shared.atomic import atomic_write
from shared.provenance import MODEL_CARD, stamp
BASELINE_NAMES = {"4x": "bicubic 4x down and up", "8x": "bicubic 8x down and up",
                  "same_numbers": "bicubic, as many numbers as the latents", "same_bits": "bicubic, as many bits as the codes"}


def _architecture(model) -> list[str]:
    c = model.config
    layout = "g: global attention, w: window attention over {0} x {0} tokens".format(c.window_size)
    lines = [
        "## Architecture", "",
        f"- patches: {c.patch_size} x {c.patch_size} pixels in the first frame, {c.temporal_patch_size} x "
        f"{c.patch_size} x {c.patch_size} tubes after it (clips of 1 + {c.temporal_patch_size}k frames; an image "
        f"is one frame); width {c.dim}, {c.heads} heads, GEGLU feed-forward x{c.ff_mult:g}",
        f"- encoder: spatial blocks `{c.encoder_spatial}` ({layout}), then {c.encoder_temporal} temporal blocks",
        f"- decoder: {c.decoder_temporal} temporal blocks, then spatial blocks `{c.decoder_spatial}`; linear pixel heads"
        + (f" and a deblocking head ({c.deblock_channels} feature channels, a 3x3 convolution across patch edges)"
           if c.deblock_channels else ""),
        f"- parameters: encoder {model.num_parameters('encoder') / 1e6:.1f} M, decoder "
        f"{model.num_parameters('decoder') / 1e6:.1f} M",
    ]
    if c.release_compatible:
        lines.append(f"- **release-compatible: loads the published weights; not causal across frames** (the public "
                     f"release's computation, {c.release_spatial_position} positions in global attention, its "
                     f"{'SDPA' if c.release_sdpa else 'explicit'} attention path)")
    else:
        lines.append(f"- causal across frames: a latent frame depends only on the frames up to it, and an image is "
                     f"tokenised as the first frame of a clip that starts with it; temporal attention "
                     f"{'causal' if c.causal else 'not causal'}")
    return lines + [""]


def _head(model) -> list[str]:
    c = model.config
    latents = f"(B, {c.latent_dim}, 1 + (T - 1) / {c.temporal_patch_size}, H / {c.patch_size}, W / {c.patch_size})"
    if c.quantizer == "vq":
        codes = "the code vectors as they are, nearest by Euclidean distance" if c.release_compatible else \
            "unit length, nearest by cosine similarity"
        head = f"VQ (OmniTokenizer-VQVAE): {c.codebook_size} codes of {c.latent_dim} channels ({codes}); latents " \
               f"{latents}, code indices (B, T', h, w)"
    else:
        head = f"KL (OmniTokenizer-VAE): a diagonal Gaussian of {c.latent_dim} channels; latents {latents}, the " \
               f"posterior's mode unless sampled"
    scale_line = f"latent scale (config.scaling_factor: multiply latents by it for a diffusion model): " \
                 f"{c.scaling_factor:.6g}" if c.scaling_factor != 1.0 else \
        "latent scale: not measured for this folder (the diffusion latent extraction measures it on the latents it " \
        "extracts and keeps it in the pipeline's VAE as config.scaling_factor)"
    return ["## Head and latents", "", f"- {head}", f"- {scale_line}", ""]


def _training(training: dict | None, source: dict | None) -> list[str]:
    lines = ["## Training", ""]
    if source:
        lines.append(f"Converted from the public release's checkpoint `{source['file']}` (sha256 `{source['sha256']}`) by "
                     f"`python -m tokenizer.convert_release`; its training data and steps are the release's "
                     f"(docs/release_weights.md says which file is which).")
    elif training:
        embedded = {"images": "the project's embedded photos", "videos": "the project's embedded clips"}
        data = "; ".join(f"{kind}: {embedded[kind] if where == 'embedded' else where}"
                         for kind, where in training.get("data", {}).items())
        lines += [f"- stage `{training['stage']}`: {training['steps']} steps"
                  + (f", started from `{training['init_from']}`" if training.get("init_from") else ", from scratch"),
                  f"- {data or 'data not recorded'}"
                  + (f"; resolutions {', '.join(map(str, training['resolutions']))}" if training.get("resolutions") else ""),
                  f"- {training.get('processes', 1)} process(es), {training.get('precision', 'fp32')}, "
                  f"{training.get('wall_seconds', 0) / 60:.1f} min"]
    else:
        lines.append("Not recorded: these weights were saved outside a training run.")
    return lines + [""]


def _validation(validation: dict | None) -> list[str]:
    if not validation:
        return []
    lines = ["## Held-out reconstruction", "",
             "Mean over every frame of the validation items; the block-edge ratio is the mean pixel step across the "
             "patch grid over the one inside the patches (1: no visible grid). Bicubic down-and-up on the same items "
             "says what a figure is worth.", "",
             "| split | items (frames) | reconstruction | PSNR (dB) | SSIM | block-edge ratio |", "|---|---|---|---|---|---|"]
    for kind, v in validation.items():
        where = f"{v.get('items', '-')} ({v.get('frames', '-')})"
        lines.append(f"| {kind} | {where} | this tokenizer | {v['psnr']:.2f} | {v['ssim']:.3f} | "
                     f"{v['block_edge']:.2f} |")
        for name, b in v.get("bicubic", {}).items():
            lines.append(f"| {kind} | {where} | {BASELINE_NAMES.get(name, name)} (factor {b['factor']:g}) | "
                         f"{b['psnr']:.2f} | {b['ssim']:.3f} | {b['block_edge']:.2f} |")
        if "block_edge_input" in v:
            lines.append(f"| {kind} | {where} | the inputs themselves | - | - | {v['block_edge_input']:.2f} |")
        if "codebook_usage" in v:
            lines.append(f"| {kind} | {where} | codebook: {v['codebook_usage']:.1%} of codes used, perplexity "
                         f"{v['codebook_perplexity']:.0f} | | | |")
    return lines + [""]


def card_text(model, training: dict | None = None, validation: dict | None = None, source: dict | None = None) -> str:
    """The card's Markdown for `model`, with what is known of its training, its validation and its source."""
    c = model.config
    kind = "VQVAE" if c.quantizer == "vq" else "VAE"
    provenance = stamp()
    lines = ["---", "tags:", "- omnitokenizer", "- image-tokenizer", "- video-tokenizer",
             f"- {'vq-vae' if c.quantizer == 'vq' else 'vae'}", "---", "",
             f"# OmniTokenizer-{kind}", "",
             "A joint image and video tokenizer (OmniTokenizer, Wang et al., 2024): one model and one set of weights "
             "for images and clips, a spatial-temporal decoupled transformer.", "",
             *_architecture(model), *_head(model), *_training(training, source), *_validation(validation),
             "## Provenance", "",
             f"- written {provenance['written']} by the project at commit `{provenance['git_commit'] or 'unknown'}`",
             "", "## Use", "", "```python", "from tokenizer import OmniTokenizer", "",
             'model = OmniTokenizer.from_pretrained("<this folder>")',
             "enc = model.encode(x)  # x: (B, 3, T, H, W) or (B, 3, H, W) in [-1, 1]",
             "x_hat = model.decode(enc.latents, size=enc.size).sample", "```", ""]
    return "\n".join(lines)


def write_card(folder: str | Path, model, training: dict | None = None, validation: dict | None = None,
               source: dict | None = None) -> Path:
    text = card_text(model, training, validation, source)
    return atomic_write(Path(folder) / MODEL_CARD, lambda tmp: Path(tmp).write_text(text))
