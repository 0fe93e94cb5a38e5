"""Tokenizer training at the tiny preset: stages, exact resume, transfer, losses, DDP."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tokenizer import OmniTokenizer
from tokenizer.discriminators import PatchGAN
from shared.metrics.lpips import PerceptualLoss
from tokenizer.losses import hinge_d_loss
from tokenizer.train import run
from tokenizer.train_config import tokenizer_config, train_config
from tokenizer.transfer import transfer_weights
from shared.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
STAGE = dict(name="image", quantizer="vq", steps=6, pattern="iv", resolutions=[32], batch_size_image=2,
             batch_size_video=1, warmup_steps=1, lr=1e-3)


@pytest.mark.slow
def test_full_schedule_writes_models_pictures_metrics_and_results(tmp_path):
    report = run("tiny", tmp_path / "run", results=tmp_path / "results.json")
    assert list(report["stages"]) == ["image", "joint", "kl"]
    for stage in ("image", "joint", "kl"):
        d = tmp_path / "run" / stage
        shown = d / "validation" / f"step_{report['stages'][stage]['steps']:08d}"
        assert (d / "final" / "diffusion_pytorch_model.safetensors").is_file() and (shown / "images.png").is_file()
        assert (shown / "video_0.gif").is_file()
        lines = (d / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == report["stages"][stage]["steps"]
        val = report["stages"][stage]["validation"]
        assert set(val) == {"image", "video"} and 5 < val["video"]["psnr"] < 60
    assert "inflated tube embedding and output from t=2 to t=4" in report["stages"]["joint"]["init_notes"]
    assert OmniTokenizer.from_pretrained(tmp_path / "run" / "kl" / "final").config.quantizer == "kl"
    assert "RANDOM-INIT vgg16-imagenet" in report["stages"]["image"]["perceptual_network"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["stages"]["kl"]["validation"]["image"]["psnr"] == report["stages"]["kl"]["validation"]["image"]["psnr"]
    again = run("tiny", tmp_path / "run")  # finished stages are reused, not retrained
    assert again["stages"]["kl"]["wall_seconds"] == report["stages"]["kl"]["wall_seconds"]
    assert again["stages"]["image"]["wall_seconds"] == report["stages"]["image"]["wall_seconds"]
    # a stage whose record lacks a field (written by an earlier version) is another configuration: refused
    summary_file = tmp_path / "run" / "image" / "summary.json"
    summary = json.loads(summary_file.read_text())
    del summary["config"]["edge_lr_scale"]
    summary_file.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match=r"image: finished with a different configuration of stage 'image' "
                                         r"\(edge_lr_scale: '<absent>' -> 1\.0\); pass --restart"):
        run("tiny", tmp_path / "run")


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path):
    # edge_lr_scale: two optimizer groups, whose lrs and Adam states must come back too
    kw = dict(stages=[dict(STAGE, edge_lr_scale=10.0, loss={"disc_start": 2})], checkpoint_every=2, keep_checkpoints=5)
    run("tiny", tmp_path / "a", **kw)
    stopped = run("tiny", tmp_path / "b", stop_at=3, **kw)
    assert stopped["image"] == {"stage": "image", "stopped_at": 3}
    assert not (tmp_path / "b" / "image" / "final").exists()
    run("tiny", tmp_path / "b", **kw)
    a = load_file(str(tmp_path / "a" / "image" / "final" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "image" / "final" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = lambda d: [json.loads(ln)["step"] for ln in (d / "image" / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(tmp_path / "b") == rows(tmp_path / "a") == list(range(1, STAGE["steps"] + 1))  # no step twice
    with pytest.raises(ValueError, match="written with a different configuration of stage 'image'"):
        run("tiny", tmp_path / "c", stop_at=2, **kw)
        run("tiny", tmp_path / "c", **{**kw, "stages": [dict(STAGE, lr=5e-4, loss={"disc_start": 2})]})
    with pytest.raises(ValueError, match="finished with a different configuration of stage 'image'"):
        run("tiny", tmp_path / "a", **{**kw, "stages": [dict(STAGE, steps=STAGE["steps"] + 1, loss={"disc_start": 2})]})
    last = lambda d: sorted((d / "image" / "checkpoints").iterdir())[-1]  # noqa: E731
    _, optimizers, _ = load_checkpoint(last(tmp_path / "b"))
    assert [g.get("lr_scale") for g in optimizers["opt_g"]["param_groups"]] == [None, 10.0]  # the edges' own group
    da, db = load_file(str(last(tmp_path / "a") / "disc3d.safetensors")), load_file(str(last(tmp_path / "b") / "disc3d.safetensors"))
    assert all(torch.equal(da[k], db[k]) for k in da)


def test_edge_layers_take_edge_lr_scale_times_the_step():
    """One Adam step moves every weight by about its lr (m / sqrt(v) = +-1 at step 1): the layers that meet pixels or
    latents move 10x as far as the transformer's under edge_lr_scale=10, and as far as them under 1."""
    from shared.training import set_lr

    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    moved = {}
    for scale in (1.0, 10.0):
        torch.manual_seed(0)
        model = OmniTokenizer.from_scale("tiny", quantizer="kl")
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = torch.optim.Adam(model.parameter_groups(scale), lr=1.0)
        set_lr(opt, 1e-4)
        x_hat, enc = model(x, sample_posterior=False)
        ((x_hat - x) ** 2).mean().backward()
        opt.step()
        moved[scale] = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    model = OmniTokenizer.from_scale("tiny")
    grouped = [id(p) for g in model.parameter_groups(10.0) for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # every parameter, once
    for name in ("embed_first.proj.weight", "embed_rest.proj.weight", "head.proj.weight", "post_head.weight",
                 "out_first.weight", "out_rest.weight"):
        assert moved[1.0][name] == pytest.approx(1e-4, rel=0.05)
        assert moved[10.0][name] == pytest.approx(1e-3, rel=0.05)
    block = next(n for n in moved[1.0] if n.startswith("encoder.") and n.endswith("qkv.weight"))
    assert moved[10.0][block] == pytest.approx(moved[1.0][block], rel=0.05) == pytest.approx(1e-4, rel=0.05)
    with pytest.raises(ValueError, match="edge_lr_scale must be > 0"):
        OmniTokenizer.from_scale("tiny").parameter_groups(0.0)


def test_reconstruction_loss_goes_down(tmp_path):
    stage = dict(STAGE, steps=60, pattern="i", batch_size_image=4, warmup_steps=5, lr=2e-3, loss={"gan_weight": 0.0})
    run("tiny", tmp_path, stages=[stage], log_every=1, checkpoint_every=100,
        loss={"perceptual_weight": 0.0})
    recon = [json.loads(ln)["recon"] for ln in (tmp_path / "image" / "metrics.jsonl").read_text().splitlines()]
    assert sum(recon[-10:]) / 10 < 0.6 * sum(recon[:10]) / 10


def test_fine_tuning_starts_from_the_given_weights_their_codebook_and_records_them(tmp_path, monkeypatch):
    """--init: the first step's loss is the source model's own loss on that batch (a fresh model's, or one whose
    codebook were initialised again from data, is not), the source's sha256 is recorded, and a stage finished from
    other weights is not reused."""
    import shutil

    from shared.provenance import file_sha256
    from tokenizer.losses import TokenizerLoss

    kw = dict(stages=[dict(STAGE, steps=2, pattern="i")], loss={"perceptual_weight": 0.0, "gan_weight": 0.0})
    run("tiny", tmp_path / "source", **kw)
    source = tmp_path / "source" / "image" / "final"
    batches, forward = [], OmniTokenizer.forward
    monkeypatch.setattr(OmniTokenizer, "forward", lambda self, x, *a, **k: batches.append(x.clone()) or forward(self, x, *a, **k))
    report = run("tiny", tmp_path / "tuned", init=source, **kw)
    run("tiny", tmp_path / "fresh", **kw)
    monkeypatch.undo()
    first_loss = lambda run_dir: json.loads((run_dir / "image" / "metrics.jsonl").read_text().splitlines()[0])["loss"]  # noqa: E731
    stage = train_config("tiny", **kw).stages[0]
    model = OmniTokenizer.from_pretrained(source).train()
    x_hat, enc = model(batches[0])
    loss, _ = TokenizerLoss(train_config("tiny", **kw).stage_loss(stage))(batches[0], x_hat, enc)
    assert first_loss(tmp_path / "tuned") == pytest.approx(loss.item(), rel=1e-5)
    assert torch.equal(batches[0], batches[2]) and first_loss(tmp_path / "fresh") != pytest.approx(loss.item(), rel=1e-2)
    assert report["init"] == {"weights": str(source.resolve()), "sha256": file_sha256(source)}
    assert report["stages"]["image"]["config"]["init_sha256"] == file_sha256(source)
    assert report["stages"]["image"]["init_notes"] == [f"copied {len(model.state_dict())} tensors"]
    shutil.rmtree(source)  # other weights in the same folder
    shutil.copytree(tmp_path / "tuned" / "image" / "final", source)
    with pytest.raises(ValueError, match=r"finished with a different configuration of stage 'image' \(init_sha256: "):
        run("tiny", tmp_path / "tuned", init=source, **kw)
    with pytest.raises(FileNotFoundError, match=r"missing: --init takes a save_pretrained folder .* or a public "
                                                r"release checkpoint \(.ckpt\)"):
        run("tiny", tmp_path / "other", init=tmp_path / "missing", **kw)


def test_fine_tuning_from_a_release_checkpoint_converts_it_and_records_the_file(tmp_path):
    """--init with the public release's .ckpt (the release tests' synthetic file): the run converts it as
    tokenizer.convert_release does, trains the release-compatible model from every one of its tensors, and records
    the file's sha256; a .ckpt that is not one is refused by name before any training."""
    from shared.provenance import file_sha256
    from tokenizer.config import model_config
    from tokenizer.convert_release import ReleaseCheckpointError

    from .test_release_weights import release_args, release_state, write

    kw = dict(stages=[dict(STAGE, steps=2, pattern="i")], loss={"perceptual_weight": 0.0, "gan_weight": 0.0})
    ckpt = write(tmp_path, release_state(), release_args())
    report = run("tiny", tmp_path / "tuned", init=ckpt, **kw)
    release = OmniTokenizer.from_release(ckpt)
    assert report["init"] == {"weights": str(ckpt.resolve()), "sha256": file_sha256(ckpt)}
    assert report["stages"]["image"]["config"]["init_sha256"] == file_sha256(ckpt)
    assert report["stages"]["image"]["init_notes"] == [f"copied {len(release.state_dict())} tensors"]
    tuned = OmniTokenizer.from_pretrained(tmp_path / "tuned" / "image" / "final")
    assert tuned.config.release_compatible and model_config(tuned.config) == model_config(release.config)
    assert not torch.equal(tuned.out_first.weight, release.out_first.weight)  # trained from there
    assert f"started from `{ckpt.resolve()}`" in (tmp_path / "tuned" / "image" / "final" / "README.md").read_text()
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(ReleaseCheckpointError, match=r"empty.ckpt: not a PyTorch checkpoint"):
        run("tiny", tmp_path / "other", init=tmp_path / "empty.ckpt", **kw)
    assert not (tmp_path / "other" / "image").exists()


def test_non_finite_losses_stop_the_run_with_a_checkpoint(tmp_path):
    stage = dict(STAGE, steps=30, pattern="i", lr=1e12, warmup_steps=1, grad_clip=0.0)
    with pytest.raises(RuntimeError, match="non-finite losses in a row"):
        run("tiny", tmp_path, stages=[stage], max_nonfinite_in_row=2, checkpoint_every=100,
            loss={"perceptual_weight": 0.0, "gan_weight": 0.0})
    assert any((tmp_path / "image" / "checkpoints").glob("step_*/model.safetensors"))


def test_tube_inflation_keeps_the_function_on_repeated_frames():
    torch.manual_seed(0)
    old = OmniTokenizer.from_scale("tiny", temporal_patch_size=2).eval()
    new = OmniTokenizer.from_scale("tiny", temporal_patch_size=4).eval()
    notes = transfer_weights(old, new)
    assert any("inflated" in n for n in notes)
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1  # 1 + 2 tubes of 2 frames
    x4 = torch.cat([x[:, :, :1], x[:, :, 1:].repeat_interleave(2, dim=2)], 2)  # 1 + 2 tubes of 4 frames
    with torch.no_grad():
        z_old, z_new = old.encode(x), new.encode(x4)
        assert torch.equal(z_old.indices, z_new.indices)
        y_old, y_new = old.decode(z_old.latents).sample, new.decode(z_new.latents).sample
    torch.testing.assert_close(y_new, torch.cat([y_old[:, :, :1], y_old[:, :, 1:].repeat_interleave(2, dim=2)], 2),
                               atol=1e-5, rtol=1e-5)


def test_a_codebook_of_another_size_starts_from_data_not_from_random_codes():
    src = OmniTokenizer.from_scale("tiny", codebook_size=64)
    src.train()(torch.rand(2, 3, 1, 16, 16) * 2 - 1)  # the first training batch initialises the codebook
    assert bool(src.head.initialized)
    same, wider = OmniTokenizer.from_scale("tiny", codebook_size=64), OmniTokenizer.from_scale("tiny", codebook_size=128)
    transfer_weights(src, same)
    assert bool(same.head.initialized) and torch.equal(same.head.codebook, src.head.codebook)
    notes = transfer_weights(src, wider)
    assert not bool(wider.head.initialized) and any("128 codes initialised from data" in n for n in notes)
    x = torch.rand(4, 3, 1, 16, 16) * 2 - 1
    wider.train()(x)  # so its first batch picks the codes
    assert bool(wider.head.initialized)


def test_vq_to_kl_transfer_starts_at_the_vq_projection():
    vq = OmniTokenizer.from_scale("tiny", quantizer="vq").eval()
    kl = OmniTokenizer.from_scale("tiny", quantizer="kl").eval()
    transfer_weights(vq, kl)
    c = kl.config.latent_dim
    assert torch.equal(kl.head.proj.weight[:c], vq.head.proj.weight) and torch.equal(kl.head.proj.bias[:c], vq.head.proj.bias)
    assert torch.equal(kl.decoder.temporal[0].attn.qkv.weight, vq.decoder.temporal[0].attn.qkv.weight)
    with torch.no_grad():
        post = kl.encode(torch.rand(1, 3, 5, 16, 16) * 2 - 1).latent_dist
    assert post.std.max() < 0.01  # starts nearly deterministic
    back = OmniTokenizer.from_scale("tiny", quantizer="vq")
    transfer_weights(kl, back)  # KL -> VQ (Table 10's other order): the codebook will start from data
    assert torch.equal(back.head.proj.weight, vq.head.proj.weight) and not bool(back.head.initialized)


def test_widening_the_gaussian_latent_keeps_the_function():
    torch.manual_seed(0)
    kl8 = OmniTokenizer.from_scale("tiny", quantizer="kl").eval()
    kl16 = OmniTokenizer.from_scale("tiny", quantizer="kl", latent_dim=2 * kl8.config.latent_dim).eval()
    notes = transfer_weights(kl8, kl16)
    assert any("widened" in n for n in notes) and not any("fresh" in n for n in notes)
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        z8, z16 = kl8.encode(x), kl16.encode(x)
        c = kl8.config.latent_dim
        torch.testing.assert_close(z16.latents[:, :c], z8.latents)
        assert z16.latents[:, c:].abs().sum() > 0  # the new channels carry something the decoder can learn to read
        torch.testing.assert_close(kl16.decode(z16.latents).sample, kl8.decode(z8.latents).sample)
        torch.testing.assert_close(z16.latent_dist.std[:, :c], z8.latent_dist.std)  # the old channels' logvar kept
        assert z16.latent_dist.std[:, c:].max() < 0.01  # new channels start nearly deterministic
    vq = OmniTokenizer.from_scale("tiny", quantizer="vq").eval()
    notes = transfer_weights(vq, kl16)  # VQ -> wider KL: the mean's first channels start at the VQ projection
    assert not any("fresh" in n for n in notes)
    w, b = kl16.head.proj.weight, kl16.head.proj.bias
    assert torch.equal(w[:c], vq.head.proj.weight) and torch.equal(b[:c], vq.head.proj.bias)
    assert not w[2 * c :].any() and bool((b[2 * c :] == -10).all())  # every logvar row: weights 0, bias -10
    assert not kl16.post_head.weight[:, c:].any()


@pytest.mark.slow  # full-size Inception / VGG16 networks
def test_perceptual_weight_sources(tmp_path):
    from torchvision.models import vgg16

    with pytest.raises(RuntimeError, match=r"vgg16-imagenet: no weights .*loss.allow_random_perceptual: true"):
        PerceptualLoss(weights=None, allow_random=False)
    with pytest.raises(FileNotFoundError, match="nowhere.pth: vgg16-imagenet weights not found"):
        PerceptualLoss(weights=str(tmp_path / "nowhere.pth"))
    torch.manual_seed(5)
    state = vgg16(weights=None).state_dict()
    torch.save(state, tmp_path / "vgg16.pth")
    loss = PerceptualLoss(weights=str(tmp_path / "vgg16.pth"))
    assert loss.source == f"vgg16-imagenet from {tmp_path / 'vgg16.pth'}"
    assert torch.equal(getattr(loss.lpips.net.slice3, "10").weight, state["features.10.weight"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6) and loss(x, -x).item() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_discriminators_take_images_and_17_frame_clips():
    d2, d3 = PatchGAN(2, 8, 3), PatchGAN(3, 8, 3)
    logits2, feats2 = d2(torch.randn(2, 3, 64, 64))
    logits3, feats3 = d3(torch.randn(2, 3, 17, 64, 64))
    assert logits2.shape[0] == 2 and logits3.dim() == 5 and logits3.shape[2] >= 1 and len(feats3) == 4
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"tiny.yaml train stage x: unknown StageConfig field\(s\) \['stepz'\]"):
        train_config("tiny", stages=[{"name": "x", "stepz": 3}])
    cfg = tokenizer_config("tiny", ["model.causal=false", "train.stage_defaults.lr=0.5"])  # --set, checked and typed
    assert cfg.model.causal is False and {s.lr for s in cfg.train.stages} == {0.001, 0.0005}  # stages state lr
    assert tokenizer_config("tiny", ["train.stage_defaults.grad_clip=0.5"]).train.stages[0].grad_clip == 0.5
    with pytest.raises(ValueError, match="tiny.yaml model: causal: expected true or false, got 'false'"):
        tokenizer_config("tiny", ['model.causal="false"'])
    saved = OmniTokenizer.from_scale("tiny").save_pretrained(tmp_path / "saved")
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "dim": "64"}))
    with pytest.raises(ValueError, match="config.json: dim: expected an integer, got '64'"):
        OmniTokenizer.from_pretrained(saved)
    with pytest.raises(FileNotFoundError, match="nope.yaml: no such config"):
        train_config("nope")
    with pytest.raises(ValueError, match=r"1 \+ k\*4 frames"):
        run("tiny", tmp_path, stages=[dict(STAGE)], data={"num_frames": 6})


@pytest.mark.slow
def test_two_process_ddp_keeps_weights_identical_and_skips_a_non_finite_step_on_every_rank(tmp_path):
    """Rank 1's loss is NaN at step 1: both ranks skip that step before any backward (DDP's reducers, with unused
    parameters searched, see no backward on either rank), and the run goes on with identical weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true"}
    code = ("import json, os; from tokenizer.losses import TokenizerLoss; from tokenizer.train import run\n"
            "real, calls = TokenizerLoss.forward, []\n"
            "def forward(self, x, x_hat, enc, gan=False, discriminator=False):\n"
            "    loss, terms = real(self, x, x_hat, enc, gan, discriminator)\n"
            "    calls.extend([] if discriminator else [1])  # the generator's loss: once a step\n"
            "    bad = len(calls) == 2 and not discriminator and os.environ['RANK'] == '1'  # step 1\n"
            "    return (loss * float('nan') if bad else loss), terms\n"
            "TokenizerLoss.forward = forward\n"
            "r = run('tiny', %r, stages=[%r])\n"
            "print('CHECKSUMS', json.dumps(r['stages']['image']['rank_weight_checksums']))") % (
        str(tmp_path / "ddp"), dict(STAGE, steps=3, loss={"disc_start": 1}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "tests.ddp_entry", code]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("CHECKSUMS")][0]
    sums = json.loads(line.split(" ", 1)[1])
    assert len(sums) == 2 and sums[0] == sums[1]
    summary = json.loads((tmp_path / "ddp" / "image" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["nonfinite_skipped"] == 1


def test_stage_model_overrides_build_the_ablation_models(tmp_path):
    stage = dict(STAGE, steps=1, pattern="i", model={"causal": False, "encoder_spatial": "gg"})
    run("tiny", tmp_path, stages=[stage], loss={"perceptual_weight": 0.0, "gan_weight": 0.0})
    cfg = OmniTokenizer.from_pretrained(tmp_path / "image" / "final").config
    assert cfg.causal is False and cfg.encoder_spatial == "gg" and cfg.decoder_spatial == "wg"
    with pytest.raises(ValueError, match=r"unknown OmniTokenizerConfig field\(s\) \['wings'\]"):
        run("tiny", tmp_path / "bad", stages=[dict(STAGE, model={"wings": 2})])


def test_a_variant_starts_from_the_stage_of_the_run_beside_it(tmp_path):
    """init_from "<run>/<stage>": the model of that run's stage in the folder beside the variant's own run folder."""
    quick = dict(STAGE, steps=1, pattern="i")
    settings = dict(loss={"perceptual_weight": 0.0, "gan_weight": 0.0},
                    variants={"joint_from_image": [dict(quick, name="joint", init_from="tokenizer/image")]})
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'tokenizer' / 'image' / 'final'}: stage 'joint'"):
        run("tiny", tmp_path / "tokenizer_joint_from_image", variant="joint_from_image", **settings)
    run("tiny", tmp_path / "tokenizer", stages=[quick], **settings)
    report = run("tiny", tmp_path / "tokenizer_joint_from_image", variant="joint_from_image", **settings)
    assert report["stages"]["joint"]["config"]["init_from"] == str(tmp_path / "tokenizer" / "image" / "final")


def test_training_reads_imagenet_and_ucf101_folders(tmp_path, imagenet_dir, ucf_dir):
    stage = dict(STAGE, steps=2, loss={"gan_weight": 0.0})
    report = run("tiny", tmp_path, stages=[stage],
                 data={"images": str(imagenet_dir), "videos": str(ucf_dir), "val_images": 100, "val_videos": 100},
                 loss={"perceptual_weight": 0.0})
    val = report["stages"]["image"]["validation"]
    assert val["image"]["items"] == 10 and val["video"]["items"] == 2  # the val split and testlist01
    assert report["data"] == {"images": str(imagenet_dir), "videos": str(ucf_dir)}
    # the same run on other data is neither reused nor resumed
    with pytest.raises(ValueError, match=r"finished with a different configuration .*data.images: '.*' -> 'embedded'"):
        run("tiny", tmp_path, stages=[stage], data={"videos": str(ucf_dir)}, loss={"perceptual_weight": 0.0})
    run("tiny", tmp_path / "half", stages=[stage], stop_at=1, data={"images": str(imagenet_dir)},
        loss={"perceptual_weight": 0.0})
    with pytest.raises(ValueError, match=r"written with a different configuration .*data.images: '.*' -> 'embedded'"):
        run("tiny", tmp_path / "half", stages=[stage], loss={"perceptual_weight": 0.0})


def test_a_corrupt_file_in_training_data_is_skipped_and_reported(tmp_path, imagenet_dir):
    import shutil

    images = tmp_path / "imagenet"
    shutil.copytree(imagenet_dir, images)
    (images / "train" / "n01_cat" / "zz_broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    stage = dict(STAGE, pattern="i", steps=3, batch_size_image=4, loss={"gan_weight": 0.0})  # 12 items: one epoch
    report = run("tiny", tmp_path / "run", stages=[stage], data={"images": str(images), "videos": ""},
                 loss={"perceptual_weight": 0.0})
    summary = report["stages"]["image"]
    assert summary["unreadable_skipped"] == 1 and "zz_broken.JPEG: cannot decode image" in summary["unreadable_first"][0]


def test_motion_loss_sees_frames_that_stand_still_and_only_clips_pay_it():
    from tokenizer.losses import TokenizerLoss, motion_loss
    from tokenizer.train_config import LossConfig

    x = torch.zeros(1, 3, 4, 2, 2)
    x[:, :, 1:] = 0.5  # one step of 0.5 between frames 0 and 1
    assert motion_loss(x + 0.2, x).item() == pytest.approx(0.0, abs=1e-7)  # a brightness shift moves nothing
    still = x[:, :, :1].expand_as(x)
    assert motion_loss(still, x).item() == pytest.approx(0.5 / 3)  # 3 frame steps, one missed by 0.5
    loss_fn = TokenizerLoss(LossConfig(perceptual_weight=0.0, gan_weight=0.0, motion_weight=2.0))
    enc = type("Enc", (), {"indices": None, "loss": torch.tensor(0.0)})()
    loss, terms = loss_fn(x, still, enc)
    assert terms["motion"].item() == pytest.approx(0.5 / 3)
    assert loss.item() == pytest.approx(terms["recon"].item() + 2 * 0.5 / 3)
    _, image_terms = loss_fn(x[:, :, :1], still[:, :, :1], enc)
    assert "motion" not in image_terms
