"""The shared training pieces (shared/training, shared/config.py, shared/data/collate.py) on their own."""
import json
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn as nn

from shared.config import ConfigError, apply_overrides, build
from shared.data.collate import collate
from shared.training import EMA, MetricsLog, NonFiniteGuard, lr_at, resume, save_checkpoint


def test_learning_rate_schedule_warms_up_then_decays_or_stays():
    assert lr_at(0, 1e-3, 5e-5, 10, 100) == pytest.approx(1e-4) and lr_at(9, 1e-3, 5e-5, 10, 100) == pytest.approx(1e-3)
    assert lr_at(99, 1e-3, 5e-5, 10, 100) == pytest.approx(5e-5, rel=0.01)
    assert all(lr_at(s, 1e-3, 5e-5, 10, 100) >= lr_at(s + 1, 1e-3, 5e-5, 10, 100) for s in range(10, 99))
    assert {lr_at(s, 1e-3, 0.0, 0, 100, "constant") for s in range(100)} == {1e-3}
    with pytest.raises(ValueError, match="cosine"):
        lr_at(5, 1e-3, 0.0, 0, 10, "linear")


def test_metrics_log_keeps_each_step_once_after_a_resume(tmp_path):
    log = MetricsLog(tmp_path)
    for step in range(1, 31):
        log.log(step, {"loss": float(step)})
    log.close()
    log = MetricsLog(tmp_path, start_step=20)  # resumed from the checkpoint at step 20
    for step in range(21, 31):
        log.log(step, {"loss": float(step)})
    log.close()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))


def test_ema_starts_at_the_model_and_follows_it():
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    assert torch.equal(ema.model.weight, model.weight) and not ema.model.weight.requires_grad
    before = ema.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, before + 0.1)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, 1.0)


def test_nonfinite_guard_counts_and_stops_after_too_many_in_a_row():
    guard = NonFiniteGuard(max_in_row=2)
    assert guard.record(True) is False and guard.record(False) is False  # a good step resets the run
    assert guard.record(True) is False and guard.record(True) is True and guard.skipped == 3


def test_resume_restores_weights_and_refuses_another_config(tmp_path):
    model, other = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, 5, {"model": model.state_dict()}, {"opt": opt.state_dict()}, {"config": {"lr": 1}})
    opt2 = torch.optim.AdamW(other.parameters())
    meta = resume(tmp_path, {"lr": 1}, {"model": other}, {"opt": opt2})
    assert meta["step"] == 5 and torch.equal(other.weight, model.weight)
    assert opt2.state_dict()["state"][0]["step"] == 1
    with pytest.raises(ValueError, match="different configuration.*--restart"):
        resume(tmp_path, {"lr": 2}, {"model": other}, {})
    assert resume(tmp_path / "none", {"lr": 1}, {}, {}) is None
    # a field the checkpoint's record lacks (written by another version) is a difference, whatever its value
    with pytest.raises(ValueError, match=r"scale: '<absent>' -> 1\.0"):
        resume(tmp_path, {"lr": 1, "scale": 1.0}, {"model": other}, {})


@dataclass
class _Model:
    dim: int = 4
    causal: bool = True
    betas: tuple[float, float] = (0.9, 0.99)
    scale: float | None = None


@dataclass
class _Config:
    model: _Model = field(default_factory=_Model)
    stages: list[str] = field(default_factory=list)


def test_config_values_are_type_checked_and_overridable():
    cfg = build(_Config, apply_overrides({"model": {"dim": 8}}, ["model.betas=[0.5, 0.9]", "model.scale=2"]))
    assert cfg.model == _Model(dim=8, betas=(0.5, 0.9), scale=2.0)
    for bad, message in [({"model": {"causal": "false"}}, "causal: expected true or false"),
                         ({"model": {"dim": "64"}}, "dim: expected an integer"),
                         ({"model": {"betas": [1, 2, 3]}}, "expected 2 values"),
                         ({"model": {"heads": 2}}, r"unknown _Model field\(s\) \['heads'\]")]:
        with pytest.raises(ConfigError, match=message):
            build(_Config, bad, "my.yaml")
    with pytest.raises(ConfigError, match="section.field=value"):
        apply_overrides({}, ["model.dim"])


@dataclass(frozen=True)
class _Share:
    """A record as a result file holds it: a key that is no Python name, and keys a newer writer added."""
    ignores_unknown_fields = True
    index: int = field(metadata={"key": "class"})
    share: float


def test_a_record_reads_a_key_under_another_name_and_names_its_missing_fields():
    assert build(_Share, {"class": 3, "share": 1, "added_later": "x"}) == _Share(3, 1.0)
    with pytest.raises(ConfigError, match=r"r.json: missing _Share field\(s\) \['class'\]"):
        build(_Share, {"share": 0.5}, "r.json")
    with pytest.raises(ConfigError, match=r"r.json: class: expected an integer, got 'a'"):
        build(_Share, {"class": "a", "share": 0.5}, "r.json")


def test_collate_stacks_tensors_and_lists_the_rest():
    items = [{"pixels": torch.zeros(3, 1, 4, 4), "codes": torch.arange(n), "path": f"p{n}", "unreadable": [f"e{n}"]}
             for n in (2, 3)]
    batch = collate(items)
    assert batch["pixels"].shape == (2, 3, 1, 4, 4) and isinstance(batch["codes"], list)
    assert batch["path"] == ["p2", "p3"] and batch["unreadable"] == ["e2", "e3"]
    with pytest.raises(ValueError, match="fields"):
        collate([{"a": 1}, {"b": 2}])


def test_crash_leftovers_are_cleaned_and_complete_checkpoints_kept(tmp_path):
    """a kill while writing or pruning leaves folders that the next start removes."""
    from shared.atomic import remove_temporary_files

    model = nn.Linear(2, 2)
    done = save_checkpoint(tmp_path / "ckpt", 4, {"model": model.state_dict()}, {}, {"config": {}})
    (tmp_path / "ckpt" / ".tmp_step_00000006_123").mkdir()  # killed while writing
    (tmp_path / "ckpt" / "step_00000002").mkdir()  # killed while pruning: no meta.json
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / ".model.safetensors.abc123.tmp").write_bytes(b"half")
    (tmp_path / "final" / "config.json").write_text("{}")
    assert resume(tmp_path / "ckpt", {}, {"model": model}, {})["step"] == 4
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [done.name]
    assert [p.name for p in remove_temporary_files(tmp_path / "final")] == [".model.safetensors.abc123.tmp"]
    assert [p.name for p in (tmp_path / "final").iterdir()] == ["config.json"]


def test_written_files_get_the_usual_mode_and_a_truncated_file_is_named(tmp_path):
    import os

    from shared.atomic import atomic_write_json
    from shared.training.checkpoint import load_safetensors

    mask = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "result.json", {"a": 1})
    finally:
        os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o644
    save_checkpoint(tmp_path / "ckpt", 1, {"model": nn.Linear(4, 4).state_dict()}, {}, {"config": {}})
    weights = tmp_path / "ckpt" / "step_00000001" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"model.safetensors: cannot be read as safetensors .* truncated or corrupt"):
        load_safetensors(weights)


def test_safetensors_files_get_the_umask_mode_and_load_on_a_distributed_cpu_device(tmp_path):
    """safetensors writes its own temporary file and renames it, which had left every weights file 0600; a CPU
    process of a distributed launch has the device "cpu:0", which safetensors refuses by name."""
    import os

    from shared.training.checkpoint import load_safetensors
    from tokenizer import OmniTokenizer

    mask = os.umask(0o022)
    try:
        folder = OmniTokenizer.from_scale("tiny").save_pretrained(tmp_path / "tok")
        save_checkpoint(tmp_path / "ckpt", 1, {"model": nn.Linear(4, 4).state_dict()}, {}, {"config": {}})
    finally:
        os.umask(mask)
    written = [folder / "diffusion_pytorch_model.safetensors", tmp_path / "ckpt" / "step_00000001" / "model.safetensors"]
    assert [os.stat(p).st_mode & 0o777 for p in written] == [0o644, 0o644]
    tensors = load_safetensors(written[0], map_location=torch.device("cpu", 0))
    assert tensors and all(t.device.type == "cpu" for t in tensors.values())
    OmniTokenizer.from_pretrained(folder).to(torch.device("cpu", 0))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_safetensors(tmp_path / "missing.safetensors")


def test_precision_is_chosen_by_the_machine_or_forced():
    from shared.training.precision import autocast, choose_precision, cpu_bf16_speedup

    assert choose_precision("fp32") == ("fp32", "forced") and choose_precision("bf16", "cuda") == ("bf16", "forced")
    assert choose_precision("auto", "cuda") == ("bf16", "CUDA")
    chosen, why = choose_precision("auto", "cpu")
    assert chosen == ("bf16" if cpu_bf16_speedup() >= 1.5 else "fp32") and "measured" in why
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("fp16")
    # unset: bf16 on CUDA, fp32 on a CPU, whatever the CPU measures
    assert choose_precision(None, "cuda") == ("bf16", "CUDA") and choose_precision(None, "cpu")[0] == "fp32"
    x = torch.randn(4, 4)
    with autocast("bf16", "cpu"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (x @ x).dtype == torch.float32


def test_a_tokenizer_stage_trains_under_cpu_bf16_autocast(tmp_path):
    from tokenizer.train import run

    stage = dict(name="image", quantizer="vq", steps=2, pattern="iv", resolutions=[32], batch_size_image=2,
                 batch_size_video=1, warmup_steps=1, loss={"gan_weight": 0.0})
    report = run("tiny", tmp_path, stages=[stage], precision="bf16", loss={"perceptual_weight": 0.0})
    summary = report["stages"]["image"]
    assert summary["precision"] == "bf16" and summary["validation"]["image"]["psnr"] > 5


def test_a_second_writer_of_a_run_folder_is_refused_clearly(tmp_path):
    from shared.training import RunFolderBusy, locks_run_folder, run_lock

    @locks_run_folder
    def trainer(cfg, out):
        return "trained"

    with run_lock(tmp_path / "run"):
        with pytest.raises(RunFolderBusy, match=r"run: another trainer \(pid \d+\) is writing this run folder"):
            trainer(None, out=tmp_path / "run")
    assert trainer(None, tmp_path / "run") == "trained"  # free again once the first writer is done
    assert not (tmp_path / "run" / ".lock").exists()


def test_unreadable_checkpoints_and_manifests_are_named_and_a_truncated_newest_falls_back(tmp_path, caplog):
    from shared.extraction import read_manifest

    model = nn.Linear(4, 4)
    folder = tmp_path / "ckpt"
    for step in (1, 2):
        save_checkpoint(folder, step, {"model": model.state_dict()}, {}, {"config": {}, "step_note": step})
    newest = folder / "step_00000002" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:30])
    with caplog.at_level("WARNING"):
        meta = resume(folder, {}, {"model": nn.Linear(4, 4)}, {})
    assert meta["step"] == 1 and "step_00000002 could not be read" in caplog.text
    (folder / "step_00000001" / "meta.json").write_text('{"step": 1, "conf')
    with pytest.raises(ValueError, match=r"no checkpoint can be read"):
        resume(folder, {}, {"model": nn.Linear(4, 4)}, {})
    other = tmp_path / "other"
    save_checkpoint(other, 1, {"ema": model.state_dict()}, {}, {"config": {}})
    with pytest.raises(ValueError, match=r"step_00000001: holds no model.safetensors"):
        resume(other, {}, {"model": nn.Linear(4, 4)}, {})
    for text, match in (('{"complete": tr', "is not valid JSON"), ("[1, 2]", "must hold a JSON object, got list")):
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(ValueError, match=f"manifest.json: this extraction manifest {match}"):
            read_manifest(tmp_path)


def test_a_full_disk_during_a_checkpoint_says_so_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    import errno

    from shared.training import checkpoint

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    save_checkpoint(tmp_path, 1, {"model": nn.Linear(4, 4).state_dict()}, {}, {"config": {}})
    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(OSError, match="no space left on the device while writing the checkpoint of step 2") as info:
        save_checkpoint(tmp_path, 2, {"model": nn.Linear(4, 4).state_dict()}, {}, {"config": {}})
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001"]


def test_discard_run_removes_what_the_trainer_and_sampler_wrote_and_keeps_the_rest(tmp_path):
    from shared.training import discard_run

    for name in ("checkpoints/step_00000002", "final", "samples/cfg1/0000", "validation/step_00000002", "tb", "latents"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("metrics.jsonl", "summary.json", "latents/manifest.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    discard_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents", "notes.txt"]
    discard_run(tmp_path / "missing")  # nothing there: nothing to do


def _toy_run(folder, nan_at=(), stop_at=None, validated=None, compile=False):
    """A linear model trained by the shared loop on a fixed regression; its loss is NaN at the steps in nan_at."""
    from shared.training import Step, make_accelerator, run_loop, start_run
    from shared.training.config import TrainerConfig

    cfg = TrainerConfig(steps=6, batch_size=4, lr=0.05, log_every=2, checkpoint_every=2, validate_every=4,
                        max_nonfinite_in_row=2, compile=compile)
    accelerator = make_accelerator()
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    run = start_run(accelerator, folder, cfg, {"toy": 1}, {"model": model}, {"opt": opt}, stop_at=stop_at)
    x = torch.linspace(-1, 1, 12).reshape(4, 3)

    def inputs(step, batch):
        return batch, torch.tensor(float("nan") if step in nan_at else 1.0)

    def loss(batch, factor):
        loss = ((model(x + torch.randn_like(x) * 0.1) - batch) ** 2).mean()  # the step's noise: seeded by the loop
        return loss * factor, {"scale": model.weight.abs().mean()}

    def validate(step, out):
        (out / "weights.txt").write_text(str(model.weight.tolist()))
        (validated if validated is not None else []).append(step)

    batches = (torch.full((4, 1), float(s % 3)) for s in range(run.start, run.stop))  # one batch per step
    return run_loop(accelerator, run, Step(inputs, loss, model, opt, grad_clip=1.0), batches, validate), model, opt


def test_the_loop_skips_a_non_finite_step_whole_and_resumes_exactly(tmp_path):
    import math

    validated = []
    straight, model, opt = _toy_run(tmp_path / "a", nan_at={2}, validated=validated)
    assert straight.nonfinite_skipped == 1 and straight.stopped_at is None and validated == [4, 6]
    assert (tmp_path / "a" / "validation" / "step_00000004" / "weights.txt").is_file()
    assert opt.state_dict()["state"][0]["step"] == 5  # 6 steps, one skipped: no optimizer step on it
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6] and all(math.isfinite(r["loss"]) for r in rows)
    assert [r["nonfinite_skipped"] for r in rows] == [0, 1, 1] and {"lr", "scale", "seconds"} <= set(rows[0])
    # killed after step 3 (inside the window of steps 3-4, after the skipped step): the same weights and rows
    assert _toy_run(tmp_path / "b", nan_at={2}, stop_at=3)[0].stopped_at == 3
    resumed, again, _ = _toy_run(tmp_path / "b", nan_at={2})
    assert torch.equal(again.weight, model.weight) and resumed.nonfinite_skipped == 1
    strip = lambda d: [{k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
                       for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "b") == strip(tmp_path / "a")
    # two in a row stop the run, with a checkpoint at the step that stopped it (the last good weights)
    with pytest.raises(RuntimeError, match=r"2 non-finite losses in a row at step 4"):
        _toy_run(tmp_path / "c", nan_at={3, 4})
    assert (tmp_path / "c" / "checkpoints" / "step_00000004").is_dir()


def test_a_compiled_run_computes_the_eager_function_and_resumes_exactly(tmp_path):
    """train.compile=true: the loss the loop steps with is torch.compile'd (warmed up before the first step, with the
    weights, buffers and random state put back), draws torch's own random numbers, and a compiled run killed and
    resumed writes the weights and rows of the compiled run uninterrupted."""
    eager, eager_model, _ = _toy_run(tmp_path / "eager", nan_at={2})
    assert eager.compile == {"compile": False, "compile_reason": "forced", "compile_seconds": 0.0}
    straight, model, _ = _toy_run(tmp_path / "a", nan_at={2}, compile=True)
    assert straight.compile["compile"] is True and straight.compile["compile_seconds"] > 0
    assert straight.nonfinite_skipped == 1
    torch.testing.assert_close(model.weight, eager_model.weight)  # the same noise each step, the same updates
    killed = _toy_run(tmp_path / "b", nan_at={2}, stop_at=3, compile=True)[0]
    assert killed.stopped_at == 3
    resumed, again, _ = _toy_run(tmp_path / "b", nan_at={2}, compile=True)
    assert torch.equal(again.weight, model.weight)
    strip = lambda d: [{k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
                       for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "b") == strip(tmp_path / "a")
    assert resumed.compile["compile"] is True  # compile seconds: both processes' (as training seconds are)
    assert resumed.compile["compile_seconds"] > killed.compile["compile_seconds"] > 0


def test_auto_compile_measures_records_and_a_resume_keeps_the_recorded_choice(tmp_path):
    from shared.training import latest_checkpoint

    first = _toy_run(tmp_path / "run", stop_at=2, compile="auto")[0]
    assert first.compile["compile_reason"].startswith("a step measured at ")  # "...: 1.30x eager compiled (...)"
    meta_file = latest_checkpoint(tmp_path / "run" / "checkpoints") / "meta.json"
    meta = json.loads(meta_file.read_text())
    assert {k: meta[k] for k in first.compile} == first.compile
    # the resumed run takes the choice its checkpoints record, whatever this machine would measure now
    meta.update(compile=False, compile_reason="recorded", compile_seconds=5.0)
    meta_file.write_text(json.dumps(meta))
    resumed = _toy_run(tmp_path / "run", compile="auto")[0]
    assert resumed.compile == {"compile": False, "compile_reason": "recorded", "compile_seconds": 5.0}
    with pytest.raises(ValueError, match="compile must be true, false or 'auto', got 'yes'"):
        _toy_run(tmp_path / "other", compile="yes")
    from shared.training.config import TrainerConfig

    with pytest.raises(ConfigError, match=r"train: compile: must be one of \['auto', True, False\], got 'yes'"):
        build(TrainerConfig, {"compile": "yes"}, "train")
    with pytest.raises(ValueError, match="compile must be true, false or 'auto', got 1"):
        build(TrainerConfig, {"compile": 1}, "train")
