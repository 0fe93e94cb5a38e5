"""The model card (README.md) in every saved tokenizer folder."""
import types
from pathlib import Path

import torch

from shared.provenance import file_sha256
from tokenizer import OmniTokenizer
from tokenizer.train import run

from .test_training import STAGE


def test_a_saved_folder_explains_itself_and_still_loads(tmp_path):
    model = OmniTokenizer.from_scale("tiny", quantizer="kl")
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


def test_an_upload_carries_our_card_not_diffusers(tmp_path, monkeypatch):
    """push_to_hub and save_pretrained(push_to_hub=True) upload the folder with our card as its README.md (diffusers'
    own would write its generic card over it); the hub is stood in for."""
    uploads = []
    monkeypatch.setattr("tokenizer.model.create_repo",
                        lambda repo_id, **kw: types.SimpleNamespace(repo_id=f"me/{repo_id}"))
    monkeypatch.setattr(OmniTokenizer, "_upload_folder", lambda self, folder, repo_id, **kw: uploads.append(
        (repo_id, sorted(p.name for p in Path(folder).iterdir()), (Path(folder) / "README.md").read_text(), kw)))
    model = OmniTokenizer.from_scale("tiny")
    source = {"file": "release.ckpt", "sha256": "ab" * 32}
    model.push_to_hub("tok", commit_message="weights", card={"source": source})
    model.save_pretrained(tmp_path / "saved", push_to_hub=True, card={"source": source}, token="t")
    (repo_a, files_a, card_a, kw_a), (repo_b, files_b, card_b, kw_b) = uploads
    assert (repo_a, repo_b) == ("me/tok", "me/saved") and kw_a["commit_message"] == "weights" and kw_b["token"] == "t"
    assert files_a == files_b == ["README.md", "config.json", "diffusion_pytorch_model.safetensors"]
    for card in (card_a, card_b):
        assert "# OmniTokenizer-VQVAE" in card and f"`release.ckpt` (sha256 `{source['sha256']}`)" in card
    assert (tmp_path / "saved" / "README.md").read_text() == card_b
