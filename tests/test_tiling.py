"""Tiled and sliced encoding and decoding (enable_tiling / enable_slicing), on the tiny preset."""
import pytest
import torch

from tokenizer import OmniTokenizer
from tokenizer.tiling import blend_tiles, tile_starts


def clip(b=1, t=5, h=48, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def window_local(quantizer):
    """A model whose every token depends on its own attention window only (window attention in every spatial block,
    the PEG at its initial zero, no deblocking convolution): tiles aligned to the windows then compute exactly what
    one pass does, so any difference is the tiling's own."""
    torch.manual_seed(0)
    return OmniTokenizer.from_scale("tiny", quantizer=quantizer, encoder_spatial="ww", decoder_spatial="ww").eval()


def counting_calls(stack):
    shapes = []
    stack.register_forward_hook(lambda module, args, out: shapes.append(tuple(args[0].shape)))
    return shapes


def test_tile_starts_cover_the_axis_and_blending_reassembles_a_tensor_exactly():
    assert tile_starts(20, 8, 4) == [0, 4, 8, 12] and tile_starts(12, 8, 6) == [0, 4] and tile_starts(6, 8, 4) == [0]
    x = torch.randn(2, 3, 12, 20, dtype=torch.float64)
    for factor in (1, 3):
        up = x.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
        out = blend_tiles(lambda r0, r1, c0, c1: up[..., r0 * factor : r1 * factor, c0 * factor : c1 * factor],
                          (12, 20), (8, 8), (6, 4), factor)
        torch.testing.assert_close(out, up, rtol=0, atol=1e-12)  # the weights of every position sum to one


@pytest.mark.parametrize("quantizer", ["vq", "kl"])
def test_tiles_of_a_window_local_model_give_the_one_pass_result(quantizer):
    model, x = window_local(quantizer), clip()  # 12 x 20 tokens (p = 4), windows of 4 x 4 tokens
    with torch.no_grad():
        ref = model.encode(x)
        ref_pixels = model.decode(ref.latents).sample
        model.enable_tiling(32, 32, 16, 16)  # tiles of 8 x 8 tokens, 4 apart: starts (0, 4) x (0, 4, 8, 12)
        encoded, decoded = counting_calls(model.encoder), counting_calls(model.decoder)
        tiled = model.encode(x)
        pixels = model.decode(tiled.latents).sample
    assert encoded == decoded == [(1, 2, 8, 8, model.config.dim)] * 8  # eight tiles, each a tile's size
    torch.testing.assert_close(tiled.latents, ref.latents, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pixels, ref_pixels, rtol=1e-4, atol=1e-4)
    if quantizer == "vq":
        assert torch.equal(tiled.indices, ref.indices)
    else:
        torch.testing.assert_close(tiled.latent_dist.logvar, ref.latent_dist.logvar, rtol=1e-4, atol=1e-4)


def test_frames_off_the_patch_grid_are_tiled_and_cropped_back_and_frames_within_a_tile_are_untouched():
    torch.manual_seed(0)
    model = OmniTokenizer.from_scale("tiny", quantizer="kl").eval()  # global attention in a spatial block of each
    x = clip(h=44, w=70)  # off the patch grid: padded, tiled, cropped back
    with torch.no_grad():
        ref = model.decode(model.encode(x).latents, size=x.shape[2:]).sample
        model.enable_tiling(32, 32, 16, 16)
        tiled = model.decode(model.encode(x).latents, size=x.shape[2:]).sample
        small = clip(h=32, w=32)
        inside = model.decode(model.encode(small).latents).sample
        model.disable_tiling()
        torch.testing.assert_close(inside, model.decode(model.encode(small).latents).sample)
    # global attention sees the tile, not the frame: another result (how close on trained weights: the tiling bench)
    assert tiled.shape == x.shape and torch.isfinite(tiled).all() and not torch.allclose(tiled, ref, atol=1e-4)


def test_tiling_processes_a_long_clip_in_chunks_of_tile_max_tokens():
    model, x = window_local("kl"), clip(t=9, h=16, w=16)  # 3 latent frames of 4 x 4 tokens: within one tile
    with torch.no_grad():
        ref = model.decode(model.encode(x).latents).sample
        model.enable_tiling(tile_max_tokens=16)  # one latent frame of the clip at a time
        spatial = counting_calls(model.encoder.spatial[0])
        out = model.decode(model.encode(x).latents).sample
    assert spatial == [(1, 4, 4, model.config.dim)] * 3
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("quantizer", ["vq", "kl"])
def test_slicing_encodes_and_decodes_one_item_at_a_time_with_the_batch_result(quantizer):
    torch.manual_seed(0)
    model, x = OmniTokenizer.from_scale("tiny", quantizer=quantizer).eval(), clip(b=3, h=16, w=24)
    with torch.no_grad():
        ref = model.encode(x)
        ref_pixels = model.decode(ref.latents).sample
        model.enable_slicing()
        encoded, decoded = counting_calls(model.encoder), counting_calls(model.decoder)
        sliced = model.encode(x)
        pixels = model.decode(sliced.latents).sample
    assert [s[0] for s in encoded] == [s[0] for s in decoded] == [1, 1, 1]
    torch.testing.assert_close(sliced.latents, ref.latents, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sliced.loss, ref.loss, rtol=1e-5, atol=1e-6)  # the head saw the whole batch
    torch.testing.assert_close(pixels, ref_pixels, rtol=1e-5, atol=1e-5)


def test_tile_sizes_off_the_patch_grid_are_refused():
    model = OmniTokenizer.from_scale("tiny")
    with pytest.raises(ValueError, match="tile height 30 and stride 16: both must be multiples of the patch size 4"):
        model.enable_tiling(30, 32, 16, 16)
    with pytest.raises(ValueError, match="tile width 32 and stride 32: .* the stride above 0 and below the tile"):
        model.enable_tiling(32, 32, 16, 32)
    assert not model.use_tiling
