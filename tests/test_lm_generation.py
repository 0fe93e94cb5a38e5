"""The LM generator at the tiny preset: extraction, layout, sampling invariants, training, resume."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from lm_generation import extract_codes, sample as sample_cli
from lm_generation.config import lm_config
from lm_generation.model import CodeLayout, build_lm, count_parameters, sequences, targets
from lm_generation.pipeline import ARPipeline
from lm_generation.sampling import decode_choices, draw, filter_logits, sample_codes
from lm_generation.train import train
from shared.extraction import EMBEDDED_SEED, ExtractionError, ShardDataset
from tokenizer import OmniTokenizer

from .model_tester import ModelTesterMixin

TINY = ["data.embedded_images=6", "data.embedded_clips=6", "data.resolution=16"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tok") / "vq"
    OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_codes(tok_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("codes") / "images"
    extract_codes.main(["--tokenizer", str(tok_dir), "--images", "embedded", "--out", str(out), "--scale", "tiny",
                        *sum([["--set", s] for s in TINY], [])])
    return out


@pytest.fixture(scope="module")
def clip_codes(tok_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("codes") / "clips"
    extract_codes.main(["--tokenizer", str(tok_dir), "--videos", "embedded", "--out", str(out), "--scale", "tiny",
                        "--set", "data.embedded_clips=4", "--set", "data.resolution=16"])
    return out


def random_lm(layout, seed=0):
    """A tiny LM with random (not zero) output weights, so that sampling has something to follow."""
    torch.manual_seed(seed)
    model = build_lm(lm_config("tiny").model, layout)
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)
    return model.eval()


IMAGE = CodeLayout(codebook_size=32, num_classes=4, grid=(1, 3, 3), size=(1, 12, 12))
VIDEO = CodeLayout(codebook_size=32, num_classes=4, grid=(3, 2, 2), size=(9, 8, 8), cond_frames=2)


# ----------------------------------------------------------------------------- extraction


def test_extracted_codes_are_uint16_with_labels_flips_and_the_manifest(image_codes, clip_codes, tok_dir):
    data = ShardDataset(image_codes)
    s = data.settings
    assert data.arrays["codes"].dtype == torch.uint16 and tuple(data.arrays["codes"].shape) == (12, 1, 4, 4)
    assert s["grid"] == [1, 4, 4] and s["codebook_size"] == 256 and "horizontal flip" in s["augmentation"]
    assert len(s["tokenizer_sha256"]) == 64 and s["class_names"][0] == "astronaut"
    # rows: a batch of 4 items, then their 4 flips (as the latents): the same labels, other codes
    labels, codes = data.arrays["labels"], data.arrays["codes"]
    assert torch.equal(labels[:4], labels[4:8]) and not torch.equal(codes[:4], codes[4:8])
    tok = OmniTokenizer.from_pretrained(tok_dir).eval()
    from shared.data import EmbeddedPhotos, SampleKey
    item = EmbeddedPhotos("train", 16)[SampleKey(2, EMBEDDED_SEED + 2, 16, 16)]
    assert torch.equal(tok.encode(item["pixels"][None]).indices[0], codes[2].long())
    assert torch.equal(tok.encode(item["pixels"][None].flip(-1)).indices[0], codes[6].long())
    clips = ShardDataset(clip_codes)
    assert clips.settings["grid"] == [2, 4, 4] and clips.settings["frames"] == 5 and len(clips) == 8


def test_ten_crop_stores_four_corners_and_the_centre_and_their_flips(tok_dir, tmp_path):
    extract_codes.main(["--tokenizer", str(tok_dir), "--images", "embedded", "--out", str(tmp_path / "c"), "--scale",
                        "tiny", "--set", "data.embedded_images=2", "--set", "data.resolution=16",
                        "--set", "data.ten_crop=true", "--set", "data.crop_range=1.5"])
    data = ShardDataset(tmp_path / "c")
    codes, labels = data.arrays["codes"].load().long(), data.arrays["labels"]
    assert len(data) == 20 and "ten-crop" in data.settings["augmentation"]  # 2 images x (5 crops + 5 flips)
    from shared.data import EmbeddedPhotos, SampleKey
    item = EmbeddedPhotos("train", 24)[SampleKey(1, EMBEDDED_SEED + 1, 24, 24)]  # loaded at 16 * 1.5
    tok = OmniTokenizer.from_pretrained(tok_dir).eval()
    x = item["pixels"][None]
    # rows of the batch: crop-major (top-left of both images, top-right of both, ...), then the same flipped
    crops = {1: x[..., :16, :16], 3: x[..., :16, 8:], 9: x[..., 4:20, 4:20], 19: x[..., 4:20, 4:20].flip(-1)}
    for row, crop in crops.items():
        assert torch.equal(tok.encode(crop).indices[0], codes[row]), row
    assert (labels[1::2] == item["label"]).all()
    with pytest.raises(SystemExit, match="image augmentation"):
        extract_codes.main(["--tokenizer", str(tok_dir), "--videos", "embedded", "--out", str(tmp_path / "v"),
                            "--scale", "tiny", "--set", "data.ten_crop=true"])


def test_extraction_resumes_and_refuses_another_tokenizer(image_codes, tok_dir, tmp_path):
    args = ["--images", "embedded", "--out", str(image_codes), "--scale", "tiny", *sum([["--set", s] for s in TINY], [])]
    before = (image_codes / "shard_00000.safetensors").stat().st_mtime_ns
    extract_codes.main(["--tokenizer", str(tok_dir), *args])  # complete: nothing is redone
    assert (image_codes / "shard_00000.safetensors").stat().st_mtime_ns == before
    other = tmp_path / "other_tok"
    torch.manual_seed(1)
    OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(other)
    with pytest.raises(ExtractionError, match="tokenizer.*--restart"):
        extract_codes.main(["--tokenizer", str(other), *args])
    with pytest.raises(ExtractionError, match="resolution: 16 -> 24"):
        extract_codes.main(["--tokenizer", str(tok_dir), *args, "--set", "data.resolution=24"])
    OmniTokenizer.from_scale("tiny", quantizer="kl").save_pretrained(tmp_path / "kl")
    with pytest.raises(SystemExit, match="a KL tokenizer; code extraction needs a VQ one"):
        extract_codes.main(["--tokenizer", str(tmp_path / "kl"), *args[:2], "--out", str(tmp_path / "x"), *args[4:]])


def test_extraction_precision_is_recorded_and_never_mixed(image_codes, tok_dir, tmp_path):
    """Unset, the encoder runs in fp32 on a CPU (bf16 autocast on CUDA); --precision asks for the other, which is
    recorded in the settings and refused for the folder made in the first. The code search is fp32 either way, so
    bf16 moves only the tokens whose encoder output lands near a tie."""
    default = "bf16" if torch.cuda.is_available() else "fp32"
    other = {"fp32": "bf16", "bf16": "fp32"}[default]
    assert ShardDataset(image_codes).settings["precision"] == default
    args = ["--images", "embedded", "--scale", "tiny", *sum([["--set", s] for s in TINY], [])]
    with pytest.raises(ExtractionError, match=f"precision: '{default}' -> '{other}'.*--precision {default}"):
        extract_codes.main(["--tokenizer", str(tok_dir), *args, "--out", str(image_codes), "--precision", other])
    extract_codes.main(["--tokenizer", str(tok_dir), *args, "--out", str(tmp_path / other), "--precision", other])
    again = ShardDataset(tmp_path / other)
    assert again.settings["precision"] == other
    same = (again.arrays["codes"][:].long() == ShardDataset(image_codes).arrays["codes"][:].long()).float().mean()
    assert 0.5 < same, same


# ----------------------------------------------------------------------------- model and layout


def test_paper_shapes_have_227m_and_650m_parameters():
    cfg = lm_config("paper")
    imagenet = CodeLayout(codebook_size=8192, num_classes=1000, grid=(1, 32, 32), size=(1, 256, 256))
    assert abs(count_parameters(cfg.shape("227M"), imagenet) - 227e6) < 0.01 * 227e6
    assert abs(count_parameters(cfg.shape("650M"), imagenet) - 650e6) < 0.01 * 650e6
    assert cfg.shape(None) == cfg.shape("650M") and cfg.shape("227M").layers == 24


def test_vocabulary_sequence_and_loss_mask():
    assert (IMAGE.vocab_size, IMAGE.null_token, IMAGE.seq_len) == (37, 36, 10)
    codes = torch.randint(0, 32, (2, 3, 2, 2))
    ids = sequences(codes, VIDEO.class_tokens(torch.tensor([1, 3]), torch.tensor([False, True])))
    assert ids[:, 0].tolist() == [33, 36] and torch.equal(ids[:, 1:], codes.reshape(2, -1))
    labels = targets(ids, VIDEO)
    assert (labels[:, : 1 + 8] == -100).all() and torch.equal(labels[:, 9:], ids[:, 9:])  # given frames: no loss
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 4\)"):
        IMAGE.class_tokens(torch.tensor([4]))
    assert build_lm(lm_config("tiny").model, IMAGE).lm_head.weight.abs().sum() == 0  # zero-initialised head


def test_task_sections_apply_before_command_line_overrides():
    assert lm_config("tiny").train.conditional and not lm_config("tiny", task="frames").train.conditional
    assert lm_config("tiny", ["train.conditional=true"], task="frames").train.conditional
    with pytest.raises(Exception, match="unknown LMTrainConfig field"):
        lm_config("tiny", ["train.stepz=3"])


# ----------------------------------------------------------------------------- sampling


def test_cached_sampling_gives_the_tokens_of_uncached_sampling():
    model = random_lm(IMAGE)
    labels = torch.tensor([0, 1, 2, 3])
    for kw in ({}, {"guidance_scale": 3.0, "top_k": 8}, {"guidance_scale": 2.0, "top_p": 0.8, "temperature": 0.7}):
        cached = sample_codes(model, labels, seed=5, **kw)
        assert torch.equal(cached, sample_codes(model, labels, seed=5, use_cache=False, **kw))
    assert not torch.equal(sample_codes(model, labels, seed=5), sample_codes(model, labels, seed=6))


def test_compiled_decoding_gives_the_eager_samplers_codes():
    """Decode steps compiled over a static cache: the eager sampler's codes for greedy decoding and for seeded draws
    with guidance on the doubled batch; frame prediction's given codes fill the cache in one call (one compiled
    graph for all of it: every batch here has 8 rows and every sequence 10 tokens)."""
    model, labels = random_lm(IMAGE), torch.tensor([0, 1, 2, 3])
    for kw in ({"top_k": 1}, {"top_k": 8, "temperature": 0.7}, {"top_p": 0.9}):
        eager = sample_codes(model, labels, guidance_scale=2.0, seed=5, **kw)
        assert torch.equal(sample_codes(model, labels, guidance_scale=2.0, seed=5, compile=True, **kw), eager)
    sample_codes(model, labels, guidance_scale=2.0, seed=5, compile="auto")  # measured once for 8 rows, recorded
    (rows, choice), = decode_choices(model).items()
    assert rows == "8 rows, float32" and choice["reason"].startswith("a decode step measured at ")
    frames = CodeLayout(codebook_size=32, num_classes=4, grid=(3, 1, 3), size=(9, 4, 12), cond_frames=1)
    given = torch.randint(0, 32, (8, 3))
    lm = random_lm(frames)
    compiled = sample_codes(lm, None, given, seed=2, compile=True)
    assert torch.equal(compiled, sample_codes(lm, None, given, seed=2))
    assert torch.equal(compiled.reshape(8, -1)[:, :3], given)
    with pytest.raises(ValueError, match="compile must be true, false or 'auto', got 'yes'"):
        sample_codes(model, labels, compile="yes")
    with pytest.raises(ValueError, match="needs use_cache=True"):
        sample_codes(model, labels, compile=True, use_cache=False)


def test_guidance_scale_one_equals_plain_conditional_sampling():
    model = random_lm(IMAGE)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    plain = sample_codes(model, labels, seed=1)
    assert torch.equal(sample_codes(model, labels, guidance_scale=1.0, seed=1), plain)
    assert not torch.equal(sample_codes(model, labels, guidance_scale=8.0, seed=1), plain)
    # a guidance interval that covers no generated token is plain conditional sampling too
    assert torch.equal(sample_codes(model, labels, guidance_scale=8.0, cfg_interval=(0.999, 1.0), seed=1), plain)


def test_every_sampled_token_is_a_code_even_when_class_tokens_dominate():
    model = random_lm(IMAGE)
    boost = torch.zeros(IMAGE.vocab_size)
    boost[IMAGE.codebook_size:] = 1e4  # the class and null tokens would win every draw
    model.lm_head.register_forward_hook(lambda m, i, out: out + boost)
    codes = sample_codes(model, torch.tensor([0, 1, 2]), guidance_scale=2.0, seed=0)
    assert codes.shape == (3, 1, 3, 3) and codes.min() >= 0 and codes.max() < IMAGE.codebook_size


def test_top_k_and_top_p_keep_the_most_likely_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, 1.0, 2, 1.0)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, 1.0, 0, 0.75)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, 1.0, 0, 0.4)).tolist() == [[True, False, False, False]]


def test_top_p_keeps_the_most_likely_token_whatever_its_value():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, 1.0, 0, 1e-9)).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize("setting, match", [
    ({"top_p": 0.0}, "top_p must be in"), ({"top_p": -0.5}, "top_p must be in"), ({"top_p": 1.5}, "top_p must be in"),
    ({"top_p": float("nan")}, "top_p must be a finite"), ({"top_k": -1}, "top_k must be an integer"),
    ({"guidance_scale": float("nan")}, "guidance_scale must be a finite"),
    ({"guidance_scale": float("inf")}, "guidance_scale must be a finite"),
    ({"labels": None, "guidance_scale": 2.0}, "needs class labels"),
    ({"temperature": float("nan")}, "temperature must be a finite"), ({"temperature": 0.0}, "temperature must be > 0"),
    ({"guidance_scale": 2.0, "cfg_interval": (0.8, 0.2)}, "cfg_interval must be"),
    ({"labels": torch.tensor([-2])}, r"labels must be in \[0, 4\), or -1 for the null class"),
    ({"labels": torch.tensor([4])}, r"labels must be in"),
    ({"labels": torch.tensor([0.0, 1.0])}, "integer tensor"), ({"labels": torch.tensor([], dtype=torch.long)}, "non-empty 1-D"),
    ({"labels": torch.zeros(2, 2, dtype=torch.long)}, "non-empty 1-D"), ({"labels": [0.5]}, "labels must be integers"),
])
def test_sampling_settings_that_would_write_wrong_codes_are_refused(setting, match):
    model = random_lm(IMAGE)
    kwargs = {"labels": torch.tensor([0, 1]), **setting}
    with pytest.raises(ValueError, match=match):
        sample_codes(model, kwargs.pop("labels"), **kwargs)


def test_seeds_and_sizes_that_cannot_work_are_refused_in_the_config_and_the_api():
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 4294967295\], got 1180591620717411303424"):
        sample_codes(random_lm(IMAGE), torch.tensor([0]), seed=2**70)
    for override, match in [("train.seed=-1", "seed must be an integer"), ("sample.seed=1180591620717411303424", "seed"),
                            ("train.batch_size=0", "batch_size must be >= 1"), ("data.resolution=0", "resolution must be"),
                            ("sample.per_class=-1", "per_class must be >= 1"), ("train.steps=0", "steps must be >= 1"),
                            ("train.class_dropout=1.5", r"class_dropout must be in \[0, 1\]"),
                            ("model.heads=3", "width 32 must split into 3 equal heads")]:
        with pytest.raises(ValueError, match=match):
            lm_config("tiny", [override])


def test_labels_as_a_list_of_integers_sample_as_the_tensor_does():
    model = random_lm(IMAGE)
    assert torch.equal(sample_codes(model, [0, 1], seed=3), sample_codes(model, torch.tensor([0, 1]), seed=3))


def test_a_uniform_draw_of_zero_never_picks_a_token_of_probability_zero(monkeypatch):
    logits = torch.tensor([[float("-inf"), 0.0, 0.0]])  # token 0 has probability 0
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.zeros(*shape))  # the draw that once picked it
    assert draw(logits, torch.Generator().manual_seed(0)).item() == 2  # u = 1: the last token of the CDF


def test_frame_prediction_returns_the_given_codes_untouched():
    model = random_lm(VIDEO)
    given = torch.randint(0, 32, (3, VIDEO.num_given))
    out = sample_codes(model, None, given, seed=0)
    assert out.shape == (3, 3, 2, 2) and torch.equal(out.reshape(3, -1)[:, : VIDEO.num_given], given)
    assert torch.equal(out[:, :2].reshape(3, -1), given)
    with pytest.raises(ValueError, match="predicts frames: pass `given` codes"):
        sample_codes(model, torch.tensor([0]), None)


# ----------------------------------------------------------------------------- training


def test_loss_falls_on_a_tiny_dataset(image_codes, tmp_path):
    cfg = lm_config("tiny", ["train.steps=40", "train.checkpoint_every=100"])
    summary = train(cfg, image_codes, tmp_path / "run", "image")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"]
    assert summary["steps"] == 40 and (tmp_path / "run" / "validation" / "step_00000040" / "grid.png").is_file()
    assert (summary["precision"], summary["precision_reason"]) == ("fp32", "CPU default")  # as every trainer records it
    assert (summary["compile"], summary["compile_reason"], summary["compile_seconds"]) == (False, "forced", 0.0)
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_killed_and_resumed_training_equals_uninterrupted(image_codes, tmp_path):
    cfg = lm_config("tiny", ["train.steps=20", "train.checkpoint_every=100"])
    train(cfg, image_codes, tmp_path / "straight", "image")
    assert train(cfg, image_codes, tmp_path / "resumed", "image", stop_at=7) == {"stopped_at": 7}
    train(cfg, image_codes, tmp_path / "resumed", "image")
    a = load_file(str(tmp_path / "straight" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("straight", "resumed")}
    # the same rows: the first one after the resume (step 10) covers its whole window, steps 6-10, not 8-10
    assert [(r["step"], r["loss"]) for r in rows["resumed"]] == [(r["step"], r["loss"]) for r in rows["straight"]]
    # the checkpoint interval need not be the logging one, and it does not change the weights: a resume may change it
    train(lm_config("tiny", ["train.steps=20", "train.checkpoint_every=3"]), image_codes, tmp_path / "other", "image",
          stop_at=7)
    train(lm_config("tiny", ["train.steps=20", "train.checkpoint_every=100"]), image_codes, tmp_path / "other", "image")
    other = lm_config("tiny", ["train.steps=20", "train.lr=0.01"])
    # a finished run is reused for the same configuration (a sampling or logging change included), not retrained;
    # another learning rate is refused, as it is for a killed run's checkpoint
    weights = tmp_path / "resumed" / "final" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    same = lm_config("tiny", ["train.steps=20", "train.checkpoint_every=100", "train.log_every=2", "sample.top_k=3"])
    assert train(same, image_codes, tmp_path / "resumed", "image")["final"] == str((tmp_path / "resumed" / "final").resolve())
    assert weights.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="finished with another configuration .*train.lr: 0.003 -> 0.01"):
        train(other, image_codes, tmp_path / "resumed", "image")
    train(cfg, image_codes, tmp_path / "killed", "image", stop_at=7)
    with pytest.raises(ValueError, match="different configuration"):
        train(other, image_codes, tmp_path / "killed", "image")


@pytest.mark.slow  # compiles the LM's step (tens of seconds on a CPU with a cold compile cache)
def test_a_compiled_run_killed_and_resumed_equals_the_compiled_run_uninterrupted(image_codes, tmp_path):
    cfg = lm_config("tiny", ["train.steps=12", "train.checkpoint_every=100", "train.compile=true"])
    straight = train(cfg, image_codes, tmp_path / "straight", "image")
    assert straight["compile"] is True and straight["compile_reason"] == "forced" and straight["compile_seconds"] > 0
    assert train(cfg, image_codes, tmp_path / "resumed", "image", stop_at=5) == {"stopped_at": 5}
    resumed = train(cfg, image_codes, tmp_path / "resumed", "image")
    a = load_file(str(tmp_path / "straight" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = {name: [(r["step"], r["loss"]) for r in map(json.loads, (tmp_path / name / "metrics.jsonl").read_text().splitlines())]
            for name in ("straight", "resumed")}
    assert rows["resumed"] == rows["straight"]
    assert resumed["compile"] is True
    # the compiled step computes the eager step's function: the same first losses to float rounding
    eager = train(lm_config("tiny", ["train.steps=5", "train.checkpoint_every=100"]), image_codes, tmp_path / "eager",
                  "image")
    assert eager["compile"] is False
    first = [json.loads(line)["loss"] for line in (tmp_path / "eager" / "metrics.jsonl").read_text().splitlines()]
    assert first[0] == pytest.approx(rows["straight"][0][1], rel=1e-4)


def test_a_finished_run_is_reused_only_with_its_own_final_folder(image_codes, tmp_path):
    from shared.provenance import file_sha256

    cfg = lm_config("tiny", ["train.steps=6"])
    first = train(cfg, image_codes, tmp_path / "run", "image")
    final = tmp_path / "run" / "final"
    assert first["final_sha256"] == file_sha256(final)
    weights = (final / "model.safetensors").read_bytes()
    shutil.rmtree(final)  # gone: written again from the last checkpoint, the same weights
    again = train(cfg, image_codes, tmp_path / "run", "image")
    assert (final / "model.safetensors").read_bytes() == weights and again["final_sha256"] == first["final_sha256"]
    torch.manual_seed(1)
    build_lm(lm_config("tiny").model, ARPipeline.from_pretrained(final).layout).save_pretrained(final)  # replaced
    with pytest.raises(ValueError, match=r"final: not the files this run wrote .*--restart"):
        train(cfg, image_codes, tmp_path / "run", "image")


def test_pipeline_round_trip_and_sample_cli_layout(image_codes, tmp_path):
    cfg = lm_config("tiny", ["train.steps=10"])
    train(cfg, image_codes, tmp_path / "run", "image")
    pipe = ARPipeline.from_pretrained(tmp_path / "run" / "final")
    pipe.save_pretrained(tmp_path / "copy")
    again = ARPipeline.from_pretrained(tmp_path / "copy")
    labels = torch.tensor(list(pipe.layout.seen_classes[:2]))
    a, b = pipe(labels, guidance_scale=2.0, seed=3), again(labels, guidance_scale=2.0, seed=3)
    assert a.shape == (2, 3, 1, 16, 16) and torch.equal(a, b)
    final = str(tmp_path / "run" / "final")
    record = sample_cli.main(["--pipeline", final, "--out", str(tmp_path / "s"), "--scale", "tiny", "--classes", "2"])
    c0, c1 = pipe.layout.seen_classes[:2]
    for scale in (1, 2):  # tiny's guidance_scales: a folder each
        files = sorted(p.relative_to(tmp_path / "s" / f"cfg{scale}").as_posix()
                       for p in (tmp_path / "s" / f"cfg{scale}").rglob("*.png"))
        assert files == [f"{c0:04d}/00000.png", f"{c0:04d}/00001.png", f"{c1:04d}/00000.png", f"{c1:04d}/00001.png"]
        assert (tmp_path / "s" / f"cfg{scale}.png").is_file()
    saved = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert saved["folders"] == json.loads(json.dumps(record["folders"])) and saved["generator"] == "lm"
    assert [f["guidance_scale"] for f in saved["folders"].values()] == [1.0, 2.0] and saved["classes"] == [c0, c1]
    assert len(saved["model_sha256"]) == 64 and saved["sampling"]["top_k"] == 0
    # a killed run resumes: a missing file is drawn again, the same pixels as before
    victim = tmp_path / "s" / "cfg2" / f"{c1:04d}" / "00001.png"
    before = victim.read_bytes()
    victim.unlink()
    sample_cli.main(["--pipeline", final, "--out", str(tmp_path / "s"), "--scale", "tiny", "--classes", "2"])
    assert victim.read_bytes() == before
    with pytest.raises(ValueError, match="other settings"):  # never mixed with another seed's files
        sample_cli.main(["--pipeline", final, "--out", str(tmp_path / "s"), "--scale", "tiny", "--classes", "2",
                         "--seed", "1"])
    # bf16 weights and cache: the same layout, recorded, and never mixed with fp32 samples
    fast = ARPipeline.from_pretrained(final, precision="bf16")
    assert fast.precision == "bf16" and next(fast.lm.parameters()).dtype == torch.bfloat16
    codes = sample_codes(fast.lm, labels, guidance_scale=2.0, seed=3)
    assert torch.equal(codes, sample_codes(fast.lm, labels, guidance_scale=2.0, seed=3))
    assert fast(labels, guidance_scale=2.0, seed=3).shape == a.shape
    assert codes.min() >= 0 and codes.max() < pipe.layout.codebook_size
    with pytest.raises(ValueError, match="other settings .*precision"):
        sample_cli.main(["--pipeline", final, "--out", str(tmp_path / "s"), "--scale", "tiny", "--classes", "2",
                         "--precision", "bf16"])
    assert json.loads((tmp_path / "s" / "samples.json").read_text())["precision"] == "fp32"


def test_frame_prediction_trains_and_writes_videos_decord_reads(clip_codes, tmp_path):
    import decord

    cfg = lm_config("tiny", ["train.steps=6", "train.conditional=false"])
    train(cfg, clip_codes, tmp_path / "run", "frames")
    final = str(tmp_path / "run" / "final")
    with pytest.raises(SystemExit, match="unconditional model has no classifier-free guidance"):
        sample_cli.main(["--pipeline", final, "--out", str(tmp_path / "s"), "--scale", "tiny", "--guidance", "2",
                         "--codes", str(clip_codes)])
    sample_cli.main(["--pipeline", final, "--out", str(tmp_path / "s"), "--scale", "tiny", "--codes", str(clip_codes),
                     "--limit", "2"])  # the frames task's guidance scales: [1.0]
    with pytest.raises(SystemExit, match="--limit must be >= 1, got 0"):
        sample_cli.main(["--pipeline", final, "--out", str(tmp_path / "s0"), "--limit", "0"])
    videos = sorted((tmp_path / "s" / "cfg1").rglob("*.mp4"))
    assert [v.relative_to(tmp_path / "s" / "cfg1").as_posix() for v in videos] == ["0000/00000.mp4", "0000/00001.mp4"]
    assert len(decord.VideoReader(str(videos[0]))) == 5
    with pytest.raises(ValueError, match="holds video codes; task 'image'"):
        train(cfg, clip_codes, tmp_path / "other", "image")


@pytest.mark.slow
def test_two_process_lm_training_equals_one_process_of_the_same_global_batch(image_codes, tmp_path):
    """The CPU launch of docs/data.md, of the LM trainer (it had failed on both ranks: the tokenizer was loaded onto
    "cpu:0", a device name safetensors refuses), with class dropout: each rank's mask is its share of the global
    batch's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    overrides = ["train.steps=3", "train.class_dropout=0.5", "train.checkpoint_every=3", "train.log_every=1"]
    code = ("from lm_generation.config import lm_config; from lm_generation.train import train; "
            "train(lm_config('tiny', %r), %r, %r)") % (overrides + ["train.batch_size=4"], str(image_codes),
                                                     str(tmp_path / "ddp"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo), "ACCELERATE_USE_CPU": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
           "-m", "tests.ddp_entry", code]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = train(lm_config("tiny", overrides + ["train.batch_size=8"]), image_codes, tmp_path / "one")
    two = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert (two["processes"], single["processes"]) == (2, 1)
    a = load_file(tmp_path / "ddp" / "checkpoints" / "step_00000003" / "model.safetensors")
    b = load_file(tmp_path / "one" / "checkpoints" / "step_00000003" / "model.safetensors")
    # equal to float rounding (two ranks' averaged gradients against one batch's mean; Adam enlarges it where a
    # gradient is near zero: up to 2e-5 seen); masks drawn per rank instead differ by 1e-2 in most weights
    for key in b:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)


def test_a_pipeline_whose_tokenizer_was_replaced_is_refused(tmp_path):
    torch.manual_seed(0)
    tokenizer = OmniTokenizer.from_scale("tiny", quantizer="vq")
    layout = CodeLayout(codebook_size=tokenizer.config.codebook_size, num_classes=2, grid=(1, 2, 2), size=(1, 8, 8))
    ARPipeline(build_lm(lm_config("tiny").model, layout), tokenizer).save_pretrained(tmp_path / "p")
    ARPipeline.from_pretrained(tmp_path / "p")
    config = tmp_path / "p" / "config.json"
    recorded = json.loads(config.read_text())
    config.write_text(json.dumps({k: v for k, v in recorded.items() if k != "tokenizer_sha256"}))  # an older folder
    with pytest.raises(ValueError, match=r"config.json: written by an earlier version of the project \(no "
                                         r"tokenizer_sha256 .*train it again"):
        ARPipeline.from_pretrained(tmp_path / "p")
    config.write_text(json.dumps(recorded))
    torch.manual_seed(1)
    OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(tmp_path / "p" / "tokenizer")  # same size
    with pytest.raises(ValueError, match="not the weights the data was made with"):
        ARPipeline.from_pretrained(tmp_path / "p")
    weights = tmp_path / "p" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"p: the LM's config.json / model.safetensors cannot be loaded"):
        ARPipeline.from_pretrained(tmp_path / "p")


def test_lm_training_refuses_a_tokenizer_replaced_after_extraction_and_a_latents_folder(image_codes, tok_dir, tmp_path):
    import shutil

    from shared.extraction import MANIFEST

    codes = tmp_path / "codes"
    shutil.copytree(image_codes, codes)
    manifest = json.loads((codes / MANIFEST).read_text())
    torch.manual_seed(1)
    OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(tmp_path / "replaced")
    manifest["settings"]["tokenizer"] = str(tmp_path / "replaced")  # as if its files were replaced in place
    (codes / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not the weights the data was made with"):
        train(lm_config("tiny", ["train.steps=1"]), codes, tmp_path / "run", "image")
    # a shard with a code outside the codebook
    from safetensors.torch import load_file as read, save_file

    from shared.provenance import file_sha256

    shutil.rmtree(codes)
    shutil.copytree(image_codes, codes)
    shard = codes / "shard_00000.safetensors"
    tensors = read(shard)
    tensors["codes"][0, 0, 0, 0] = 300  # the tiny codebook has 256 entries
    save_file(tensors, shard)
    with pytest.raises(ValueError, match=r"shard_00000.safetensors: sha256 .* is not the one .*manifest.json records"):
        train(lm_config("tiny", ["train.steps=1"]), codes, tmp_path / "run", "image")
    manifest = json.loads((codes / MANIFEST).read_text())  # as an extraction that wrote such a shard records it
    manifest["shards"][0]["sha256"] = file_sha256(shard)
    (codes / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="shard_00000.safetensors: holds code 300, outside the codebook of 256"):
        train(lm_config("tiny", ["train.steps=1"]), codes, tmp_path / "run", "image")
    # a folder of diffusion latents is not codes
    from shared.extraction import extract

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"pixels": torch.zeros(3, 1, 2, 2), "label": torch.tensor(i), "path": f"item{i}"}

    extract(Items(), lambda b: {"mean": b["pixels"][:, :, 0], "labels": b["label"]}, tmp_path / "latents",
            {"kind": "image", "latent_shape": [3, 2, 2]})
    with pytest.raises(ValueError, match="latents: not a folder of VQ codes"):
        train(lm_config("tiny", ["train.steps=1"]), tmp_path / "latents", tmp_path / "run2", "image")


def test_gradient_checkpointing_trains_the_same_weights(image_codes, tmp_path):
    plain = train(lm_config("tiny", ["train.steps=3"]), image_codes, tmp_path / "a", "image")
    saved = train(lm_config("tiny", ["train.steps=3", "train.gradient_checkpointing=true"]), image_codes, tmp_path / "b",
                  "image")
    assert plain["steps"] == saved["steps"] == 3
    a = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_compute_curve_trains_samples_and_judges_each_budget(image_codes, tmp_path):
    from bench import compute_curve

    report = compute_curve.main(["--generator", "lm", "--data", str(image_codes), "--scale", "tiny", "--steps", "3",
                                 "2", "--runs", str(tmp_path / "runs"), "--json", str(tmp_path / "curve.json"),
                                 "--plot", str(tmp_path / "curve.png"), "--guidance", "2"])
    assert [r["steps"] for r in report["budgets"]] == [2, 3]
    for r in report["budgets"]:
        assert 0 <= r["lowest_class_share"] <= r["share"] <= 1 and r["n"] > 0 and r["train_seconds"] > 0
        assert r["guidance"] == 2.0
    assert json.loads((tmp_path / "curve.json").read_text())["budgets"] == report["budgets"]
    assert (tmp_path / "curve.png").stat().st_size > 0
    # a budget's folder holding another budget's run is refused, not reported as this budget
    import shutil

    shutil.copytree(tmp_path / "runs" / "steps_2", tmp_path / "runs" / "steps_4")
    with pytest.raises(ValueError, match=r"another configuration .*train\.steps: 2 -> 4"):
        compute_curve.main(["--generator", "lm", "--data", str(image_codes), "--scale", "tiny", "--steps", "4",
                            "--runs", str(tmp_path / "runs"), "--json", str(tmp_path / "curve4.json"),
                            "--plot", str(tmp_path / "curve4.png"), "--guidance", "2"])
    with pytest.raises(SystemExit, match="--steps must all be >= 1"):
        compute_curve.main(["--generator", "lm", "--data", str(image_codes), "--steps", "0", "--guidance", "1",
                            "--json", "x", "--plot", "y"])


class TestLMModel(ModelTesterMixin):
    """Save / load and gradients of the GPT over codes; its zero-initialised output head randomised first."""
    zero_initialised = ("lm_head",)

    def make_model(self):
        return build_lm(lm_config("tiny").model, IMAGE)

    def make_inputs(self):
        g = torch.Generator().manual_seed(0)
        codes = torch.randint(0, IMAGE.codebook_size, (2, IMAGE.num_codes), generator=g)
        return {"input_ids": torch.cat([IMAGE.class_tokens(torch.tensor([0, 3]), torch.tensor([False, True]))[:, None],
                                        codes], 1)}


def test_given_codes_are_the_pipelines_tokenizers_and_recorded_by_their_content(clip_codes, tok_dir, tmp_path):
    """Codes another tokenizer extracted had been continued, and codes re-extracted at the same path had joined an
    existing samples folder (compared as a path string); --codes to an image LM had been ignored but recorded."""
    import shutil

    train(lm_config("tiny", ["train.steps=2", "train.conditional=false"]), clip_codes, tmp_path / "run", "frames")
    final = str(tmp_path / "run" / "final")
    tiny = ["--scale", "tiny", "--set", "data.embedded_clips=4", "--set", "data.resolution=16"]
    torch.manual_seed(1)
    OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(tmp_path / "other")
    extract_codes.main(["--tokenizer", str(tmp_path / "other"), "--videos", "embedded",
                        "--out", str(tmp_path / "other_codes"), *tiny])
    with pytest.raises(SystemExit, match=r"other_codes: codes extracted by tokenizer .*, not by this pipeline's "
                                         r"tokenizer .*: their indices mean other pictures"):
        sample_cli.main(["--pipeline", final, "--out", str(tmp_path / "x"), "--scale", "tiny",
                         "--codes", str(tmp_path / "other_codes"), "--limit", "1"])
    codes = tmp_path / "codes"
    shutil.copytree(clip_codes, codes)
    args = ["--pipeline", final, "--out", str(tmp_path / "s"), "--scale", "tiny", "--codes", str(codes), "--limit", "1"]
    first = sample_cli.main(args)
    assert first["given_codes_from"] == str(codes) and len(first["given_codes_sha256"]) == 64
    # the same path, other clips (the held-out ones): refused by their content
    extract_codes.main(["--tokenizer", str(tok_dir), "--videos", "embedded", "--split", "val", "--out", str(codes),
                        "--restart", *tiny])
    with pytest.raises(ValueError, match=r"other settings .*given_codes_sha256"):
        sample_cli.main(args)
    # an image LM takes no codes
    layout = CodeLayout(codebook_size=256, num_classes=2, grid=(1, 4, 4), size=(1, 16, 16))
    ARPipeline(build_lm(lm_config("tiny").model, layout),
               OmniTokenizer.from_pretrained(tok_dir)).save_pretrained(tmp_path / "image_lm")
    with pytest.raises(SystemExit, match=r"--codes .*codes: this LM generates from nothing .* --codes is for a "
                                         r"frame-prediction LM"):
        sample_cli.main(["--pipeline", str(tmp_path / "image_lm"), "--out", str(tmp_path / "i"), "--scale", "tiny",
                         "--codes", str(codes)])
