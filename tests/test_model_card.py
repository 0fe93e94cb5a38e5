"""The model card (README.md) in every saved tokenizer folder."""
import torch

from shared.provenance import file_sha256
from tokenizer import OmniTokenizer
from tokenizer.train import run

from .test_training import STAGE


def test_a_saved_folder_explains_itself_and_still_loads(tmp_path):
    model = OmniTokenizer.from_config("tiny", quantizer="kl")
    model.save_pretrained(tmp_path / "saved")
    card = (tmp_path / "saved" / "README.md").read_text()
    c = model.config
    assert "# OmniTokenizer-VAE" in card and "- vae" in card
    assert f"spatial blocks `{c.encoder_spatial}`" in card and f"a diagonal Gaussian of {c.latent_dim} channels" in card
    assert f"encoder {model.num_parameters('encoder') / 1e6:.1f} M" in card
    assert "Not recorded" in card and "latent scale: not measured" in card and "causal across frames" in card
    loaded = OmniTokenizer.from_pretrained(tmp_path / "saved")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    # the card carries the time it was written; the folder's hash (vae_sha256, tokenizer_sha256) leaves it out
    before = file_sha256(tmp_path / "saved")
    (tmp_path / "saved" / "README.md").write_text("another card")
    assert file_sha256(tmp_path / "saved") == before
    loaded.head.proj.bias.data += 1
    loaded.save_pretrained(tmp_path / "saved")
    assert file_sha256(tmp_path / "saved") != before


def test_a_trained_stage_card_gives_its_data_steps_and_held_out_figures_beside_the_baselines(tmp_path):
    report = run("tiny", tmp_path, stages=[dict(STAGE, steps=2, pattern="i")],
                 loss={"perceptual_weight": 0.0, "gan_weight": 0.0})
    card = (tmp_path / "image" / "final" / "README.md").read_text()
    image = report["stages"]["image"]["validation"]["image"]
    assert "# OmniTokenizer-VQVAE" in card and "stage `image`: 2 steps, from scratch" in card
    assert "images: the project's embedded photos; resolutions 32" in card and "videos" not in card.split("## Held")[0].split("## Training")[1]
    assert f"| image | {image['items']} ({image['frames']}) | this tokenizer | {image['psnr']:.2f} | {image['ssim']:.3f} | " \
           f"{image['block_edge']:.2f} |" in card
    same_bits = image["bicubic"]["same_bits"]
    assert f"as many bits as the codes (factor {same_bits['factor']:g}) | {same_bits['psnr']:.2f}" in card
    assert f"{image['codebook_usage']:.1%} of codes used" in card
