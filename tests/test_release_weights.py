"""The release's checkpoints as our model (tokenizer.convert_release).

Without a checkout: the conversion of a synthetic release state dict (the release's tensor names at a tiny layout),
its refusals, and the release-compatible model's own properties. With RELEASE_REPO (a checkout of
FoundationVision/OmniTokenizer, and timm, `pip install -e '.[references]'`): the release's own VQGAN is built from
its own argument parser at the published layouts, its randomly initialised state saved as a Lightning checkpoint,
converted, and compared with the release's own encode / decode on images and 17-frame clips.
"""
import argparse
import importlib
import importlib.util
import os
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from shared.provenance import file_sha256
from tokenizer import OmniTokenizer
from tokenizer.config import model_config
from tokenizer.convert_release import ReleaseCheckpointError, main, rope_channel_order
from tokenizer.model import apply_rope, rope_2d

# ----------------------------------------------------------------------------- a synthetic release file

TINY = dict(dim=32, heads=2, patch=4, tubes=2, window=2, codes=16, code_dim=4, inner=int(32 * 4 * 2 / 3))


def _window_index(w: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return rel[..., 0] * (2 * w - 1) + rel[..., 1]


def release_state(enc="tw", dec="tt", temporal=1, position="rope", vae=False, size=TINY) -> dict:
    """Random tensors under the release's names, as its VQGAN's state_dict() has them, at a tiny layout."""
    g = torch.Generator().manual_seed(0)
    d, h, p, t, w, k, c, inner = (size[n] for n in ("dim", "heads", "patch", "tubes", "window", "codes", "code_dim", "inner"))
    state = {}

    def add(name, *shape):
        state[name] = torch.randn(*shape, generator=g) * 0.2

    def norm(name, n):  # the release's LayerNorm: gamma, beta (a buffer)
        add(f"{name}.gamma", n), add(f"{name}.beta", n)

    def transformer(prefix, kinds, spatial):
        for i, kind in enumerate(kinds):
            b = f"{prefix}.layers.{i}"
            norm(f"{b}.1.norm", d)
            if kind == "t":
                add(f"{b}.0.dsconv.weight", d, 1, 3, 3, 3), add(f"{b}.0.dsconv.bias", d)
                norm(f"{b}.1.context_norm", d)
                add(f"{b}.1.to_q.weight", d, d), add(f"{b}.1.to_kv.weight", 2 * d, d), add(f"{b}.1.to_out.weight", d, d)
                add(f"{b}.1.q_scale", d // h), add(f"{b}.1.k_scale", d // h)
                if position == "rel" or not spatial:
                    mlp = f"{b}.1.spatial_rel_pos_bias.net"
                    add(f"{mlp}.0.0.weight", d, 2), add(f"{mlp}.0.0.bias", d), add(f"{mlp}.1.0.weight", d, d)
                    add(f"{mlp}.1.0.bias", d), add(f"{mlp}.2.weight", h, d), add(f"{mlp}.2.bias", h)
            else:
                add(f"{b}.1.relative_position_bias_table", (2 * w - 1) ** 2, h)
                state[f"{b}.1.relative_position_index"] = _window_index(w)
                add(f"{b}.1.qkv.weight", 3 * d, d), add(f"{b}.1.proj.weight", d, d), add(f"{b}.1.proj.bias", d)
            add(f"{b}.3.0.weight", d), add(f"{b}.3.0.bias", d)
            add(f"{b}.3.1.weight", 2 * inner, d), add(f"{b}.3.4.weight", d, inner)
        norm(f"{prefix}.norm_out", d)

    for name, n in (("to_patch_emb_first_frame", 3 * p * p), ("to_patch_emb", 3 * t * p * p)):
        add(f"encoder.{name}.1.weight", n), add(f"encoder.{name}.1.bias", n)
        add(f"encoder.{name}.2.weight", d, n), add(f"encoder.{name}.2.bias", d)
        add(f"encoder.{name}.3.weight", d), add(f"encoder.{name}.3.bias", d)
    transformer("encoder.enc_spatial_transformer", enc, True)
    transformer("encoder.enc_temporal_transformer", "t" * temporal, False)
    transformer("decoder.dec_temporal_transformer", "t" * temporal, False)
    transformer("decoder.dec_spatial_transformer", dec, True)
    add("decoder.to_pixels_first_frame.0.weight", 3 * p * p, d), add("decoder.to_pixels_first_frame.0.bias", 3 * p * p)
    add("decoder.to_pixels.0.weight", 3 * t * p * p, d), add("decoder.to_pixels.0.bias", 3 * t * p * p)
    add("pre_vq_conv.1.weight", 2 * c if vae else c, d), add("pre_vq_conv.1.bias", 2 * c if vae else c)
    add("post_vq_conv.1.weight", d, c), add("post_vq_conv.1.bias", d)
    add("codebook.embeddings", k, c), add("codebook.z_avg", k, c), add("codebook.N", k), add("codebook.codebook_usage", k)
    add("image_discriminator.model0.0.weight", 8, 3, 4, 4), add("video_discriminator.model0.0.weight", 8, 3, 4, 4, 4)
    add("perceptual_model.lin0.model.1.weight", 1, 64, 1, 1)
    return state


def release_args(enc="tw", dec="tt", temporal=1, position="rope", vae=False, spelling="causal", causal=True, **extra):
    """The hyper-parameters as Lightning stores the release's VQGAN(args): an argparse.Namespace."""
    values = dict(patch_embed="linear", patch_size=TINY["patch"], temporal_patch_size=TINY["tubes"],
                  embedding_dim=TINY["dim"], heads=TINY["heads"], dim_head=TINY["dim"] // TINY["heads"],
                  enc_block=enc, dec_block=dec, spatial_depth=len(enc), temporal_depth=temporal,
                  twod_window_size=TINY["window"], n_codes=TINY["codes"], codebook_dim=TINY["code_dim"], l2_code=True,
                  use_vae=vae, spatial_pos=position, ff_mult=4.0, defer_temporal_pool=False, defer_spatial_pool=False,
                  gen_upscale=None, use_external_codebook=False, resolution=256, sequence_length=17)
    values[f"{spelling}_in_temporal_transformer"] = causal
    values[f"{spelling}_in_peg"] = True
    return argparse.Namespace(**{**values, **extra})


def write(tmp_path, state, args, name="release.ckpt") -> Path:
    path = tmp_path / name
    torch.save({"state_dict": state, "hyper_parameters": {"args": args}, "epoch": 3, "global_step": 1000}, path)
    return path


def clip(frames=5, size=8, seed=1):
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_every_release_tensor_lands_where_the_release_uses_it(tmp_path):
    state = release_state(enc="tw", dec="tt", position="rope")
    model = OmniTokenizer.from_release(write(tmp_path, state, release_args()))
    c = model.config
    assert (c.release_compatible, c.encoder_spatial, c.decoder_spatial, c.quantizer, c.patch_size,
            c.temporal_patch_size, c.window_size, c.heads, c.codebook_size, c.latent_dim, c.causal) == \
        (True, "gw", "gg", "vq", 4, 2, 2, 2, 16, 4, True)
    ours = model.state_dict()
    order, hd = rope_channel_order(TINY["dim"] // TINY["heads"]), TINY["dim"] // TINY["heads"]
    src = "encoder.enc_spatial_transformer.layers"

    def per_head(w):  # rows reordered within each head, as RoPE needs
        return w.reshape(TINY["heads"], hd, -1)[:, order].reshape(w.shape)

    q, kv = state[f"{src}.0.1.to_q.weight"], state[f"{src}.0.1.to_kv.weight"]
    assert torch.equal(ours["encoder.spatial.0.attn.qkv.weight"], torch.cat([per_head(q), per_head(kv[:32]), kv[32:]]))
    assert torch.equal(ours["encoder.spatial.0.attn.q_scale"], state[f"{src}.0.1.q_scale"][order])
    assert torch.equal(ours["encoder.spatial.0.peg.conv.weight"], state[f"{src}.0.0.dsconv.weight"])
    assert torch.equal(ours["encoder.spatial.0.norm1.bias"], state[f"{src}.0.1.norm.beta"])
    assert torch.equal(ours["encoder.spatial.1.rel_bias"], state[f"{src}.1.1.relative_position_bias_table"])
    assert torch.equal(ours["encoder.spatial.1.attn.qkv.weight"], state[f"{src}.1.1.qkv.weight"])
    # temporal blocks take no RoPE: their q and k as they are
    t = "encoder.enc_temporal_transformer.layers.0.1"
    assert torch.equal(ours["encoder.temporal.0.attn.qkv.weight"],
                       torch.cat([state[f"{t}.to_q.weight"], state[f"{t}.to_kv.weight"]]))
    assert torch.equal(ours["encoder.stage_norm.weight"], state["encoder.enc_spatial_transformer.norm_out.gamma"])
    assert torch.equal(ours["encoder.norm.weight"], state["encoder.enc_temporal_transformer.norm_out.gamma"])
    assert torch.equal(ours["decoder.stage_norm.weight"], state["decoder.dec_temporal_transformer.norm_out.gamma"])
    assert torch.equal(ours["embed_rest.norm_out.bias"], state["encoder.to_patch_emb.3.bias"])
    assert torch.equal(ours["out_rest.weight"], 2 * state["decoder.to_pixels.0.weight"])
    assert torch.equal(ours["head.codebook"], state["codebook.embeddings"]) and bool(ours["head.initialized"])
    # what the release lacks is zero: the biases of its bias-free linear layers
    assert not ours["encoder.spatial.0.attn.proj.bias"].any() and not ours["decoder.temporal.0.ff.proj_out.bias"].any()


def test_rope_channel_order_gives_the_releases_attention_scores():
    """The release rotates interleaved pairs (2j, 2j+1), even pairs by the column, odd by the row; ours rotates
    halves. With the channels reordered, every query-key product is the same."""
    h, w, hd, theta = 3, 4, 16, 10000.0
    q, k = torch.randn(2, h * w, hd, dtype=torch.float64).unbind(0)
    freqs = theta ** (-torch.arange(0, hd, 4, dtype=torch.float64) / hd)
    rows, cols = torch.arange(h * w) // w, torch.arange(h * w) % w
    angles = torch.stack([cols[:, None] * freqs, rows[:, None] * freqs], -1).flatten(1)  # pair j: col, row, col, ...

    def release_rotate(x):
        pairs = torch.view_as_complex(x.reshape(h * w, hd // 2, 2).contiguous())
        return torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).flatten(1)

    cos, sin = (r.reshape(h * w, -1).double() for r in rope_2d(h, w, hd, theta, "cpu"))
    order = rope_channel_order(hd)
    ours = apply_rope(q[:, order], cos, sin) @ apply_rope(k[:, order], cos, sin).T
    torch.testing.assert_close(ours, release_rotate(q) @ release_rotate(k).T, rtol=0, atol=1e-5)  # fp32 angles


@pytest.mark.parametrize("spelling", ["casual", "causal"])
def test_either_spelling_of_the_causal_flags_is_read(tmp_path, spelling):
    path = write(tmp_path, release_state(), release_args(spelling=spelling, causal=False))
    assert OmniTokenizer.from_release(path).config.causal is False


def test_relative_positions_and_the_kl_head_convert(tmp_path):
    state = release_state(enc="tt", dec="tw", position="rel", vae=True)
    model = OmniTokenizer.from_release(write(tmp_path, state, release_args(enc="tt", dec="tw", position="rel", vae=True)),
                                       sdpa=False)
    c = model.config
    assert (c.quantizer, c.release_spatial_position, c.release_sdpa) == ("kl", "relative", False)
    assert torch.equal(model.state_dict()["decoder.spatial.0.position.net.4.bias"],
                       state["decoder.dec_spatial_transformer.layers.0.1.spatial_rel_pos_bias.net.2.bias"])
    with torch.no_grad():
        enc = model.encode(clip())
        assert model.decode(enc.latents).sample.shape == (1, 3, 5, 8, 8)


@pytest.mark.parametrize("change, named", [
    (lambda s, a: s.update({"encoder.enc_spatial_transformer.layers.0.1.extra": torch.zeros(1)}), "layers.0.1.extra"),
    (lambda s, a: s.pop("decoder.dec_temporal_transformer.layers.0.1.to_out.weight"), "layers.0.1.to_out.weight"),
    (lambda s, a: s.update({"encoder.to_patch_emb.2.weight": torch.zeros(32, 7)}), "encoder.to_patch_emb"),
    (lambda s, a: setattr(a, "n_codes", 1024), "n_codes"),
    (lambda s, a: setattr(a, "causal_in_peg", False), "causal_in_peg"),
    (lambda s, a: setattr(a, "use_external_codebook", True), "use_external_codebook"),
    (lambda s, a: setattr(a, "casual_in_temporal_transformer", False), "casual_in_temporal_transformer"),
    (lambda s, a: [s.pop(k) for k in list(s) if k.startswith("encoder.to_patch_emb_first_frame")], "patch_embed"),
])
def test_what_the_converter_cannot_place_is_refused_by_name(tmp_path, change, named):
    state, args = release_state(), release_args()
    change(state, args)
    path = write(tmp_path, state, args)
    with pytest.raises(ReleaseCheckpointError, match=named) as err:
        OmniTokenizer.from_release(path)
    assert str(path) in str(err.value)


class Opaque:  # a pickled object of a class that the file's reader does not allow
    pass


def test_files_that_are_not_release_checkpoints_are_refused(tmp_path):
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ReleaseCheckpointError, match="text.ckpt: not a PyTorch checkpoint"):
        OmniTokenizer.from_release(tmp_path / "text.ckpt")
    torch.save({"epoch": 1}, tmp_path / "empty.ckpt")
    with pytest.raises(ReleaseCheckpointError, match="no 'state_dict'"):
        OmniTokenizer.from_release(tmp_path / "empty.ckpt")

    torch.save({"state_dict": release_state(), "callbacks": Opaque()}, tmp_path / "objects.ckpt")
    with pytest.raises(ReleaseCheckpointError, match="Opaque.*--trust-pickle"):
        OmniTokenizer.from_release(tmp_path / "objects.ckpt")
    assert OmniTokenizer.from_release(tmp_path / "objects.ckpt", trust_pickle=True).config.release_compatible


def test_convert_release_writes_a_folder_that_loads_to_the_same_model(tmp_path, capsys):
    path = write(tmp_path, release_state(), release_args())
    out = main([str(path), str(tmp_path / "converted")])
    digest = file_sha256(path)
    assert digest in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert f"`release.ckpt` (sha256 `{digest}`)" in card and "release-compatible: loads the published weights" in card
    direct, loaded = OmniTokenizer.from_release(path), OmniTokenizer.from_pretrained(out).eval()
    assert model_config(loaded.config) == model_config(direct.config)
    with torch.no_grad():
        a, b = direct.encode(clip()), loaded.encode(clip())
        assert torch.equal(a.indices, b.indices)
        assert torch.equal(direct.decode(a.latents).sample, loaded.decode(b.latents).sample)


def test_release_compatible_model_is_not_causal_across_frames_and_chunks_exactly(tmp_path):
    """Its temporal PEG reads (B h w, T', D) tokens as (B, T', h, w, D): later frames change the first latent frame,
    so an image is not encoded as the first frame of a clip that starts with it (ours is: tests/test_model.py).
    max_tokens still gives the one-pass result."""
    path = write(tmp_path, release_state(vae=True), release_args(vae=True))
    model = OmniTokenizer.from_release(path)
    x = clip(frames=7, size=16)
    with torch.no_grad():
        z = model.encode(x).latents
        image = model.encode(x[:, :, :1]).latents
        assert (z[:, :, 0] - image[:, :, 0]).abs().max() > 1e-3
        torch.testing.assert_close(model.encode(x, max_tokens=16).latents, z)
        torch.testing.assert_close(model.decode(z, max_tokens=16).sample, model.decode(z).sample)


def test_release_switches_need_release_compatible():
    with pytest.raises(ValueError, match="release_compatible"):
        OmniTokenizer.from_scale("tiny", release_sdpa=False)
    with pytest.raises(ValueError, match="deblock"):
        OmniTokenizer.from_scale("tiny", release_compatible=True, deblock_channels=4)


# ----------------------------------------------------------------------------- against the release's own classes

RELEASE_REPO = os.environ.get("RELEASE_REPO")
# the model flags of the release's scripts/recons/train.sh (stages 2 and 3) and eval scripts
PUBLISHED = ("--patch_embed linear --patch_size 8 --temporal_patch_size 4 --spatial_depth 4 --temporal_depth 4 "
             "--embedding_dim 512 --disc_layers 3 --enc_block ttww --dec_block tttt --twod_window_size 8 "
             "--causal_in_temporal_transformer --causal_in_peg --dim_head 64 --heads 8 --n_codes 8192 --codebook_dim 8 "
             "--l2_code --commitment_weight 1.0 --no_random_restart --resolution 256 --sequence_length 17 "
             "--norm_type batch").split()
LAYOUTS = {  # name: (extra flags, SDPA path)
    "vq": (["--spatial_pos", "rope"], True),  # imagenet_k600.ckpt, imagenet_ucf.ckpt, ...
    "kl": (["--spatial_pos", "rope", "--use_vae", "--kl_weight", "1e-6"], True),  # imagenet_k600_vae.ckpt, ...
    "vq relative": (["--temporal_patch_size", "2"], True),  # celebahq.ckpt, ffhq.ckpt: its default positions
    "vq relative, explicit path": (["--temporal_patch_size", "2"], False),
    "vq, explicit path": (["--spatial_pos", "rope"], False),
}


def _checkout() -> Path:
    if not RELEASE_REPO:
        pytest.skip("RELEASE_REPO is not set: comparing with the release's own classes needs a checkout of "
                    "FoundationVision/OmniTokenizer")
    repo = Path(RELEASE_REPO)
    if not (repo / "OmniTokenizer" / "omnitokenizer.py").is_file():
        pytest.fail(f"RELEASE_REPO={repo}: not a checkout of FoundationVision/OmniTokenizer")
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (the release imports it): pip install -e '.[references]'")
    return repo


@pytest.fixture
def release_vqgan(monkeypatch):
    """Builds the release's VQGAN from its own argument parser (its model arguments; the three data arguments its
    data module would add, whose imports need packages we lack, by hand), without downloading VGG16 for its LPIPS."""
    from bench.reference_tokenizer import release_module

    module = release_module(_checkout())
    base = importlib.import_module("OmniTokenizer.base")
    lpips = importlib.import_module("OmniTokenizer.modules.lpips")
    attention = importlib.import_module("OmniTokenizer.modules.attention")
    import torchvision

    monkeypatch.setattr(lpips, "models", types.SimpleNamespace(vgg16=lambda pretrained: torchvision.models.vgg16()))

    def build(flags, sdpa):
        if not sdpa:  # the README's footnote: without scaled_dot_product_attention, its explicit path runs
            functional = {k: getattr(F, k) for k in dir(F) if k != "scaled_dot_product_attention"}
            monkeypatch.setattr(attention, "F", types.SimpleNamespace(**functional))
        parser = module.VQGAN.add_model_specific_args(base.VQGAN.add_model_specific_args(argparse.ArgumentParser()))
        parser.add_argument("--resolution", type=int, default=128)
        parser.add_argument("--sequence_length", type=int, default=16)
        parser.add_argument("--image_channels", type=int, default=3)
        torch.manual_seed(0)
        vqgan = module.VQGAN(parser.parse_args(flags)).eval()
        with torch.no_grad():  # away from its initial values (unit norms and scales, zero biases): a mapping error shows
            g = torch.Generator().manual_seed(1)
            for name, t in vqgan.state_dict().items():
                if name.startswith(("encoder.", "decoder.", "pre_vq_conv.", "post_vq_conv.")) and t.is_floating_point():
                    t.add_(torch.randn(t.shape, generator=g) * 0.02)
        return vqgan

    return build


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_converted_release_gives_the_releases_codes_and_reconstructions(layout, release_vqgan, tmp_path):
    flags, sdpa = LAYOUTS[layout]
    release = release_vqgan(PUBLISHED + flags, sdpa)
    state = release.state_dict()
    assert any(k.startswith("video_discriminator.") for k in state) and any(k.startswith("perceptual_model.") for k in state)
    args = release.hparams["args"]
    if layout == "kl":  # the published files' spelling of the causal flags
        for name in ("causal_in_temporal_transformer", "causal_in_peg"):
            setattr(args, name.replace("causal", "casual"), getattr(args, name))
            delattr(args, name)
    path = tmp_path / "release.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"args": args}, "epoch": 0, "global_step": 0}, path)
    ours = OmniTokenizer.from_release(path, sdpa=sdpa)
    assert (ours.config.encoder_spatial, ours.config.decoder_spatial) == ("ggww", "gggg")

    g = torch.Generator().manual_seed(2)
    for batch, frames, size in ((2, 1, 128), (1, 17, 64)):
        x = torch.rand(batch, 3, frames, size, size, generator=g) * 2 - 1
        image = frames == 1
        x_release = (x[:, :, 0] if image else x) / 2  # its layout (images b c h w) and range [-0.5, 0.5]
        with torch.no_grad():
            enc = ours.encode(x)
            if ours.config.quantizer == "vq":
                codes = release.encode(x_release, image)
                assert torch.equal(enc.indices, codes), f"{layout}, {frames} x {size}²: code indices differ"
                theirs, mine = release.decode(codes, image), ours.decode_indices(codes).sample
            else:  # the release's encode samples: the same noise, in its layout (b c t h w)
                torch.manual_seed(3)
                z = release.encode(x_release, image)
                torch.manual_seed(3)
                noise = torch.randn(enc.latent_dist.mean.shape)
                z_ours = enc.latent_dist.mean + enc.latent_dist.std * noise
                torch.testing.assert_close(z_ours[:, :, 0] if image else z_ours, z, rtol=1e-5, atol=1e-5)
                # its decode wants clips as b t h w c (and images as b c h w)
                theirs = release.decode(z if image else z.permute(0, 2, 3, 4, 1), image)
                mine = ours.decode(z_ours).sample
            torch.testing.assert_close((mine[:, :, 0] if image else mine) / 2, theirs, rtol=0, atol=1e-5)


def test_synthetic_release_names_are_the_releases(release_vqgan):
    """The CI tests' synthetic file names its tensors as the release's VQGAN does (here at the published layout)."""
    release = release_vqgan(PUBLISHED + ["--spatial_pos", "rope"], True)
    real = {k for k in release.state_dict() if not k.startswith(("image_discriminator.", "video_discriminator.",
                                                                   "perceptual_model."))}
    published = dict(dim=512, heads=8, patch=8, tubes=4, window=8, codes=8192, code_dim=8, inner=int(512 * 4 * 2 / 3))
    synthetic = release_state(enc="ttww", dec="tttt", temporal=4, size=published)
    names = {k for k in synthetic if not k.startswith(("image_discriminator.", "video_discriminator.", "perceptual_model."))}
    assert names == real
    assert all(synthetic[k].shape == release.state_dict()[k].shape for k in names)
