"""DiT and Latte (diffusion_generation/): shapes at any latent size, adaLN-Zero start, one conditioning embedder with
the label dropped once per sample, parameter counts of the paper configs, save/load."""
import pytest
import torch
from diffusers.models.embeddings import LabelEmbedding, TimestepEmbedding

from diffusion_generation.config import experiment_config
from diffusion_generation.dit import DiT, sincos_2d
from diffusion_generation.latte import Latte
from diffusion_generation.models import build_model

from .model_tester import ModelTesterMixin


def tiny_dit(**kw):
    return DiT(**{"in_channels": 8, "patch_size": 2, "hidden_size": 32, "depth": 2, "num_heads": 2, "num_classes": 5,
                  **kw})


def tiny_latte(**kw):
    return Latte(**{"in_channels": 8, "patch_size": 2, "hidden_size": 32, "depth": 4, "num_heads": 2,
                    "num_classes": 5, **kw})


def randomise(model):
    """Non-zero weights everywhere (the zero-initialised gates and output layer included)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


@pytest.mark.parametrize("h,w", [(8, 8), (6, 10), (2, 12), (12, 4)])
def test_dit_any_latent_height_and_width(h, w):
    model = randomise(tiny_dit())
    x = torch.randn(3, 8, h, w)
    out = model(x, torch.tensor([0, 10, 999]), torch.tensor([0, 4, 5]))
    assert out.shape == (3, 16, h, w)
    assert torch.isfinite(out).all() and out.abs().sum() > 0


@pytest.mark.parametrize("t,h,w", [(3, 8, 8), (5, 6, 10), (1, 4, 2)])
def test_latte_any_latent_size(t, h, w):
    model = randomise(tiny_latte(num_classes=0))
    out = model(torch.randn(2, 8, t, h, w), torch.tensor([5, 500]))
    assert out.shape == (2, 16, t, h, w)
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_grid_not_divisible_by_patch_is_a_clear_error():
    with pytest.raises(ValueError, match="not divisible by the patch size 2"):
        tiny_dit()(torch.randn(1, 8, 5, 6), torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\(N, C, T, h, w\)"):
        tiny_latte()(torch.randn(1, 8, 4, 4), torch.tensor([1]), torch.tensor([0]))


def test_position_embedding_is_row_major_on_non_square_grids():
    """Token (r, c) of an h x w grid carries row r and column c (diffusers' 2-D helper scrambles h != w)."""
    emb = sincos_2d(16, 3, 5)
    square = sincos_2d(16, 5, 5)
    for r in range(3):
        for c in range(5):
            assert torch.equal(emb[r * 5 + c], square[r * 5 + c])


def test_position_embedding_is_dits_table():
    """DiT's get_2d_sincos_pos_embed (and Latte's, and diffusers' on a square grid) put the column in the first half
    of the channels and the row in the second; ours had them the other way round."""
    from diffusers.models.embeddings import get_1d_sincos_pos_embed_from_grid, get_2d_sincos_pos_embed

    emb = sincos_2d(16, 3, 5).double()
    one_d = lambda n: get_1d_sincos_pos_embed_from_grid(8, torch.arange(n, dtype=torch.float64))  # noqa: E731
    cols, rows = one_d(5), one_d(3)
    for r in range(3):
        for c in range(5):
            torch.testing.assert_close(emb[r * 5 + c], torch.cat([cols[c], rows[r]]))
    square = torch.as_tensor(get_2d_sincos_pos_embed(16, 4, base_size=4, output_type="pt")).double()
    torch.testing.assert_close(sincos_2d(16, 4, 4).double(), square, atol=1e-6, rtol=0)


def test_latte_mixes_frames_and_dit_mixes_positions():
    latte = randomise(tiny_latte(num_classes=0)).eval()
    x = torch.randn(1, 8, 3, 4, 4)
    y = x.clone()
    y[:, :, 0] += 1.0  # change the first frame only
    a, b = latte(x, torch.tensor([7])), latte(y, torch.tensor([7]))
    assert (a[:, :, 2] - b[:, :, 2]).abs().max() > 1e-4  # a later frame sees it (temporal attention)
    dit = randomise(tiny_dit()).eval()
    x = torch.randn(1, 8, 4, 6)
    y = x.clone()
    y[..., :2, :2] += 1.0  # change one patch only
    a, b = dit(x, torch.tensor([7]), torch.tensor([1])), dit(y, torch.tensor([7]), torch.tensor([1]))
    assert (a[..., 2:, 4:] - b[..., 2:, 4:]).abs().max() > 1e-4  # a far patch sees it (attention)


@pytest.mark.parametrize("make", [tiny_dit, tiny_latte])
def test_zero_initialised_gates_make_the_initial_output_exactly_zero(make):
    model = make()
    for block in model.blocks:
        assert not block.adaLN_modulation[-1].weight.any() and not block.adaLN_modulation[-1].bias.any()
    x = torch.randn(2, 8, 3, 4, 6) if isinstance(model, Latte) else torch.randn(2, 8, 4, 6)
    out = model(x, torch.tensor([3, 900]), torch.tensor([1, 5]))
    assert torch.equal(out, torch.zeros_like(out))
    # ...and training moves it off zero (the zeros are a start, not a constant)
    out.sum().backward()
    assert model.final.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("make", [tiny_dit, tiny_latte])
def test_one_conditioning_embedder_shared_by_every_block(make):
    model = make()
    assert sum(isinstance(m, LabelEmbedding) for m in model.modules()) == 1
    assert sum(isinstance(m, TimestepEmbedding) for m in model.modules()) == 1


def test_label_dropped_once_per_sample_and_every_block_sees_the_same_condition():
    torch.manual_seed(0)
    model = randomise(tiny_dit(class_dropout_prob=0.5))
    seen = []
    hooks = [b.adaLN_modulation.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
             for b in model.blocks]
    n = 64
    x, t, y = torch.randn(n, 8, 4, 4), torch.full((n,), 100), torch.arange(n) % 5
    model.train()
    model(x, t, y)
    for h in hooks:
        h.remove()
    assert len(seen) == len(model.blocks)
    for c in seen[1:]:
        assert torch.equal(c, seen[0])  # one condition per sample, the same in every block
    model.eval()
    cond = model.condition(t, y, torch.float32)
    null = model.condition(t, torch.full_like(y, 5), torch.float32)
    dropped = torch.isclose(seen[0], null).all(1)
    kept = torch.isclose(seen[0], cond).all(1)
    assert (dropped ^ kept).all()  # each sample is wholly conditioned or wholly unconditioned
    assert 10 < dropped.sum() < 54  # p = 0.5 over 64 samples


def test_unconditional_and_conditional_by_config():
    uncond = tiny_dit(num_classes=0)
    assert uncond.condition.label_embed is None
    with pytest.raises(ValueError, match="unconditional"):
        uncond(torch.randn(1, 8, 4, 4), torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="class-conditional"):
        tiny_dit()(torch.randn(1, 8, 4, 4), torch.tensor([1]))


def test_paper_parameter_counts():
    """DiT-XL/2 with 4 input channels is DiT's 675M (675,129,632 in DiT, whose count includes its fixed 256 x 1152
    position table; ours is computed on the fly), and the paper configs build XL/2 models."""
    with torch.device("meta"):
        xl = DiT(in_channels=4, patch_size=2, hidden_size=1152, depth=28, num_heads=16, num_classes=1000)
        dit_cfg = experiment_config("paper", "dit").model
        latte_cfg = experiment_config("paper", "latte").model
        dit8, latte = build_model(dit_cfg), build_model(latte_cfg)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(xl) == 675_129_632 - 256 * 1152
    assert (dit_cfg.depth, dit_cfg.hidden_size, dit_cfg.num_heads, dit_cfg.patch_size) == (28, 1152, 16, 2)
    assert (latte_cfg.depth, latte_cfg.hidden_size, latte_cfg.num_heads, latte_cfg.patch_size) == (28, 1152, 16, 2)
    # 8 latent channels in and 16 out add 2 x 2 x (4 + 8) x 1152 weights and 32 biases to the 4-channel model
    assert count(dit8) == count(xl) + 4 * 12 * 1152 + 32
    # Latte-XL/2: the same blocks, 101 classes instead of 1000
    assert count(latte) == count(dit8) - (1000 - 101) * 1152
    assert latte_cfg.num_classes == 101 and dit_cfg.num_classes == 1000


@pytest.mark.parametrize("make", [tiny_dit, tiny_latte])
def test_save_load_round_trip(make, tmp_path):
    model = randomise(make()).eval()
    model.save_pretrained(str(tmp_path / "m"))
    loaded = type(model).from_pretrained(tmp_path / "m").eval()
    assert type(loaded) is type(model)
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == \
        {k: v for k, v in model.config.items() if not k.startswith("_")}
    x = torch.randn(2, 8, 3, 4, 4) if isinstance(model, Latte) else torch.randn(2, 8, 4, 4)
    t, y = torch.tensor([1, 700]), torch.tensor([0, 3])
    assert torch.equal(model(x, t, y), loaded(x, t, y))


class TestDiTModel(ModelTesterMixin):
    """Save / load and gradients; the adaLN-Zero gates and the zero output layer randomised first, or nothing
    upstream of them would get a gradient."""
    zero_initialised = ("adaLN_modulation", "final.")

    def make_model(self):
        return tiny_dit()

    def make_inputs(self):
        g = torch.Generator().manual_seed(0)
        return {"x": torch.randn(2, 8, 4, 4, generator=g), "t": torch.tensor([3, 700]), "y": torch.tensor([0, 4])}


class TestLatteModel(TestDiTModel):
    def make_model(self):
        return tiny_latte()

    def make_inputs(self):
        g = torch.Generator().manual_seed(0)
        return {"x": torch.randn(2, 8, 3, 4, 4, generator=g), "t": torch.tensor([3, 700]), "y": torch.tensor([0, 4])}


def test_attention_runs_sdpa_in_fp32_and_the_explicit_products_on_the_cpu_in_bf16(monkeypatch):
    from diffusers.models.attention_processor import AttnProcessor2_0

    torch.manual_seed(0)
    model = Latte(in_channels=4, patch_size=2, hidden_size=64, depth=2, num_heads=2, num_classes=3).eval()
    for p in model.parameters():  # past the zero-initialised gates, so that attention reaches the output
        torch.nn.init.normal_(p, std=0.05)
    x, t, y = torch.randn(2, 4, 3, 8, 8), torch.tensor([3, 500]), torch.tensor([1, 2])  # (N, C, T, h, w)
    calls = []
    for block in model.blocks:
        for name in ("sdpa", "explicit"):
            run = getattr(block.attn.processor, name)
            monkeypatch.setattr(block.attn.processor, name, lambda *a, _run=run, _name=name, **k: (
                calls.append(_name), _run(*a, **k))[1])
    with torch.no_grad():
        fp32 = model(x, t, y)
        assert set(calls) == {"sdpa"}
        calls.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x, t, y)
        assert set(calls) == {"explicit"}
        for block in model.blocks:
            block.attn.set_processor(AttnProcessor2_0())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_sdpa = model(x, t, y)
        # the same attention to bf16's precision (the two differ in rounding only)
        assert (bf16 - bf16_sdpa).abs().max() <= 2 * (bf16_sdpa - fp32).abs().max() + 1e-3
        assert torch.equal(model(x, t, y), fp32)  # fp32: SDPA either way
