"""OmniTokenizer invariants, each on the tiny preset."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch._dynamo.utils import counters

from tokenizer import OmniTokenizer
from tokenizer.model import GEGLU, Attention, SpatialBlock, alibi_bias, attend, rope_2d

from .model_tester import ModelTesterMixin


def make(quantizer="vq", **overrides):
    torch.manual_seed(0)
    model = OmniTokenizer.from_scale("tiny", quantizer=quantizer, **overrides).eval()
    with torch.no_grad():  # the PEG starts at zero; give it weight so that it is really tested
        for stack in (model.encoder, model.decoder):
            stack.peg.conv.weight.normal_(0, 0.2)
    return model


def video(b=2, t=9, h=32, w=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


@pytest.mark.parametrize("quantizer", ["vq", "kl"])
@pytest.mark.parametrize("causal", [True, False])
def test_encoder_and_decoder_causality(quantizer, causal):
    model = make(quantizer, causal=causal)
    t = model.config.temporal_patch_size
    x = video(t=1 + 4 * t)  # 5 latent frames
    f = 1 + 2 * t - 1  # the last frame covered by latent frame 2
    x2 = x.clone()
    x2[:, :, f + 1 :] = torch.rand_like(x2[:, :, f + 1 :])
    with torch.no_grad():
        z, z2 = model.encode(x).latents, model.encode(x2).latents
        past_same = torch.allclose(z[:, :, :3], z2[:, :, :3], atol=1e-5)
        assert not torch.allclose(z[:, :, 3:], z2[:, :, 3:], atol=1e-5)
        # decoder: change latent frames >= 3; output frames 0..f must not move
        zd = z.clone()
        zd[:, :, 3:] = torch.randn_like(zd[:, :, 3:])
        y, y2 = model.decode(z).sample, model.decode(zd).sample
        out_past_same = torch.allclose(y[:, :, : f + 1], y2[:, :, : f + 1], atol=1e-5)
    assert past_same == causal and out_past_same == causal  # plain attention must leak the future


@pytest.mark.parametrize("quantizer", ["vq", "kl"])
def test_image_is_first_frame_of_video(quantizer):
    model = make(quantizer)
    clip = video(t=1 + 2 * model.config.temporal_patch_size, h=24, w=40)
    with torch.no_grad():
        as_image, as_video = model.encode(clip[:, :, 0]), model.encode(clip)
    assert as_image.latents.shape[2] == 1
    torch.testing.assert_close(as_image.latents[:, :, 0], as_video.latents[:, :, 0], atol=1e-5, rtol=1e-5)
    if quantizer == "vq":
        assert torch.equal(as_image.indices[:, 0], as_video.indices[:, 0])


@pytest.mark.parametrize("shape", [(1, 3, 5, 30, 22), (2, 3, 1, 17, 45), (1, 3, 50, 18)])
def test_any_size_keeps_input_shape(shape):
    model = make()
    x = torch.rand(shape) * 2 - 1
    with torch.no_grad():
        y, enc = model(x)
    assert y.shape == x.shape
    p = model.config.patch_size
    assert enc.latents.shape[-2:] == (-(-shape[-2] // p), -(-shape[-1] // p))
    assert model.decode(enc.latents, size=enc.size).sample.shape[-2:] == shape[-2:]


def test_bad_frame_count_and_bad_input_are_clear_errors():
    model = make()
    with pytest.raises(ValueError, match=r"1 \+ k\*4 frames"):
        model.encode(video(t=4))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        model.encode(torch.rand(2, 1, 5, 16, 16))
    with pytest.raises(TypeError, match="float tensor"):
        model.encode(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"indices must lie in"):
        model.decode_indices(torch.full((1, 1, 4, 4), 10_000))


def test_inputs_that_would_give_silent_wrong_codes_are_refused_or_converted():
    model = make()
    x = video(b=1, t=5, h=16, w=16)
    bad = x.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        model.encode(bad)
    for inf in (float("inf"), -float("inf")):
        bad = x.clone()
        bad[0, 1, 2, 3, 4] = inf
        with pytest.raises(ValueError, match="NaN or inf"):
            model.encode(bad, check_range=False)
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\].*x / 127.5 - 1"):
        model.encode((x + 1) * 127.5)
    assert model.encode((x + 1) * 127.5, check_range=False).indices.shape == (1, 2, 4, 4)  # on purpose: allowed
    ref = model.encode(x).indices
    for dtype in (torch.float16, torch.bfloat16, torch.float64):  # converted to the weights' dtype
        assert model.encode(x.to(dtype)).latents.dtype == torch.float32
    assert torch.equal(model.encode(x.double()).indices, ref)
    with pytest.raises(ValueError, match="must not be empty"):
        model.encode(torch.zeros(1, 3, 1, 0, 16))
    enc = model.encode(x)
    with pytest.raises(ValueError, match=r"size can only crop"):
        model.decode(enc.latents, size=(5, 40, 16))
    assert model.decode(enc.latents, size=(5, 12, 10)).sample.shape == (1, 3, 5, 12, 10)


def test_window_padding_never_leaks_into_real_tokens():
    torch.manual_seed(0)
    block = SpatialBlock(16, 2, 2.0, window=4).eval()
    x = torch.randn(3, 2, 2, 16)  # a 2x2 grid inside one 4x4 window: 12 keys are padding
    rope = rope_2d(2, 2, 8, 1e4, "cpu")
    with torch.no_grad():
        out = block(x, rope)
        real = torch.tensor([0, 1, 4, 5])  # where the 2x2 tokens sit in the 4x4 window
        bias = block.rel_bias[block.rel_index[real][:, real]].permute(2, 0, 1)
        cos, sin = (r.reshape(4, -1) for r in rope)
        ref = x + block.attn(block.norm1(x).reshape(3, 4, 16), bias=bias, rope=(cos, sin)).view(3, 2, 2, 16)
        ref = ref + block.ff(block.norm2(ref))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("quantizer", ["vq", "kl"])
@pytest.mark.parametrize("max_tokens", [10, 200])  # 10: one row per slice; 200: slices of several frames / positions
def test_chunked_encode_decode_equals_one_pass(quantizer, max_tokens):
    model = make(quantizer)
    with torch.no_grad():  # the PEG convs start at zero: give them weights so that their slicing is tested too
        for peg in (model.encoder.peg, model.decoder.peg):
            peg.conv.weight.normal_(0, 0.2)
    x = video(b=2, t=1 + 5 * model.config.temporal_patch_size, h=24, w=28)
    with torch.no_grad():
        full, part = model.encode(x), model.encode(x, max_tokens=max_tokens)
        torch.testing.assert_close(part.latents, full.latents, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.decode(full.latents, max_tokens=max_tokens).sample, model.decode(full.latents).sample,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("quantizer", ["vq", "kl"])
def test_a_bf16_model_encodes_and_decodes_in_bf16(quantizer):
    """The heads give fp32 latents (the code search stays in fp32); decode takes them in the weights' dtype."""
    model = make(quantizer).to(torch.bfloat16)
    x = video(b=1, t=5, h=16, w=16)
    with torch.no_grad():
        out = model.decode(model.encode(x).latents).sample
    assert out.dtype == torch.bfloat16 and out.shape == x.shape and torch.isfinite(out).all()


def test_compiled_for_inference_gives_the_eager_result_and_the_same_weights(monkeypatch):
    import shared.memory

    trims = []  # the heap release a chunked stage ends with: called eagerly, skipped inside compiled stacks
    monkeypatch.setattr(shared.memory, "_malloc_trim", lambda: trims.append(1) or (lambda pad: 0))
    model = make("kl")
    x = video(b=1, t=5, h=16, w=16)
    keys = list(model.state_dict())

    def eager_with_weights_of(m):
        eager = OmniTokenizer.from_config(model.config).eval()
        eager.load_state_dict(m.state_dict())
        return eager

    graphs = counters["stats"]["unique_graphs"]
    with torch.inference_mode():
        ref = model.decode(model.encode(x).latents).sample
        model.compile_for_inference()
        out = model.decode(model.encode(x).latents).sample
    assert counters["stats"]["unique_graphs"] >= graphs + 2  # the encoder and decoder stacks ran compiled
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    eager_copy = eager_with_weights_of(model)
    with torch.inference_mode():
        eager_copy.decode(eager_copy.encode(x, max_tokens=16).latents, max_tokens=16).sample  # 2 latent frames of 16 tokens
        assert trims
        trims.clear()
        breaks = sum(counters["graph_break"].values())
        chunked = model.decode(model.encode(x, max_tokens=16).latents, max_tokens=16).sample
    torch.testing.assert_close(chunked, ref, atol=1e-4, rtol=1e-4)
    assert not trims and sum(counters["graph_break"].values()) == breaks  # traced past the C call, no graph break
    assert list(model.state_dict()) == keys  # saving and loading see the model as it was
    twin = copy.deepcopy(model)  # a copy runs eagerly, with its own weights
    with torch.no_grad():
        twin.post_head.weight.mul_(2)
        for stack in (twin.encoder, twin.decoder):
            stack.norm.weight.mul_(0.5)
    with torch.inference_mode():
        twin_out = twin.decode(twin.encode(x).latents).sample
    eager_twin = eager_with_weights_of(twin)
    with torch.inference_mode():
        torch.testing.assert_close(twin_out, eager_twin.decode(eager_twin.encode(x).latents).sample)


def test_geglu_padded_inner_width_gives_the_unpadded_result():
    torch.manual_seed(0)
    ff = GEGLU(512, 4.0)  # the `paper` width: inner 1365, computed at 1408 without autograd
    assert ff.pad == 43 and GEGLU(128, 4.0).pad == 0  # `small` (341): padding would cost 13 %, not done
    x = torch.randn(2, 7, 512)
    value, gate = F.linear(x, ff.proj_in.weight, ff.proj_in.bias).chunk(2, -1)
    ref = ff.proj_out(value * F.gelu(gate))
    with torch.no_grad():
        torch.testing.assert_close(ff(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ff(x), ref, atol=1e-5, rtol=1e-5)  # with autograd: unpadded


def test_chunked_stack_leaves_its_input_alone():
    """Without autograd a chunked stack reuses its own buffer after the first stage; the caller's tensor stays
    unless handed over (in_place, as encode and decode do with their own tokens)."""
    model = make("vq")
    with torch.no_grad():
        for stack in (model.encoder, model.decoder):
            stack.peg.conv.weight.normal_(0, 0.2)
            x = torch.randn(2, 4, 3, 5, model.config.dim)
            before = x.clone()
            out = stack(x, max_tokens=12)
            assert torch.equal(x, before)
            torch.testing.assert_close(out, stack(x), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(stack(x.clone(), max_tokens=12, in_place=True), out)  # handed over: same result


def test_nearest_code_in_slices_equals_one_argmax():
    head = make("vq").head
    z = torch.nn.functional.normalize(torch.randn(3, 37, head.codebook.shape[1]), dim=-1)
    expected = (z @ head.codes().T).argmax(-1)
    assert torch.equal(head.nearest(z, max_scores=head.codebook.shape[0] * 5), expected)  # slices of 5 rows
    assert torch.equal(head.nearest(z, max_scores=1), expected)  # one row at a time
    close = torch.nn.functional.normalize(head.codes()[:2].mean(0, keepdim=True), dim=-1)  # equidistant from 2 codes
    z = torch.nn.functional.normalize(torch.cat([z.flatten(0, 1), close + 1e-3 * head.codes()[1:2]]), dim=-1)
    expected = (z @ head.codes().T).argmax(-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the search stays in fp32 under autocast
        assert torch.equal(head.nearest(z), expected)


def test_vq_codes_and_decode_indices():
    model = make("vq")
    x = video(t=5)
    with torch.no_grad():
        enc = model.encode(x)
        assert enc.indices.dtype == torch.long and enc.indices.shape == enc.latents[:, 0].shape
        torch.testing.assert_close(enc.latents.norm(dim=1), torch.ones_like(enc.latents[:, 0]))
        torch.testing.assert_close(model.decode_indices(enc.indices).sample, model.decode(enc.latents).sample)
        assert 0 < enc.stats["codebook_usage"] <= 1 and enc.stats["perplexity"] >= 1


def test_kl_encode_is_deterministic_and_decode_takes_its_output():
    model = make("kl")
    x = video(t=5)
    with torch.no_grad():
        a, b = model.encode(x), model.encode(x)
        torch.testing.assert_close(a.latents, b.latents)
        torch.testing.assert_close(a.latents, a.latent_dist.mode())
        s1, s2 = a.latent_dist.sample(), a.latent_dist.sample()
        assert not torch.equal(s1, s2) and s1.shape == a.latents.shape
        assert model.decode(a.latents).sample.shape == x.shape
        assert torch.all(a.latent_dist.logvar >= model.config.logvar_min)


def test_from_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        OmniTokenizer.from_pretrained(tmp_path)
    make().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["dim"] = 32
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="its weights cannot be loaded into the model its config.json describes"):
        OmniTokenizer.from_pretrained(tmp_path)
    cfg["wings"] = 2
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unknown OmniTokenizerConfig field\(s\) \['wings'\]"):
        OmniTokenizer.from_pretrained(tmp_path)
    del cfg["wings"]
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "dim": 64, "causal": "yes"}))
    with pytest.raises(ValueError, match="causal: expected true or false"):
        OmniTokenizer.from_pretrained(tmp_path)
    # a tensor missing from the weights: diffusers would leave it unset (on the meta device) with a warning
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "dim": 64}))
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    del state["post_head.bias"]
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model.safetensors: does not match config.json "
                                         r"\(\{'missing_keys': \['post_head.bias'\]\}\)"):
        OmniTokenizer.from_pretrained(tmp_path)


def test_a_folder_of_the_earlier_format_is_refused_with_what_to_do(tmp_path):
    model = make()
    values = {k: v for k, v in model.config.items() if not k.startswith("_")}
    (tmp_path / "config.json").write_text(json.dumps({"class": "OmniTokenizer", **values}))
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"config.json: written by an earlier version of the project .* train it "
                                         r"again \(python -m tokenizer.train\)"):
        OmniTokenizer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "DiT", "in_channels": 8}))
    with pytest.raises(ValueError, match="holds a 'DiT', not an OmniTokenizer"):
        OmniTokenizer.from_pretrained(tmp_path)


def test_ablation_switches_are_real_code_paths():
    plain = make(encoder_spatial="gg", decoder_spatial="gg")
    window = make()
    assert not any("rel_bias" in n for n, _ in plain.named_parameters())
    assert any("rel_bias" in n for n, _ in window.named_parameters())
    x = video(b=1, t=1, h=32, w=32)
    with torch.no_grad():
        assert not torch.allclose(plain.encode(x).latents, window.encode(x).latents)


def test_paper_preset_parameter_counts():
    model = OmniTokenizer.from_scale("paper")
    # SPEC: encoder ~26.8 M, decoder ~26.9 M; within 10 %
    assert abs(model.num_parameters("encoder") / 26.8e6 - 1) < 0.1
    assert abs(model.num_parameters("decoder") / 26.9e6 - 1) < 0.1
    assert model.config.dim == 512 and model.config.codebook_size == 8192 and model.config.window_size == 8


def test_cpu_attention_matches_sdpa_with_bias_and_single_key_shortcut():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 6, 8) for _ in range(3))
    bias = alibi_bias(4, 6, causal=True, device="cpu")
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(attend(q, k, v, bias), ref, atol=1e-5, rtol=1e-5)
    attn = Attention(16, 4)
    x = torch.randn(5, 1, 16)  # one key: the shortcut must equal full attention
    q1, k1, v1 = attn.qkv(x).view(5, 1, 3, 4, 4).permute(2, 0, 3, 1, 4)
    full = attn.proj(torch.nn.functional.scaled_dot_product_attention(q1, k1, v1).transpose(1, 2).reshape(5, 1, 16))
    torch.testing.assert_close(attn(x, bias=alibi_bias(4, 1, True, "cpu")), full, atol=1e-6, rtol=1e-6)


def test_patch_embedding_keeps_absolute_brightness():
    model = make("kl")
    levels = [model.encode(torch.full((1, 3, 16, 16), v)).latents for v in (-0.9, -0.5, 0.5)]
    assert not torch.allclose(levels[0], levels[1], atol=1e-4) and not torch.allclose(levels[1], levels[2], atol=1e-4)


class _TokenizerTester(ModelTesterMixin):
    quantizer = "vq"

    def make_model(self):
        return make(self.quantizer)

    def make_inputs(self):
        return {"x": video(t=5, h=24, w=20, seed=3)}

    def loss(self, model, out):
        x_hat, enc = out
        return (x_hat - self.make_inputs()["x"]).pow(2).mean() + enc.loss

    def prepare(self, model):
        if self.quantizer == "vq":
            model.train()
            model(video(t=5))  # initialises the codebook from data


class TestVQTokenizer(_TokenizerTester):
    def test_codebook_is_not_reinitialised_after_loading(self, tmp_path):
        model = make("vq", dead_code_steps=0)  # no restarts: the codebook must stay exactly as loaded
        self.prepare(model)
        loaded = OmniTokenizer.from_pretrained(model.save_pretrained(tmp_path / "ckpt"))
        assert bool(loaded.head.initialized)
        before = loaded.head.codebook.detach().clone()
        loaded.train()
        loaded(video(t=5, seed=3))  # must not re-initialise after loading
        assert torch.equal(loaded.head.codebook, before)


class TestKLTokenizer(_TokenizerTester):
    quantizer = "kl"


def test_dead_code_restarts_bring_unused_codes_back_into_use():
    """with restarts, a codebook initialised badly (every code on one point) spreads over the
    data within a few steps; without, it stays collapsed. Eval mode never restarts."""
    from tokenizer.quantizers import VectorQuantizer

    usage = {}
    for steps in (0, 2):
        torch.manual_seed(0)
        vq = VectorQuantizer(16, 4, 64, 1.0, 1.0, dead_code_steps=steps).train()
        vq.initialized.fill_(True)
        with torch.no_grad():
            vq.codebook.copy_(F.normalize(torch.ones(64, 4), dim=-1))
        h = torch.randn(512, 16)
        for _ in range(6):
            out = vq(h)
        usage[steps] = out.stats["codebook_usage"].item()
        if steps:
            before = vq.codebook.detach().clone()
            vq.eval()(h)
            assert torch.equal(vq.codebook, before) and "codes_restarted" not in vq.eval()(h).stats
    assert usage[0] < 0.1 and usage[2] > 0.5, usage
    vq = VectorQuantizer(16, 4, 64, 1.0, 1.0, dead_code_steps=1).train()
    vq(torch.randn(32, 16))
    vq(torch.full((32, 16), float("nan")))  # a non-finite batch (the trainer skips it) must not poison the codebook
    assert torch.isfinite(vq.codebook).all()
    assert "code_age" in VectorQuantizer(16, 4, 8, 1.0, 1.0, dead_code_steps=2).state_dict()
    assert "code_age" not in VectorQuantizer(16, 4, 8, 1.0, 1.0).state_dict()  # older checkpoints load unchanged
