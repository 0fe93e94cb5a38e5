"""eval.generation_report: one result file for any generator's run, joined from the files the steps wrote."""
import json

import pytest

from eval import generation_report
from eval.generator_result import SCHEMA_VERSION, read_result
from shared.guidance import guidance_key

from .generator_results import judge, per_class, sample_metrics

REFERENCES = {"real": {"share": 0.9, "n": 8, "per_class": per_class(1.0, 0.8), "feature_distance": judge(0.5)}}

def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def fake_run(tmp_path, generator="dit", task="image", scales=(1.0, 4.0), judged=True):
    """A run folder, its extraction and eval/'s files, as the steps write them."""
    run, data, metrics = tmp_path / "run", tmp_path / "latents", tmp_path / "eval"
    write(data / "manifest.json", {"settings": {"source": "embedded", "split": "train", "resolution": 64, "frames": 1,
                                                "augmentation": "original + horizontal flip"},
                                   "source_items": 1024, "rows": 2048, "extract_seconds": 30.0})
    write(run / "summary.json", {"generator": generator, "task": task, "steps": 100, "train_seconds": 120.0,
                                 "data": str(data), "tokenizer": "/tok", "tokenizer_sha256": "ab" * 32,
                                 "parameters": 1000, "threads": 2, "precision": "bf16", "final": str(run / "final"),
                                 "config": {"train": {"steps": 100}}})
    folders = {guidance_key(g): {"folder": str(run / "samples" / guidance_key(g)), "grid": "g.png", "guidance_scale": g,
                                 "n": 8, "seconds": 5.0, "sha256": f"{g:g}" * 64} for g in scales}
    write(run / "samples" / "samples.json", {"generator": generator, "scale": "small", "classes": [0, 1],
                                             "per_class": 4, "seed": 0, "batch_size": 8, "model_sha256": "cd" * 32,
                                             "sampling": {"sampler": "ddpm"}, "folders": folders})
    for g in scales:
        write(metrics / f"samples_{guidance_key(g)}.json", {
            "metrics": sample_metrics(fid=10.0 / g), "eval_seconds": 2.0,
            "samples_sha256": f"{g:g}" * 64, "n_samples": 8})
    if judged:
        rows = [{"guidance_scale": g, "share": g / 10, "mean_probability": 0.5, "feature_distance": judge(1 / g),
                 "samples_sha256": f"{g:g}" * 64, "per_class": per_class(g / 10, g / 10)} for g in scales]
        write(metrics / "class_consistency.json", {
            "metrics": {"class_consistency": rows, "classifier_accuracy": 0.98, "chance": 0.5,
                        "rises_with_guidance": True, "references": REFERENCES, "references_per_class": 4,
                        "feature_space": {"dim": 32}},
            "eval_seconds": 3.0})
        write(metrics / "novelty.json", {
            "metrics": {"novelty": [{"guidance_scale": g, "n": 8, "samples_sha256": f"{g:g}" * 64,
                                     "latent": {"nearer_than_fresh": g / 100},
                                     "judge": {"nearer_than_fresh": g / 50}} for g in scales],
                        "training_rows": 2048, "fresh_items": "fresh crops", "fresh_per_class": 32,
                        "latent_space": "KL", "judge_space": "judge"},
            "eval_seconds": 1.0})
    return run, metrics


@pytest.mark.parametrize("generator", ["lm", "dit"])
def test_report_joins_each_guidance_folder_with_its_metrics_and_judge_rows(tmp_path, generator):
    run, metrics = fake_run(tmp_path, generator)
    report = generation_report.build_report(run, metrics, "small")
    assert sorted(report["metrics"]) == ["cfg1", "cfg4"] and report["generator"] == generator
    four = report["metrics"]["cfg4"]
    assert four["guidance_scale"] == 4.0 and four["fid"]["value"] == 2.5 and four["class_consistency"] == 0.4
    assert four["judge_features"] == judge(0.25) and len(four["class_consistency_per_class"]) == 2
    assert report["classifier"] == {"classifier_accuracy": 0.98, "chance": 0.5, "rises_with_guidance": True}
    assert report["references"] == REFERENCES and report["references_per_class"] == 4
    assert four["novelty"] == {"latent": {"nearer_than_fresh": 0.04}, "judge": {"nearer_than_fresh": 0.08}}
    assert report["novelty"]["training_rows"] == 2048 and report["novelty"]["fresh_items"] == "fresh crops"
    assert report["wall_seconds"] == {"extraction": 30.0, "training": 120.0, "sampling": 10.0, "evaluation": 8.0}
    assert report["data"]["items"] == 1024 and report["precision"] == "bf16" and "folders" not in report["sampling"]


def test_report_of_an_unconditional_run_needs_no_judge_and_refuses_what_is_not_a_generator(tmp_path):
    run, metrics = fake_run(tmp_path, "lm", "frames", scales=(1.0,), judged=False)
    summary = json.loads((run / "summary.json").read_text())
    write(run / "samples" / "samples.json", {**json.loads((run / "samples" / "samples.json").read_text()),
                                             "classes": [0]})
    report = generation_report.build_report(run, metrics, "small")
    assert report["classifier"] is None and report["metrics"]["cfg1"]["class_consistency"] is None
    write(run / "summary.json", {k: v for k, v in summary.items() if k != "generator"})
    with pytest.raises(ValueError, match="not a generator's training summary"):
        generation_report.build_report(run, metrics, "small")


def test_a_class_conditional_report_without_the_judge_is_a_clear_error(tmp_path):
    run, metrics = fake_run(tmp_path, judged=False)
    with pytest.raises(SystemExit, match="class_consistency.json: not found"):
        generation_report.main(["--run", str(run), "--metrics", str(metrics), "--scale", "small",
                                "--out", str(tmp_path / "r.json")])
    run, metrics = fake_run(tmp_path / "n")
    (metrics / "novelty.json").unlink()
    with pytest.raises(SystemExit, match="novelty.json: not found; a class-conditional generator's report needs"):
        generation_report.main(["--run", str(run), "--metrics", str(metrics), "--scale", "small",
                                "--out", str(tmp_path / "r.json")])
    run, metrics = fake_run(tmp_path / "x")
    (metrics / "samples_cfg4.json").unlink()
    with pytest.raises(SystemExit, match="samples_cfg4.json: not found"):
        generation_report.main(["--run", str(run), "--metrics", str(metrics), "--scale", "small",
                                "--out", str(tmp_path / "r.json")])


def test_figures_of_other_samples_or_another_scale_are_refused(tmp_path):
    """An LM run's report given a DiT's eval folder had taken the DiT's FID and class consistency; --scale paper on a
    run sampled at small had been recorded as paper."""
    run, metrics = fake_run(tmp_path / "lm", "lm")
    _, other = fake_run(tmp_path / "dit", "dit")
    fidelity = json.loads((other / "samples_cfg4.json").read_text())
    write(other / "samples_cfg4.json", {**fidelity, "samples_sha256": "ef" * 32})  # the DiT's own samples
    with pytest.raises(SystemExit, match=r"samples_cfg4.json: scores samples efefefefefef\.\.\., not .*lm/run/samples"):
        generation_report.main(["--run", str(run), "--metrics", str(other), "--scale", "small",
                                "--out", str(tmp_path / "r.json")])
    for step, row, folder in (("class_consistency", 1, "cfg4"), ("novelty", 0, "cfg1")):  # a row of other samples
        run, metrics = fake_run(tmp_path / step, "lm")
        scored = json.loads((metrics / f"{step}.json").read_text())
        scored["metrics"][step][row]["samples_sha256"] = "ef" * 32
        write(metrics / f"{step}.json", scored)
        with pytest.raises(ValueError, match=rf"{step}.json: scores samples efefef.*{folder}/"):
            generation_report.build_report(run, metrics, "small")
    run, metrics = fake_run(tmp_path / "again", "lm")
    with pytest.raises(SystemExit, match=r"samples.json: these samples were drawn at scale 'small', not 'paper'; "
                                         r"give --scale small"):
        generation_report.main(["--run", str(run), "--metrics", str(metrics), "--scale", "paper",
                                "--out", str(tmp_path / "r.json")])
    assert not (tmp_path / "r.json").exists()
    write(metrics / "frame_prediction.json", {"metrics": {}, "pipeline_sha256": "01" * 32})
    with pytest.raises(ValueError, match=r"frame_prediction.json: scores the model 010101010101\.\.\., not the one"):
        generation_report.build_report(run, metrics, "small")
    write(metrics / "frame_prediction.json", {"metrics": {}, "pipeline_sha256": "cd" * 32, "eval_seconds": 1.0})
    report = generation_report.build_report(run, metrics, "small")
    assert report["metrics"]["cfg4"]["n_samples"] == 8 and report["wall_seconds"]["evaluation"] == 9.0


def test_the_report_joins_by_guidance_key_and_writes_only_a_file_its_readers_read(tmp_path):
    """The report had joined eval/'s rows by comparing floats and written whatever the steps gave, so that a field a
    step left out became an empty table cell later."""
    run, metrics = fake_run(tmp_path, "lm", scales=(1.0, 1.5))
    out = tmp_path / "results" / "small" / "lm_imagenet.json"
    generation_report.main(["--run", str(run), "--metrics", str(metrics), "--scale", "small", "--out", str(out)])
    result = read_result(out)
    assert result.schema_version == SCHEMA_VERSION == json.loads(out.read_text())["schema_version"]
    assert sorted(result.metrics) == ["cfg1", "cfg1.5"] and result.metrics["cfg1.5"].class_consistency == 0.15
    assert result.metrics["cfg1.5"].novelty.latent.nearer_than_fresh == 0.015 and result.wall_seconds.total == 168.0
    scored = json.loads((metrics / "novelty.json").read_text())
    for row in scored["metrics"]["novelty"]:  # as an earlier version of eval.novelty wrote its rows
        row["guidance"] = row.pop("guidance_scale")
    write(metrics / "novelty.json", scored)
    with pytest.raises(SystemExit, match=r"novelty.json: row 0 holds no guidance_scale \(written by an earlier "
                                         r"version of the step that wrote it\); run that step again"):
        generation_report.main(["--run", str(run), "--metrics", str(metrics), "--scale", "small", "--out", str(out)])
    run, metrics = fake_run(tmp_path / "other", "lm")
    fidelity = json.loads((metrics / "samples_cfg4.json").read_text())
    del fidelity["metrics"]["kid"]  # a step that wrote less than the result holds
    write(metrics / "samples_cfg4.json", fidelity)
    out.unlink()
    with pytest.raises(SystemExit, match=r"lm_imagenet.json: metrics\['cfg4'\] of a image generator holds no kid; "
                                         r"the steps' files in --run and --metrics are not all of this version"):
        generation_report.main(["--run", str(run), "--metrics", str(metrics), "--scale", "small", "--out", str(out)])
    assert not out.exists()
