"""The KL tokenizer where diffusers code expects an AutoencoderKL: its encode / decode outputs, config.scaling_factor,
diffusers' own helpers and a diffusers pipeline driving it."""
import torch
from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

from tokenizer import OmniTokenizer


def vae(scaling_factor=0.5):
    torch.manual_seed(0)
    return OmniTokenizer.from_scale("tiny", quantizer="kl", scaling_factor=scaling_factor).eval()


def test_diffusers_retrieve_latents_and_the_autoencoder_kl_idiom():
    model = vae()
    x = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        enc = model.encode(x)
        drawn = retrieve_latents(model.encode(x), torch.Generator().manual_seed(3))  # sample_mode "sample"
        torch.testing.assert_close(drawn, enc.latent_dist.sample(torch.Generator().manual_seed(3)))
        assert not torch.equal(drawn, enc.latents)
        mode = retrieve_latents(model.encode(x), sample_mode="argmax")
        torch.testing.assert_close(mode, enc.latents)
        z = model.encode(x).latent_dist.mode() * model.config.scaling_factor  # what a pipeline trains on
        pixels = model.decode(z / model.config.scaling_factor).sample
        torch.testing.assert_close(pixels, model.decode(enc.latents).sample)
        (posterior,) = model.encode(x, return_dict=False)
        (same,) = model.decode(enc.latents, return_dict=False)
    assert posterior.mean.shape == enc.latents.shape and torch.equal(same, pixels)


def test_a_diffusers_dit_pipeline_decodes_through_our_vae_and_saves_it_as_a_component(tmp_path):
    model = vae(scaling_factor=0.25)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=8, out_channels=16,
                                        num_layers=1, sample_size=4, patch_size=2, num_embeds_ada_norm=1000).eval()
    pipe = DiTPipeline(transformer=transformer, vae=model, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    steps, decoded = [], []
    step = pipe.scheduler.step
    pipe.scheduler.step = lambda *a, **k: steps.append(step(*a, **k)) or steps[-1]
    decode = model.decode
    model.decode = lambda z, *a, **k: decoded.append(z) or decode(z, *a, **k)
    images = pipe(class_labels=[1, 2], num_inference_steps=2, guidance_scale=1.0, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    final = steps[-1].prev_sample  # (2, 8, 4, 4): image latents as the transformer makes them
    torch.testing.assert_close(decoded[0], final / 0.25)  # divided by the VAE's own config.scaling_factor
    with torch.no_grad():
        expected = (decode(final / 0.25).sample / 2 + 0.5).clamp(0, 1)
    assert images.shape == (2, 3, 16, 16)
    torch.testing.assert_close(images, expected)
    del model.decode
    pipe.save_pretrained(tmp_path / "dit")  # model_index.json names our class as the `vae` component
    again = DiTPipeline.from_pretrained(tmp_path / "dit")
    assert isinstance(again.vae, OmniTokenizer) and again.vae.config.scaling_factor == 0.25
    for a, b in zip(again.vae.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
