"""diffusion_generation/ end to end at the tiny scale: latents extracted with a (random) tiny KL tokenizer, the
measured scale, training (loss falls, EMA, exact resume), the pipeline object and the sample folders."""
import json
from pathlib import Path

import decord
import pytest
import torch
from PIL import Image

from diffusion_generation import extract_latents, sample
from diffusion_generation.config import experiment_config
from diffusion_generation.latents import LatentSet, posterior_moments, shard_posteriors
from diffusion_generation.pipeline import LatentDiffusionPipeline
from diffusion_generation.train import train
from shared.data import EmbeddedPhotos, SampleKey
from shared.extraction import ExtractionError
from shared.media import read_sample
from shared.training.checkpoint import load_checkpoint
from tokenizer import OmniTokenizer


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion")
    torch.manual_seed(0)
    OmniTokenizer.from_scale("tiny", quantizer="kl").save_pretrained(root / "vae")
    extract_latents.main(["--scale", "tiny", "--experiment", "dit", "--tokenizer", str(root / "vae"),
                          "--out", str(root / "image_latents")])
    extract_latents.main(["--scale", "tiny", "--experiment", "latte", "--tokenizer", str(root / "vae"),
                          "--out", str(root / "video_latents"), "--set", "data.items=4"])
    return root


def test_extraction_stores_posteriors_of_original_and_flip(work):
    data = LatentSet(work / "image_latents")
    manifest = data.manifest
    assert manifest["complete"] and manifest["rows"] == 2 * 16 and len(data) == 32
    s = manifest["settings"]
    assert (s["kind"], s["grid"], s["latent_channels"]) == ("image", [1, 8, 8], 8) and data.latent_shape == (8, 8, 8)
    assert manifest["settings"]["augmentation"] == "original + horizontal flip"
    # rows of a batch: originals first, then their flips; each is the tokenizer's posterior of those pixels
    vae = OmniTokenizer.from_pretrained(work / "vae").eval()
    photos = EmbeddedPhotos("train", 32)
    x = photos[SampleKey(1, 1, 32, 32)]["pixels"][None]  # item 1 of the extraction (seed 0 * 1_000_003 + 1)
    with torch.no_grad():
        post, post_flip = vae.encode(x).latent_dist, vae.encode(x.flip(-1)).latent_dist
    batch = 8  # data.batch_size at tiny
    assert torch.allclose(data.mean[1].float(), post.mean[0, :, 0], atol=2e-3)
    assert torch.allclose(data.mean[batch + 1].float(), post_flip.mean[0, :, 0], atol=2e-3)
    assert torch.allclose(data.logvar[1].float(), post.logvar[0, :, 0], atol=2e-2)
    assert data.labels[1] == data.labels[batch + 1] == photos[SampleKey(1, 1, 32, 32)]["label"]
    videos = LatentSet(work / "video_latents")
    assert videos.latent_shape == (8, 2, 8, 8) and len(videos) == 8  # 5 frames at t = 4


def test_measured_scale_gives_unit_variance_on_its_data(work):
    data = LatentSet(work / "image_latents")
    assert data.scale == pytest.approx(1 / posterior_moments(shard_posteriors(work / "image_latents"))[1])
    # exactly: the variance of scale * (mean + sigma * noise) over the stored rows
    scaled = posterior_moments([(data.mean.load().float() * data.scale, data.logvar.load().float() + 2 * torch.log(
        torch.tensor(data.scale)))])
    assert scaled[1] == pytest.approx(1.0, abs=1e-6)
    # and as training draws them: every row sampled from its own seed
    draws = torch.stack([data[SampleKey(i, 1000 + i, 0, 0)]["latents"] for i in range(len(data)) for _ in range(4)])
    assert draws.std().item() == pytest.approx(1.0, abs=0.03)
    # the same key gives the same sample (resume is exact); the mean at an int index
    assert torch.equal(data[SampleKey(3, 7, 0, 0)]["latents"], data[SampleKey(3, 7, 0, 0)]["latents"])
    assert torch.equal(data[3]["latents"], data.mean[3].float() * data.scale)


def test_a_scale_never_measured_is_named_and_a_rerun_measures_it(work, tmp_path):
    import shutil
    shutil.copytree(work / "image_latents", tmp_path / "latents")
    manifest_path = tmp_path / "latents" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    scale = manifest.pop("latent_scale")  # killed after the last shard, before the scale was written
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="latent scale was never measured"):
        LatentSet(tmp_path / "latents")
    extract_latents.main(["--scale", "tiny", "--experiment", "dit", "--tokenizer", str(work / "vae"),
                          "--out", str(tmp_path / "latents")])
    assert LatentSet(tmp_path / "latents").scale == pytest.approx(scale)


def test_extraction_refuses_another_tokenizer_and_a_vq_one(work, tmp_path):
    torch.manual_seed(1)
    OmniTokenizer.from_scale("tiny", quantizer="kl").save_pretrained(tmp_path / "other")
    with pytest.raises(ExtractionError, match="tokenizer_sha256"):
        extract_latents.main(["--scale", "tiny", "--experiment", "dit", "--tokenizer", str(tmp_path / "other"),
                              "--out", str(work / "image_latents")])
    OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(tmp_path / "vq")
    with pytest.raises(SystemExit, match="a VQ tokenizer; latent extraction needs a KL one"):
        extract_latents.main(["--scale", "tiny", "--experiment", "dit", "--tokenizer", str(tmp_path / "vq"),
                              "--out", str(tmp_path / "x")])


def losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_on_a_tiny_dataset(work, tmp_path):
    cfg = experiment_config("tiny", "dit", ["train.steps=60", "train.log_every=10", "train.validate_every=1000"])
    summary = train(cfg, work / "image_latents", tmp_path / "run")
    curve = losses(tmp_path / "run")
    assert summary["steps"] == 60 and len(curve) == 6
    assert (summary["precision"], summary["precision_reason"]) == ("fp32", "CPU default")  # as every trainer records it
    assert (summary["compile"], summary["compile_reason"], summary["compile_seconds"]) == (False, "forced", 0.0)
    assert curve[-1] < 0.8 * curve[0]  # from ~1 (zero output: MSE of the noise itself)


def test_training_resumes_exactly_after_a_kill(work, tmp_path):
    overrides = ["train.steps=12", "train.checkpoint_every=4", "train.log_every=2", "train.validate_every=12"]
    cfg = experiment_config("tiny", "latte", overrides)
    straight = train(cfg, work / "video_latents", tmp_path / "a")
    killed = train(cfg, work / "video_latents", tmp_path / "b", stop_at=6)  # checkpoint written at 6, then gone
    assert killed["stopped_at"] == 6
    resumed = train(cfg, work / "video_latents", tmp_path / "b")
    assert straight["steps"] == resumed["steps"] == 12
    models_a, opt_a, _ = load_checkpoint(tmp_path / "a" / "checkpoints" / "step_00000012")
    models_b, opt_b, _ = load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000012")
    for name in ("model", "ema"):
        for k in models_a[name]:
            assert torch.equal(models_a[name][k], models_b[name][k]), (name, k)
    assert torch.equal(opt_a["opt"]["state"][0]["exp_avg"], opt_b["opt"]["state"][0]["exp_avg"])
    # the EMA trails the model: decay 0.9 over 12 steps from the initial weights
    k = "final.linear.weight"
    assert not torch.equal(models_a["ema"][k], models_a["model"][k]) and models_a["ema"][k].abs().sum() > 0
    assert [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] == \
        [2, 4, 6, 8, 10, 12]
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    # a finished run, or a killed run's checkpoint, of another configuration is refused
    other = experiment_config("tiny", "latte", overrides + ["train.steps=20", "train.lr=0.01"])
    with pytest.raises(ValueError, match="finished with another configuration .*train.lr: 0.001 -> 0.01"):
        train(other, work / "video_latents", tmp_path / "b")
    train(cfg, work / "video_latents", tmp_path / "c", stop_at=4)
    with pytest.raises(ValueError, match="different configuration"):
        train(other, work / "video_latents", tmp_path / "c")


def test_a_precision_the_machine_chose_is_the_runs_once_chosen(work, tmp_path, monkeypatch, caplog):
    """train.precision: auto resolves by a measurement (replaced here): a run started where bf16 measured 3x fp32
    and resumed where it measures 1x goes on in bf16, says so, records why, and trains the weights of an
    uninterrupted bf16 run; a new run takes this machine's choice."""
    from shared.training import precision

    cfg = experiment_config("tiny", "dit", ["train.steps=4", "train.checkpoint_every=2", "train.validate_every=100",
                                            "train.precision=auto"])
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 3.0)
    straight = train(cfg, work / "image_latents", tmp_path / "a")
    measured = ("bf16", "CPU bf16 matmul measured at 3.0x fp32")
    assert (straight["precision"], straight["precision_reason"]) == measured
    train(cfg, work / "image_latents", tmp_path / "b", stop_at=2)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 1.0)
    with caplog.at_level("WARNING"):
        resumed = train(cfg, work / "image_latents", tmp_path / "b")
    assert (f"resuming in bf16, the precision its checkpoints record ({measured[1]}); this machine alone would choose "
            f"fp32 (CPU bf16 matmul measured at 1.0x fp32)") in caplog.text
    assert (resumed["precision"], resumed["precision_reason"]) == measured
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["precision"] == "bf16"
    a, _, meta = load_checkpoint(tmp_path / "a" / "checkpoints" / "step_00000004")
    b, _, _ = load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000004")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (meta["precision"], meta["precision_reason"]) == measured
    assert train(cfg, work / "image_latents", tmp_path / "c")["precision"] == "fp32"


def test_ema_is_the_running_average_of_the_weights(work, tmp_path):
    cfg = experiment_config("tiny", "dit", ["train.steps=2", "train.checkpoint_every=1", "train.keep_checkpoints=3",
                                            "train.validate_every=100"])
    train(cfg, work / "image_latents", tmp_path / "run", stop_at=2)
    m1, _, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000001")
    m2, _, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000002")
    k = "blocks.0.attn.to_q.weight"
    expected = 0.9 * m1["ema"][k] + 0.1 * m2["model"][k]
    assert torch.allclose(m2["ema"][k], expected, atol=1e-7)


def test_pipeline_round_trip_and_sample_folders(work, tmp_path):
    cfg = experiment_config("tiny", "dit", ["train.steps=4", "train.validate_every=4"])
    summary = train(cfg, work / "image_latents", tmp_path / "run")
    assert (tmp_path / "run" / "validation" / "step_00000004" / "grid.png").is_file()
    pipe = LatentDiffusionPipeline.from_pretrained(summary["final"])
    # the latents' measured scale, kept by the pipeline's VAE as diffusers keeps it; the tokenizer's own is unmeasured
    assert pipe.vae.config.scaling_factor == pytest.approx(LatentSet(work / "image_latents").scale) != 1.0
    assert OmniTokenizer.from_pretrained(work / "vae").config.scaling_factor == 1.0
    assert json.loads((Path(summary["final"]) / "model_index.json").read_text())["transformer"] == \
        ["diffusion_generation.dit", "DiT"]
    a = pipe(labels=[0, 5], guidance_scale=2.0, sampler="ddim", steps=3, seed=0)
    assert a.shape == (2, 3, 1, 32, 32) and a.abs().max() <= 1
    pipe.save_pretrained(tmp_path / "copy")
    b = LatentDiffusionPipeline.from_pretrained(tmp_path / "copy")(labels=[0, 5], guidance_scale=2.0, sampler="ddim",
                                                                   steps=3, seed=0)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 22\)"):
        pipe(labels=[22])
    record = sample.main(["--pipeline", summary["final"], "--out", str(tmp_path / "s"), "--scale", "tiny",
                          "--classes", "2", "--set", "diffusion.sampling_steps=3"])
    assert set(record["folders"]) == {"cfg1", "cfg2"}
    # the first two of the classes with training data (photos held out for validation have none)
    trained = sorted(set(LatentSet(work / "image_latents").labels.tolist()))
    assert pipe.info["trained_classes"] == trained
    files = sorted(str(p.relative_to(tmp_path / "s" / "cfg2")) for p in (tmp_path / "s" / "cfg2").rglob("*.png"))
    assert files == [f"{c:04d}/{i:05d}.png" for c in trained[:2] for i in range(2)]
    assert Image.open(tmp_path / "s" / "cfg2" / files[-1]).size == (32, 32)
    assert Image.open(tmp_path / "s" / "cfg2.png").size == (2 * 32, 2 * 32)  # a row per class
    # run again (as after a kill): nothing is sampled again, the files and the grid stay the same
    first = tmp_path / "s" / "cfg2" / files[0]
    stamp, grid = first.stat().st_mtime_ns, (tmp_path / "s" / "cfg2.png").read_bytes()
    sample.main(["--pipeline", summary["final"], "--out", str(tmp_path / "s"), "--scale", "tiny", "--classes", "2",
                 "--set", "diffusion.sampling_steps=3"])
    assert first.stat().st_mtime_ns == stamp and (tmp_path / "s" / "cfg2.png").read_bytes() == grid
    with pytest.raises(ValueError, match="other settings"):  # another sampler into the same folders
        sample.main(["--pipeline", summary["final"], "--out", str(tmp_path / "s"), "--scale", "tiny",
                     "--set", "diffusion.sampling_steps=3", "--set", "diffusion.sampler=ddim"])


def test_video_samples_are_mp4_that_decord_reads_back_exactly(work, tmp_path):
    cfg = experiment_config("tiny", "latte", ["train.steps=2", "train.validate_every=2"])
    summary = train(cfg, work / "video_latents", tmp_path / "run")
    assert (tmp_path / "run" / "validation" / "step_00000002" / "grid.gif").is_file()
    sample.main(["--pipeline", summary["final"], "--out", str(tmp_path / "s"), "--scale", "tiny", "--classes", "1",
                 "--guidance", "1", "--set", "diffusion.sampling_steps=2"])
    pipe = LatentDiffusionPipeline.from_pretrained(summary["final"])
    first = pipe.info["trained_classes"][0]
    path = tmp_path / "s" / "cfg1" / f"{first:04d}" / "00000.mp4"
    frames = decord.VideoReader(str(path)).get_batch(list(range(5))).asnumpy()
    expected = pipe(labels=[first], guidance_scale=1.0, seed=0, steps=2)  # batch 0 of the folder has seed 0
    assert frames.shape == (5, 32, 32, 3)  # 5-frame clips at tiny
    expected = expected[0].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    assert (frames == expected).all()


def test_unconditional_variant_trains_and_samples_into_class_zero(work, tmp_path):
    cfg = experiment_config("tiny", "dit", ["model.num_classes=0", "train.steps=3", "train.validate_every=3"])
    summary = train(cfg, work / "image_latents", tmp_path / "run")
    pipe = LatentDiffusionPipeline.from_pretrained(summary["final"])
    assert pipe.transformer.condition.label_embed is None and pipe.info["trained_classes"] == []
    with pytest.raises(ValueError, match="unconditional"):
        pipe(labels=[1])
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):  # 0 is 0, not "unset"
        pipe(num_samples=0)
    record = sample.main(["--pipeline", summary["final"], "--out", str(tmp_path / "s"), "--scale", "tiny",
                          "--guidance", "1", "--per-class", "3", "--set", "diffusion.sampling_steps=2"])
    assert record["folders"]["cfg1"]["n"] == 3
    assert sorted(p.name for p in (tmp_path / "s" / "cfg1").iterdir()) == ["0000"]
    assert len(list((tmp_path / "s" / "cfg1" / "0000").glob("*.png"))) == 3


def test_sampling_and_training_settings_that_cannot_work_are_refused(work, tmp_path):
    cfg = experiment_config("tiny", "dit", ["train.steps=1", "train.validate_every=1"])
    pipe = LatentDiffusionPipeline.from_pretrained(train(cfg, work / "image_latents", tmp_path / "run")["final"])
    for kwargs, match in [({"guidance_scale": float("nan")}, "guidance_scale must be a finite"),
                          ({"guidance_scale": float("inf")}, "guidance_scale must be a finite"),
                          ({"steps": 0}, r"sampling steps must be an integer in \[1, "),
                          ({"labels": []}, "non-empty"), ({"labels": [[0, 1]]}, "non-empty list or 1-D"),
                          ({"labels": [0.5]}, "labels must be integers")]:
        with pytest.raises(ValueError, match=match):
            pipe(**{"labels": [0], "sampler": "ddim", "steps": 2, **kwargs})
    pipe.transformer.register_to_config(class_dropout_prob=0.0)  # trained without a null class: guidance is refused
    with pytest.raises(ValueError, match="no null class to guide against"):
        pipe(labels=[0], sampler="ddim", steps=2, guidance_scale=2.0)
    for override, match in [("diffusion.sampling_steps=0", "sampling_steps must be >= 1"),
                            ("sample.guidance_scales=[.nan]", "finite"),
                            ("train.steps=0", "steps must be >= 1"), ("sample.per_class=0", "per_class must be >= 1"),
                            ("sample.classes=0", "classes must be >= 1"),
                            ("model.class_dropout_prob=1.5", r"class_dropout_prob must be in \[0, 1\)"),
                            ("model.num_heads=3", "must split into num_heads 3 equal heads"),
                            ("diffusion.beta_end=5", "0 < beta_start < beta_end < 1, got beta_start 0.0001, beta_end 5"),
                            ("diffusion.beta_start=0", "0 < beta_start < beta_end < 1, got beta_start 0.0,"),
                            ("diffusion.beta_start=0.03", "0 < beta_start < beta_end < 1, got beta_start 0.03,"),
                            ("diffusion.beta_end=.nan", "beta_end: expected a finite number")]:
        with pytest.raises(ValueError, match=match):
            experiment_config("tiny", "dit", [override])


def test_a_finished_run_is_reused_only_for_the_same_latents_and_the_vae_must_be_theirs(work, tmp_path):
    import shutil

    from diffusion_generation import train as train_cli

    latents = tmp_path / "latents"
    shutil.copytree(work / "image_latents", latents)
    args = ["--scale", "tiny", "--experiment", "dit", "--latents", str(latents), "--out", str(tmp_path / "run"),
            "--set", "train.steps=1", "--set", "train.validate_every=1"]
    train_cli.main(args)
    # the same folder spelled otherwise is the same latents: reused
    assert train_cli.main([*args[:5], str(latents) + "/", *args[6:]])["steps"] == 1
    # re-extracted with another VAE into the same folder: not reused
    torch.manual_seed(1)
    OmniTokenizer.from_scale("tiny", quantizer="kl").save_pretrained(tmp_path / "vae2")
    extract_latents.main(["--scale", "tiny", "--experiment", "dit", "--tokenizer", str(tmp_path / "vae2"),
                          "--out", str(latents), "--restart"])
    with pytest.raises(ValueError, match=r"finished with another configuration or other data .*latents.tokenizer_sha256"):
        train_cli.main(args)
    # a VAE (or VQ model) that did not make the latents is refused as the pipeline's decoder
    OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(tmp_path / "vq")
    for other in (work / "vae", tmp_path / "vq"):
        with pytest.raises(ValueError, match="not the weights the data was made with"):
            train_cli.main([*args, "--restart", "--tokenizer", str(other)])


def test_resume_accepts_changes_that_do_not_touch_the_weights(work, tmp_path):
    base = ["train.steps=4", "train.checkpoint_every=2", "train.validate_every=100"]
    train(experiment_config("tiny", "dit", base), work / "image_latents", tmp_path / "run", stop_at=2)
    other = base[:1] + ["train.checkpoint_every=1", "train.validate_every=50", "sample.per_class=3",
                        "diffusion.sampling_steps=7", "sample.guidance_scales=[3.0]", "train.log_every=1"]
    assert train(experiment_config("tiny", "dit", other), work / "image_latents", tmp_path / "run")["steps"] == 4
    train(experiment_config("tiny", "dit", base + ["train.lr=0.5"]), work / "image_latents", tmp_path / "run2",
          stop_at=2)
    with pytest.raises(ValueError, match="different configuration"):  # the learning rate does touch them
        train(experiment_config("tiny", "dit", base), work / "image_latents", tmp_path / "run2")


def test_a_pipeline_of_an_earlier_version_is_refused_with_how_to_make_it_again(tmp_path):
    for part in ("model", "vae"):
        (tmp_path / part).mkdir()
    (tmp_path / "pipeline.json").write_text(json.dumps({"diffusion": {}, "latent_scale": 0.5}))
    with pytest.raises(ValueError, match=r"pipeline.json: written by an earlier version of the project \(a "
                                         r"pipeline.json beside model/ and vae/\).* train it again"):
        LatentDiffusionPipeline.from_pretrained(tmp_path)


def test_sample_folders_are_never_mixed_across_models_or_settings(work, tmp_path):
    cfg = experiment_config("tiny", "dit", ["train.steps=2", "train.validate_every=100"])
    final = train(cfg, work / "image_latents", tmp_path / "run")["final"]
    args = ["--pipeline", final, "--out", str(tmp_path / "s"), "--scale", "tiny", "--classes", "1",
            "--per-class", "2", "--set", "diffusion.sampling_steps=2"]
    # killed after its first batch: the settings are already recorded, so a rerun with other steps is refused
    from shared import sample_folders

    sample_cli = sample
    real = sample_folders.write_sample
    calls = []

    def killed(x, path):
        calls.append(path)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(x, path)

    sample_folders.write_sample = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            sample_cli.main(args)
    finally:
        sample_folders.write_sample = real
    assert json.loads((tmp_path / "s" / "samples.json").read_text())["sampling"]["sampling_steps"] == 2
    with pytest.raises(ValueError, match="other settings .*sampling_steps"):
        sample_cli.main(args[:-1] + ["diffusion.sampling_steps=3"])
    stale = next((tmp_path / "s" / "cfg1").iterdir()) / ".00001.png.abc.tmp"
    stale.write_bytes(b"half a png")  # what the kill left mid-write
    sample_cli.main(args)  # the same settings resume
    assert not stale.exists()
    with pytest.raises(ValueError, match="other settings .*precision"):  # bf16 samples never join fp32 ones
        sample_cli.main(args + ["--precision", "bf16"])
    bf16 = sample_cli.main([*args[:3], str(tmp_path / "s16"), *args[4:], "--precision", "bf16"])
    assert bf16["precision"] == "bf16" and json.loads((tmp_path / "s" / "samples.json").read_text())["precision"] == "fp32"
    a, b = (read_sample(next((tmp_path / d / "cfg1").iterdir()) / "00000.png") for d in ("s", "s16"))
    assert a.shape == b.shape and 0 < (a - b).abs().mean() < 0.1  # the same draw, in another precision
    # the same run folder retrained with another lr (as --restart does): other weights, refused by their hash
    import shutil

    shutil.rmtree(tmp_path / "run")
    train(experiment_config("tiny", "dit", ["train.steps=2", "train.validate_every=100", "train.lr=0.01"]),
          work / "image_latents", tmp_path / "run")
    with pytest.raises(ValueError, match="other settings .*model_sha256"):
        sample_cli.main(args)
    for flag in ("--per-class", "--classes"):
        with pytest.raises(SystemExit, match=f"{flag} must be >= 1"):
            sample_cli.main(args + [flag, "0"])


def test_a_corrupt_pipeline_record_is_named(work, tmp_path):
    import shutil

    cfg = experiment_config("tiny", "dit", ["train.steps=1", "train.validate_every=100"])
    final = Path(train(cfg, work / "image_latents", tmp_path / "run")["final"])
    record = json.loads((final / "model_index.json").read_text())
    # a noise schedule that is no diffusion had sampled all-black (NaN) images with rc 0; a DiT given clip latents
    # had failed deep in a convolution
    for text, match in (('{"diffusion": {', "model_index.json: this pipeline record is not valid JSON"),
                        (json.dumps({**record, "latent_shape": [4, 8, 8]}), r"latent_shape must be .* 8 channels"),
                        (json.dumps({**record, "latent_shape": "8x8"}), "latent_shape must be"),
                        (json.dumps({**record, "latent_shape": [8, 1, 8, 8]}),
                         r"model_index.json: .*latent_shape must be \[C, h, w\] for its DiT .* got \[8, 1, 8, 8\]"),
                        (json.dumps({**record, "diffusion": {**record["diffusion"], "beta_end": 5}}),
                         r"model_index.json: .*beta_start and beta_end must satisfy 0 < beta_start < beta_end < 1"),
                        (json.dumps({k: v for k, v in record.items() if k != "vae_sha256"}), "no vae_sha256")):
        (final / "model_index.json").write_text(text)
        with pytest.raises(ValueError, match=match):
            LatentDiffusionPipeline.from_pretrained(final)
    shutil.rmtree(tmp_path / "run")


@pytest.mark.slow
def test_two_process_dit_training_equals_one_process_of_the_same_global_batch(work, tmp_path):
    """docs/diffusion_generation.md's `accelerate launch` of the DiT trainer, on two CPU processes (gloo): both ranks finish, only the
    main one writes, and the weights are those of one process with the doubled batch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    repo = Path(__file__).resolve().parent.parent
    overrides = ["train.steps=3", "train.checkpoint_every=3", "train.validate_every=100", "model.class_dropout_prob=0.0"]
    code = ("from diffusion_generation.config import experiment_config; from diffusion_generation.train import train; "
            "train(experiment_config('tiny', 'dit', %r), %r, %r)") % (overrides + ["train.batch_size=4"],
                                                                     str(work / "image_latents"), str(tmp_path / "ddp"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo), "ACCELERATE_USE_CPU": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29521",
           "-m", "tests.ddp_entry", code]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train(experiment_config("tiny", "dit", overrides + ["train.batch_size=8"]), work / "image_latents",
                   tmp_path / "one")
    two = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert (two["processes"], single["processes"]) == (2, 1)
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["step_00000003"]
    a = load_file(tmp_path / "ddp" / "checkpoints" / "step_00000003" / "model.safetensors")
    b = load_file(tmp_path / "one" / "checkpoints" / "step_00000003" / "model.safetensors")
    for key in b:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4)
