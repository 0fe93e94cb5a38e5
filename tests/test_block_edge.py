"""The patch grid: the block-edge ratio that measures it, and the levers against it (a deblocking pixel head, a loss
on pixel steps)."""
import pytest
import torch
import torch.nn.functional as F

from shared.metrics.bicubic import BicubicBaselines
from shared.metrics.block_edge import block_edge_ratio, block_edge_steps
from tokenizer import OmniTokenizer
from tokenizer.losses import gradient_loss
from tokenizer.transfer import transfer_weights


def smooth_image(size=64, seed=0):
    """Sums of slow waves of random phase and direction: smooth everywhere, with no preferred grid."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    channels = []
    for _ in range(3):
        freq, angle, phase = torch.rand(3, 4, generator=g)
        waves = [torch.sin(0.05 + 0.25 * f * (xx * torch.cos(6.3 * a) + yy * torch.sin(6.3 * a)) + 6.3 * ph)
                 for f, a, ph in zip(freq, angle, phase)]
        channels.append(sum(waves) / 4)
    return torch.stack(channels)[None]


def test_block_edge_ratio_of_a_mosaic_is_large_and_of_a_smooth_image_near_one():
    x = smooth_image()
    mosaic = F.interpolate(F.avg_pool2d(x, 8), scale_factor=8, mode="nearest")
    # inside every tile a gentle ramp, so that the inside steps are not zero
    ramp = torch.linspace(0, 0.02, 8).repeat(8)[None, None, None, :]
    assert block_edge_ratio(x, 8) == pytest.approx(1.0, abs=0.15)
    assert block_edge_ratio(mosaic + ramp, 8) > 10
    # the same mosaic moved by half a tile is not this grid's blocking: its edges fall inside the 8-pixel blocks
    assert block_edge_ratio((mosaic + ramp).roll((4, 4), dims=(-2, -1)), 8) < 0.5


def test_block_edge_steps_by_hand_and_on_videos():
    # one 1 x 4 row, block 2: steps 0->1 (inside), 1->2 (across), 2->3 (inside)
    x = torch.tensor([0.0, 0.2, 1.0, 1.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4) * 2 - 1
    edge, inside = block_edge_steps(x, 2)
    assert edge.item() == pytest.approx(0.8)
    assert inside.item() == pytest.approx(0.1)
    clip = torch.stack([smooth_image(seed=s) for s in range(3)], 2)  # (1, 3, 3, 64, 64)
    edge, inside = block_edge_steps(clip, 8)
    assert edge.shape == inside.shape == (3,)
    with pytest.raises(ValueError, match="no 8-pixel grid line"):
        block_edge_steps(torch.zeros(1, 3, 8, 8), 8)


def test_bicubic_baselines_report_their_block_edge_ratio():
    x = smooth_image()[:, :, None]
    baselines = BicubicBaselines({"8x": 8.0}, block=8)
    baselines.add(x)
    result = baselines.result()["8x"]
    assert 0.5 < result["block_edge"] < 2.0
    without_grid = BicubicBaselines({"8x": 8.0})
    without_grid.add(x)
    assert "block_edge" not in without_grid.result()["8x"]


def test_deblocking_head_starts_as_the_plain_heads_and_transfers_from_them():
    torch.manual_seed(0)
    plain = OmniTokenizer.from_scale("tiny").eval()
    deblock = OmniTokenizer.from_scale("tiny", deblock_channels=4).eval()
    notes = transfer_weights(plain, deblock)
    assert any("deblocking" in n for n in notes)
    x = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(deblock(x)[0], plain(x)[0])
        # once the convolution has weight, a pixel next to a patch edge is painted from the neighbouring patch's
        # token too (the pixel heads alone paint each patch from its own token)
        deblock.deblock.conv.weight.normal_(0, 0.1)
        tokens = torch.randn(1, 2, 2, 2, deblock.config.dim)
        moved = tokens.clone()
        moved[:, :, 0, 1] += 1.0  # the tokens right of patch (0, 0)
        y, y2 = (deblock.deblock(deblock._unembed(t, None)) for t in (tokens, moved))
        p = deblock.config.patch_size
        assert not torch.allclose(y[..., :p, p - 1], y2[..., :p, p - 1])  # last column of patch (0, 0)
        torch.testing.assert_close(y[..., :p, : p - 1], y2[..., :p, : p - 1])  # further in: untouched
        # chunked decoding gives the same frames
        z = deblock.encode(x).latents
        torch.testing.assert_close(deblock.decode(z, max_tokens=16).sample, deblock.decode(z).sample)


def test_deblocking_head_inflates_its_tubes_and_keeps_the_colours_when_narrowed():
    torch.manual_seed(0)
    src = OmniTokenizer.from_scale("tiny", deblock_channels=2, temporal_patch_size=2)
    dst = OmniTokenizer.from_scale("tiny", deblock_channels=2)
    transfer_weights(src, dst)
    p, t_src = src.config.patch_size, 2
    w_src = src.out_rest.weight.view(5, t_src, p * p, -1)
    w_dst = dst.out_rest.weight.view(5, 4, p * p, -1)
    torch.testing.assert_close(w_dst[:, 1], w_src[:, 0])
    torch.testing.assert_close(w_dst[:, 3], w_src[:, 1])
    plain = OmniTokenizer.from_scale("tiny")
    transfer_weights(dst, plain)
    torch.testing.assert_close(plain.out_first.weight, dst.out_first.weight[: 3 * p * p])


def test_gradient_loss_is_zero_for_equal_steps_and_sees_a_grid():
    x = smooth_image()
    assert gradient_loss(x + 0.3, x).item() == pytest.approx(0.0, abs=1e-7)  # a shift has the same steps
    mosaic = F.interpolate(F.avg_pool2d(x, 8), scale_factor=8, mode="nearest")
    blur = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert gradient_loss(mosaic, x) > gradient_loss(blur, x)


def test_reconstruction_strip_shows_input_bicubic_and_each_finished_head(tmp_path):
    from PIL import Image

    from eval import reconstruction_strip

    torch.manual_seed(0)
    OmniTokenizer.from_scale("tiny").save_pretrained(tmp_path / "run" / "joint" / "final")
    x = reconstruction_strip.photos(32, 2)
    rows = reconstruction_strip.strip_rows(tmp_path / "run", x)
    assert [label for label, _ in rows] == ["input", "bicubic 8x down-and-up", "VQVAE (joint stage)"]
    assert all(images.shape == x.shape for _, images in rows)
    out = reconstruction_strip.main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "strip.png"),
                                     "--resolution", "32", "--count", "2"])
    assert Image.open(out).size[0] > 0
    with pytest.raises(SystemExit, match="no finished joint/ or kl/ stage"):
        reconstruction_strip.main(["--run", str(tmp_path / "none"), "--out", str(tmp_path / "x.png")])
