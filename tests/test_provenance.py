"""Provenance across the chain pipeline -> samples folder: the files a pipeline save writes get the umask's mode, a
pipeline's VAE is the one it was saved with, and a samples folder records (and never mixes) every part of the
pipeline that drew it."""
import json
import re
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
    return OmniTokenizer.from_scale("tiny", quantizer=quantizer)


def dit_pipeline(vae=None):
    cfg = experiment_config("tiny", "dit")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    return LatentDiffusionPipeline(vae or tokenizer("kl", 0), model, cfg.diffusion, [8, 4, 4])


def latte_pipeline():
    cfg = experiment_config("tiny", "latte")
    torch.manual_seed(0)
    return LatentDiffusionPipeline(tokenizer("kl", 0), build_model(cfg.model), cfg.diffusion, [8, 2, 4, 4])


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
        assert {f"{kind}/transformer/diffusion_pytorch_model.safetensors", f"{kind}/transformer/config.json",
                f"{kind}/vae/diffusion_pytorch_model.safetensors", f"{kind}/vae/config.json",
                f"{kind}/model_index.json"} <= set(files)
    for kind in ("lm", "lm_copied"):
        assert {f"{kind}/model.safetensors", f"{kind}/config.json", f"{kind}/generation_config.json",
                f"{kind}/tokenizer/diffusion_pytorch_model.safetensors", f"{kind}/tokenizer/config.json"} <= set(files)
    assert {name: mode for name, mode in files.items() if mode != 0o666 & ~mask} == {}


def test_a_vae_other_than_the_one_saved_is_refused(tmp_path):
    """Another KL tokenizer, or a VQ one, copied into vae/ had sampled with rc 0."""
    dit_pipeline().save_pretrained(tmp_path / "p")
    assert len(json.loads((tmp_path / "p" / "model_index.json").read_text())["vae_sha256"]) == 64
    pipe = LatentDiffusionPipeline.from_pretrained(tmp_path / "p", "cpu")
    assert set(pipe.provenance) == {"model_sha256", "vae_sha256"}
    for quantizer in ("kl", "vq"):
        tokenizer(quantizer, 1).save_pretrained(tmp_path / "p" / "vae")
        with pytest.raises(ValueError, match=r"p/vae: sha256 .* recorded in .*model_index.json: .* Put back the vae/"):
            LatentDiffusionPipeline.from_pretrained(tmp_path / "p", "cpu")
    # a VQ tokenizer is no VAE, whatever the record says
    record = json.loads((tmp_path / "p" / "model_index.json").read_text())
    (tmp_path / "p" / "model_index.json").write_text(json.dumps({**record, "vae_sha256": file_sha256(tmp_path / "p" / "vae")}))
    with pytest.raises(ValueError, match=r"p/model_index.json: the pipeline's VAE: a VQ tokenizer; the pipeline's VAE "
                                         r"must be the KL tokenizer"):
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


# ----------------------------------------------------------------------------- the whole chain, one swap at a time

TINY_CODES = ["--scale", "tiny", "--set", "data.embedded_images=4", "--set", "data.resolution=16"]
TINY_LATENTS = ["--scale", "tiny", "--experiment", "dit", "--set", "data.items=4"]
TINY_DIT = ["--scale", "tiny", "--experiment", "dit", "--set", "train.steps=3", "--set", "train.validate_every=3",
            "--set", "train.batch_size=4"]
LM_SAMPLING = ["--scale", "tiny", "--classes", "2", "--per-class", "1", "--guidance", "1", "--guidance", "2"]
DIT_SAMPLING = [*LM_SAMPLING, "--set", "diffusion.sampling_steps=2"]


def lm_train_args(codes, out):
    return ["--codes", str(codes), "--out", str(out), "--scale", "tiny", "--set", "train.steps=3"]


def dit_train_args(latents, out):
    return [*TINY_DIT, "--latents", str(latents), "--out", str(out)]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """tokenizers -> codes / latents -> an LM and a DiT trained 3 steps -> their samples -> an evaluation of them;
    and, to swap in, a second tokenizer of each kind with the codes / latents it makes."""
    from diffusion_generation import extract_latents, train as dit_train
    from eval import sample_metrics
    from lm_generation import extract_codes, train as lm_train

    root = tmp_path_factory.mktemp("chain")
    for seed, suffix in ((0, ""), (1, "2")):
        tokenizer("vq", seed).save_pretrained(root / f"vq{suffix}")
        tokenizer("kl", seed).save_pretrained(root / f"kl{suffix}")
        extract_codes.main(["--tokenizer", str(root / f"vq{suffix}"), "--images", "embedded",
                            "--out", str(root / f"codes{suffix}"), *TINY_CODES])
        extract_latents.main([*TINY_LATENTS, "--tokenizer", str(root / f"kl{suffix}"),
                              "--out", str(root / f"latents{suffix}")])
    lm_train.main(lm_train_args(root / "codes", root / "lm"))
    dit_train.main(dit_train_args(root / "latents", root / "dit"))
    lm_sample.main(["--pipeline", str(root / "lm" / "final"), "--out", str(root / "lm" / "samples"), *LM_SAMPLING])
    diffusion_sample.main(["--pipeline", str(root / "dit" / "final"), "--out", str(root / "dit" / "samples"),
                           *DIT_SAMPLING])
    sample_metrics.main(["--kind", "image", "--record", str(root / "lm" / "samples"), "--reference", "embedded",
                         "--resolution", "16", "--feature-cache", "", "--allow-random-features", "--scale", "tiny",
                         "--out", str(root / "lm" / "eval")])
    return root


def moved(chain, tmp_path):
    """A copy of the chain, its records pointing into the copy (as a moved runs/ folder's would)."""
    import shutil

    copy = tmp_path / "chain"
    shutil.copytree(chain, copy)
    for record in copy.rglob("*.json"):
        text = record.read_text()
        if str(chain) in text:
            record.write_text(text.replace(str(chain), str(copy)))
    return copy


def replace(target, source):
    """`target` (a file or a save_pretrained folder) swapped for `source`, another valid one of its kind."""
    import shutil

    if target.is_dir():
        shutil.rmtree(target)
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)


@pytest.mark.slow
def test_chain_a_tokenizer_replaced_after_extraction_is_refused_by_training(chain, tmp_path):
    from diffusion_generation import train as dit_train
    from lm_generation import train as lm_train

    c = moved(chain, tmp_path)
    replace(c / "vq", c / "vq2")
    with pytest.raises(ValueError, match=r"chain/vq: sha256 .* recorded in .*codes/manifest.json: these are not the "
                                         r"weights the data was made with"):
        lm_train.main(lm_train_args(c / "codes", c / "lm_new"))
    replace(c / "kl", c / "kl2")
    with pytest.raises(ValueError, match=r"chain/kl: sha256 .* recorded in .*latents/manifest.json: these are not the "
                                         r"weights the data was made with"):
        dit_train.main(dit_train_args(c / "latents", c / "dit_new"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["codes", "latents"])
def test_chain_a_shard_of_another_extraction_is_refused_by_training(chain, tmp_path, kind):
    from diffusion_generation import train as dit_train
    from lm_generation import train as lm_train

    c = moved(chain, tmp_path)
    replace(c / kind / "shard_00000.safetensors", c / f"{kind}2" / "shard_00000.safetensors")
    pattern = rf"{kind}/shard_00000.safetensors: sha256 .* not the one .*{kind}/manifest.json records"
    with pytest.raises(ValueError, match=pattern):
        if kind == "codes":
            lm_train.main(lm_train_args(c / "codes", c / "lm_new"))
        else:
            dit_train.main(dit_train_args(c / "latents", c / "dit_new"))
    with pytest.raises(ValueError, match=pattern):  # nor is the finished run on them reused
        if kind == "codes":
            lm_train.main(lm_train_args(c / "codes", c / "lm"))
        else:
            dit_train.main(dit_train_args(c / "latents", c / "dit"))


def other_weights(kind, final, folder):
    """The weights file of another model of the shape of the one in `final`, saved into `folder`."""
    torch.manual_seed(7)
    if kind == "lm":
        layout = ARPipeline.from_pretrained(final).layout
        build_lm(lm_config("tiny").model, layout).save_pretrained(folder)
        return folder / "model.safetensors"
    build_model(experiment_config("tiny", "dit").model).save_pretrained(folder)
    return folder / "diffusion_pytorch_model.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lm", "dit"])
def test_chain_other_model_weights_are_refused_by_the_sampler_and_the_finished_run(chain, tmp_path, kind):
    from diffusion_generation import train as dit_train
    from lm_generation import train as lm_train

    c = moved(chain, tmp_path)
    weights = c / kind / "final" / ("model.safetensors" if kind == "lm" else "transformer/diffusion_pytorch_model.safetensors")
    replace(weights, other_weights(kind, c / kind / "final", tmp_path / "other"))
    sampler, args = (lm_sample, LM_SAMPLING) if kind == "lm" else (diffusion_sample, DIT_SAMPLING)
    with pytest.raises(ValueError, match=r"samples.json: .*other settings .*model_sha256"):
        sampler.main(["--pipeline", str(c / kind / "final"), "--out", str(c / kind / "samples"), *args])
    with pytest.raises(ValueError, match=rf"{kind}/final: not the files this run wrote .*put them back, or pass "
                                         r"--restart"):
        if kind == "lm":
            lm_train.main(lm_train_args(c / "codes", c / "lm"))
        else:
            dit_train.main(dit_train_args(c / "latents", c / "dit"))


@pytest.mark.slow
def test_chain_another_vae_or_tokenizer_in_a_pipeline_is_refused_by_the_sampler(chain, tmp_path):
    c = moved(chain, tmp_path)
    replace(c / "dit" / "final" / "vae", c / "kl2")
    with pytest.raises(ValueError, match=r"final/vae: sha256 .* recorded in .*model_index.json: .* Put back the vae/"):
        diffusion_sample.main(["--pipeline", str(c / "dit" / "final"), "--out", str(c / "dit" / "samples"),
                               *DIT_SAMPLING])
    replace(c / "lm" / "final" / "tokenizer", c / "vq2")
    with pytest.raises(ValueError, match=r"final/tokenizer: sha256 .* recorded in .*config.json: .* Put back the "
                                         r"tokenizer/"):
        lm_sample.main(["--pipeline", str(c / "lm" / "final"), "--out", str(c / "lm" / "samples"), *LM_SAMPLING])


@pytest.mark.slow
def test_chain_a_sample_file_swapped_for_another_is_refused_by_every_evaluation(chain, tmp_path, capsys):
    from eval import class_consistency, novelty, sample_metrics

    c = moved(chain, tmp_path)
    samples = c / "lm" / "samples"
    first, second = sorted((samples / "cfg1").rglob("*.png"))[:2]
    replace(first, second)
    named = rf"{first.relative_to(c)}: changed since it was sampled"
    with pytest.raises(SystemExit):
        class_consistency.main(["--kind", "image", "--scale", "tiny", "--record", str(samples),
                                "--cache", str(tmp_path / "judge"), "--out", str(tmp_path / "c.json")])
    assert re.search(named, capsys.readouterr().err)
    with pytest.raises(SystemExit):
        sample_metrics.main(["--kind", "image", "--record", str(samples), "--reference", "embedded",
                             "--feature-cache", "", "--allow-random-features", "--out", str(tmp_path / "m")])
    assert re.search(named, capsys.readouterr().err)
    with pytest.raises((SystemExit, ValueError)) as refused:
        novelty.main(["--record", str(samples), "--run", str(c / "lm"), "--scale", "tiny",
                      "--cache", str(tmp_path / "judge"), "--out", str(tmp_path / "n.json")])
    assert re.search(named, str(refused.value) + capsys.readouterr().err)
    assert not any(tmp_path.glob("*.json")) and not (tmp_path / "m").exists()


@pytest.mark.slow
def test_every_file_a_tiny_run_writes_follows_the_umask(tmp_path):
    """A tokenizer stage, code extraction, LM training with a checkpoint and a validation grid, sampling and an
    evaluation result, under umask 027: every file 0640 and every folder 0750, whichever library wrote it."""
    from eval import sample_metrics
    from lm_generation import extract_codes, train as lm_train
    from tokenizer.train import run

    mask = 0o027
    old = os.umask(mask)
    try:
        stage = dict(name="image", quantizer="vq", steps=2, pattern="i", resolutions=[32], batch_size_image=2,
                     batch_size_video=1, warmup_steps=1, lr=1e-3)
        run("tiny", tmp_path / "tok", stages=[stage], checkpoint_every=1, results=tmp_path / "tok_results.json",
            loss={"perceptual_weight": 0.0})
        extract_codes.main(["--tokenizer", str(tmp_path / "tok" / "image" / "final"), "--images", "embedded",
                            "--out", str(tmp_path / "codes"), *TINY_CODES])
        lm_train.main([*lm_train_args(tmp_path / "codes", tmp_path / "lm"), "--set", "train.checkpoint_every=2",
                       "--set", "train.validate_every=2"])
        lm_sample.main(["--pipeline", str(tmp_path / "lm" / "final"), "--out", str(tmp_path / "lm" / "samples"),
                        *LM_SAMPLING])
        sample_metrics.main(["--kind", "image", "--record", str(tmp_path / "lm" / "samples"), "--reference",
                             "embedded", "--resolution", "16", "--feature-cache", str(tmp_path / "features"),
                             "--allow-random-features", "--scale", "tiny", "--out", str(tmp_path / "lm" / "eval")])
    finally:
        os.umask(old)
    written = list(tmp_path.rglob("*"))
    kinds = {p.suffix for p in written if p.is_file()}
    assert {".safetensors", ".json", ".jsonl", ".png", ".gif", ".pt"} <= kinds, kinds  # every writer's files are looked at
    assert any("tfevents" in p.name for p in written), "no tensorboard file was written"
    assert list((tmp_path / "lm" / "checkpoints").iterdir()) and list((tmp_path / "tok" / "image" / "checkpoints").iterdir())
    wrong = {p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in written
             if stat.S_IMODE(p.stat().st_mode) != (0o777 if p.is_dir() else 0o666) & ~mask}
    assert wrong == {}
