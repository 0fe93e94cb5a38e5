"""Provenance across the chain pipeline -> samples folder: the files a pipeline save writes get the umask's mode, a
pipeline's VAE is the one it was saved with, and a samples folder records (and never mixes) every part of the
pipeline that drew it."""
import json
import os
import stat

import pytest
import torch

from diffusion_generation import sample as diffusion_sample
from diffusion_generation.config import experiment_config
from diffusion_generation.models import build_model
from diffusion_generation.pipeline import LatentDiffusionPipeline
from lm_generation import sample as lm_sample
from lm_generation.config import lm_config
from lm_generation.model import CodeLayout, build_lm
from lm_generation.pipeline import ARPipeline
from shared.provenance import file_sha256
from tokenizer import OmniTokenizer

SAMPLING = ["--scale", "tiny", "--classes", "1", "--per-class", "1", "--set", "diffusion.sampling_steps=2"]


def tokenizer(quantizer, seed):
    torch.manual_seed(seed)
    return OmniTokenizer.from_config("tiny", quantizer=quantizer)


def dit_pipeline(vae=None):
    cfg = experiment_config("tiny", "dit")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    return LatentDiffusionPipeline(vae or tokenizer("kl", 0), model, cfg.diffusion, (8, 4, 4), 1.0)


def latte_pipeline():
    cfg = experiment_config("tiny", "latte")
    torch.manual_seed(0)
    return LatentDiffusionPipeline(tokenizer("kl", 0), build_model(cfg.model), cfg.diffusion, (8, 2, 4, 4), 1.0)


def lm_pipeline():
    tok = tokenizer("vq", 0)
    layout = CodeLayout(codebook_size=tok.config.codebook_size, num_classes=2, grid=(1, 2, 2), size=(1, 8, 8))
    return ARPipeline(build_lm(lm_config("tiny").model, layout), tok)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_every_file_a_pipeline_save_writes_follows_the_umask(tmp_path, mask):
    """transformers' and diffusers' save_pretrained (through safetensors) had left the final weights 0600."""
    old = os.umask(mask)
    try:
        dit_pipeline().save_pretrained(tmp_path / "dit")
        latte_pipeline().save_pretrained(tmp_path / "latte")
        lm = lm_pipeline()
        lm.save_pretrained(tmp_path / "lm")
        lm.tokenizer.save_pretrained(tmp_path / "tok")
        lm.save_pretrained(tmp_path / "lm_copied", tmp_path / "tok")  # the trainer's way: tokenizer/ copied
    finally:
        os.umask(old)
    files = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in tmp_path.rglob("*") if p.is_file()}
    for kind in ("dit", "latte"):
        assert {f"{kind}/model/diffusion_pytorch_model.safetensors", f"{kind}/model/config.json",
                f"{kind}/vae/model.safetensors", f"{kind}/vae/config.json", f"{kind}/pipeline.json"} <= set(files)
    for kind in ("lm", "lm_copied"):
        assert {f"{kind}/model.safetensors", f"{kind}/config.json", f"{kind}/generation_config.json",
                f"{kind}/tokenizer/model.safetensors", f"{kind}/tokenizer/config.json"} <= set(files)
    assert {name: mode for name, mode in files.items() if mode != 0o666 & ~mask} == {}


def test_a_vae_other_than_the_one_saved_is_refused(tmp_path):
    """Another KL tokenizer, or a VQ one, copied into vae/ had sampled with rc 0."""
    dit_pipeline().save_pretrained(tmp_path / "p")
    assert len(json.loads((tmp_path / "p" / "pipeline.json").read_text())["vae_sha256"]) == 64
    pipe = LatentDiffusionPipeline.from_pretrained(tmp_path / "p", "cpu")
    assert set(pipe.provenance) == {"model_sha256", "vae_sha256"}
    for quantizer in ("kl", "vq"):
        tokenizer(quantizer, 1).save_pretrained(tmp_path / "p" / "vae")
        with pytest.raises(ValueError, match=r"p/vae: sha256 .* recorded in .*pipeline.json: .* Put back the vae/"):
            LatentDiffusionPipeline.from_pretrained(tmp_path / "p", "cpu")
    # a VQ tokenizer is no VAE, whatever the record says
    record = json.loads((tmp_path / "p" / "pipeline.json").read_text())
    (tmp_path / "p" / "pipeline.json").write_text(json.dumps({**record, "vae_sha256": file_sha256(tmp_path / "p" / "vae")}))
    with pytest.raises(ValueError, match=r"p/vae: a VQ tokenizer; the pipeline's VAE must be the KL tokenizer"):
        LatentDiffusionPipeline.from_pretrained(tmp_path / "p", "cpu")
    with pytest.raises(ValueError, match="a VQ tokenizer"):
        dit_pipeline(tokenizer("vq", 0))


def test_one_samples_folder_never_holds_two_vaes_or_tokenizers(tmp_path):
    """model_sha256 had hashed model/ alone: guidance 1 decoded by one VAE and guidance 2 by another shared a folder."""
    pipe = dit_pipeline()
    pipe.save_pretrained(tmp_path / "p")
    args = ["--pipeline", str(tmp_path / "p"), "--out", str(tmp_path / "s"), *SAMPLING]
    first = diffusion_sample.main(args + ["--guidance", "1"])
    assert first["vae_sha256"] == LatentDiffusionPipeline.from_pretrained(tmp_path / "p", "cpu").provenance["vae_sha256"]
    assert first["scale"] == "tiny" and len(first["model_sha256"]) == 64
    pipe.vae = tokenizer("kl", 1)  # the same denoiser saved again with another VAE
    pipe.save_pretrained(tmp_path / "p")
    with pytest.raises(ValueError, match=r"other settings .*vae_sha256"):
        diffusion_sample.main(args + ["--guidance", "2"])
    # the LM's tokenizer likewise
    lm = lm_pipeline()
    lm.save_pretrained(tmp_path / "lm")
    lm_args = ["--pipeline", str(tmp_path / "lm"), "--out", str(tmp_path / "ls"), "--scale", "tiny", "--classes", "1"]
    assert len(lm_sample.main(lm_args + ["--guidance", "1"])["tokenizer_sha256"]) == 64
    lm.tokenizer = tokenizer("vq", 1)
    lm.save_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match=r"other settings .*tokenizer_sha256"):
        lm_sample.main(lm_args + ["--guidance", "2"])


def test_sampling_settings_of_another_model_or_count_are_refused(tmp_path):
    dit_pipeline().save_pretrained(tmp_path / "p")
    with pytest.raises(SystemExit, match=r"--experiment latte: .*p holds a dit model"):
        diffusion_sample.main(["--pipeline", str(tmp_path / "p"), "--out", str(tmp_path / "s"), *SAMPLING,
                               "--experiment", "latte"])
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=r"file: is a file where a folder is needed; choose another --out"):
        diffusion_sample.main(["--pipeline", str(tmp_path / "p"), "--out", str(tmp_path / "file"), *SAMPLING])
    pipe = LatentDiffusionPipeline.from_pretrained(tmp_path / "p", "cpu")
    with pytest.raises(ValueError, match="num_samples 0 with 2 labels"):
        pipe(labels=[0, 1], num_samples=0, steps=2)
    assert pipe(labels=[0, 1], num_samples=2, steps=2).shape[0] == 2
    for size in [(0, 0), (3, 4), (4,), (4.0, 4)]:
        with pytest.raises(ValueError, match="latent_size must be .h, w.: two positive integers divisible by the "
                                             "patch size 2"):
            pipe(labels=[0], steps=2, latent_size=size)
    assert pipe(labels=[0], steps=2, latent_size=(2, 6)).shape[-2:] == (8, 24)  # 4 pixels a latent at tiny


def test_a_result_path_that_is_a_folder_or_under_a_file_is_named(tmp_path):
    from shared.atomic import atomic_write_json

    (tmp_path / "taken").write_text("")
    with pytest.raises(NotADirectoryError, match=r"taken: is a file where a folder is needed; choose another --out"):
        atomic_write_json(tmp_path / "taken" / "r.json", {})
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError, match=r"dir: is a folder; give a file path"):
        atomic_write_json(tmp_path / "dir", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "taken"] and not list((tmp_path / "dir").iterdir())
