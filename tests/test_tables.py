"""Evaluation CLI and table builder (issue 5), end to end on a tiny run."""
import json

import pytest

from eval import experiments, tables, tokenizer_eval
from shared.data.embedded import load_video
from tokenizer.train import run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    stages = [dict(name="image", quantizer="vq", steps=2, pattern="iv", resolutions=[32], batch_size_image=2,
                   batch_size_video=1, warmup_steps=1), dict(name="joint", quantizer="vq", init_from="image", steps=2,
                   pattern="iv", resolutions=[32], batch_size_image=2, batch_size_video=1, warmup_steps=1)]
    run("tiny", root / "runs" / "tiny" / "tokenizer", results=root / "results" / "tiny" / "tokenizer.json",
        stages=stages, loss={"perceptual_weight": 0.0})
    return root


@pytest.mark.slow
def test_eval_writes_labelled_results_and_tables_show_them(tiny_run, capsys):
    out = tiny_run / "results" / "tiny" / "eval" / "tokenizer" / "joint.json"
    argv = ["--model", str(tiny_run / "runs" / "tiny" / "tokenizer" / "joint" / "final"), "--scale", "tiny",
            "--resolution", "32", "--frames", "9", "--limit", "4", "--batch-size", "2", "--allow-random-features",
            "--feature-cache", str(tiny_run / "feature_cache")]
    tokenizer_eval.main(argv + ["--out", str(tiny_run / "first.json")])
    tokenizer_eval.main(argv + ["--out", str(out)])
    first, rec = json.loads((tiny_run / "first.json").read_text()), json.loads(out.read_text())
    # the second evaluation takes the inputs' features from the cache, and gets the same numbers
    assert [first["metrics"][k]["real_features_cached"] for k in ("image", "video")] == [0, 0]
    assert [rec["metrics"][k]["real_features_cached"] for k in ("image", "video")] == [2, 2]
    assert rec["metrics"]["image"]["rfid"] == first["metrics"]["image"]["rfid"]
    assert rec["metrics"]["video"]["rfvd"] == first["metrics"]["video"]["rfvd"]
    image, video = rec["metrics"]["image"], rec["metrics"]["video"]
    assert image["items"] == 4 and video["frames"] == 4 * 9
    assert image["bicubic"]["same_numbers"]["psnr"] > 0 and "same_bits" in video["bicubic"]  # issue 13, item 1
    assert "RANDOM-INIT" in image["rfid"]["network"] and "RANDOM-INIT" in video["rfvd"]["network"]
    assert image["rfid"]["n"] == [4, 4] and not image["rfid"]["full_rank_covariance"] and video["rfvd"]["dim"] == 400
    assert "RANDOM-INIT vgg16-imagenet" in image["lpips"]["network"] and 0 < image["lpips"]["value"]
    assert rec["scale"] == "tiny" and rec["checkpoint_sha256"] and rec["eval_seconds"] > 0 and "git_commit" in rec

    built = tables.build("tiny", tiny_run / "results", tiny_run)
    md = (tiny_run / "TABLES.md").read_text()
    assert all(f"## Table {n}:" in md for n in range(1, 11))
    assert "| Ours-VQVAE | ImageNet | 32x32 | 8192 | 1.11 |" in md  # the paper's row
    vq_row = built[1]["ours"][0]
    assert vq_row[2] == f"{image['rfid']['value']:.2f}" and "RANDOM-INIT network" in vq_row[1] and vq_row[6] == "tiny"
    stages = json.loads((tiny_run / "results" / "tiny" / "tokenizer.json").read_text())["stages"]
    behind = stages["image"]["wall_seconds"] + stages["joint"]["wall_seconds"]  # joint starts from image
    assert vq_row[7] == f"{(behind + rec['eval_seconds']) / 60:.1f} ({rec['threads']} thr.)"
    assert built[1]["ours"][1][2] == "not run"  # no VAE evaluated here
    assert "not run (make lm-imagenet SCALE=tiny)" in md and "not run (make latte-ucf SCALE=tiny)" in md
    assert "not run (the tiny config has no variant 'spatial_plain')" in md  # tiny has no ablation variants
    assert "## Do our ablations point the same way as the paper's?" in md
    assert (tiny_run / "tables.csv").read_text().count("\n") > 60


@pytest.mark.slow
def test_eval_without_feature_weights_is_a_clear_error(tiny_run):
    with pytest.raises(RuntimeError, match="(vgg16-imagenet|inception-v3-fid): no weights"):
        tokenizer_eval.main(["--model", str(tiny_run / "runs" / "tiny" / "tokenizer" / "joint" / "final"),
                             "--out", str(tiny_run / "x.json"), "--resolution", "32", "--limit", "2",
                             "--feature-cache", ""])
    assert not (tiny_run / "x.json").exists()


@pytest.mark.slow
def test_eval_keeps_finished_parts_and_checks_arguments_first(tiny_run, tmp_path):
    """Issue 12, item 4: a bad video split costs only the video part; a bad frame count costs nothing."""
    from shared.data import DataError

    from .conftest import write_avi

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "eval.json"
    argv = ["--model", str(tiny_run / "runs" / "tiny" / "tokenizer" / "joint" / "final"), "--out", str(out),
            "--resolution", "32", "--frames", "5", "--limit", "2", "--batch-size", "2", "--allow-random-features",
            "--feature-cache", "", "--videos", str(videos), "--video-layout", "plain"]
    with pytest.raises(ValueError, match=r"1 \+ k\*4 frames"):
        tokenizer_eval.main([*argv[:-4], "--frames", "16"])
    assert not list(tmp_path.glob("eval.json*"))  # nothing was evaluated before the check
    with pytest.raises(DataError, match="broken.mp4"):
        tokenizer_eval.main(argv)
    partial = json.loads((tmp_path / "eval.json.partial.json").read_text())
    assert list(partial["metrics"]) == ["image"] and not out.exists()
    (videos / "broken.mp4").unlink()
    real = load_video("carphone", 48).permute(1, 2, 3, 0).numpy()
    for i in range(2):
        write_avi(videos / f"good{i}.avi", real[i * 12 : i * 12 + 12, :, : real.shape[2] // 2 * 2])
    tokenizer_eval.main(argv)
    final = json.loads(out.read_text())
    assert final["metrics"]["image"] == partial["metrics"]["image"] and "rfvd" in final["metrics"]["video"]
    assert not (tmp_path / "eval.json.partial.json").exists()


def test_ablation_directions_compare_winners_with_the_paper(tmp_path):
    from eval import ablations

    results = tmp_path / "small"

    def result(run, stage, rfid, psnr):
        f = results / "eval" / run / f"{stage}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"metrics": {"image": {"rfid": {"value": rfid}, "psnr": psnr}}}))

    result("tokenizer_spatial_plain", "image", 2.0, 18.0)  # Table 8, paper: window 1.28 beats plain 1.55
    result("tokenizer_spatial_window", "image", 1.0, 19.0)
    result("tokenizer", "image", 1.0, 18.5)  # Table 7 image-only, paper: fixed 1.28 beats multi 1.44
    result("tokenizer_image_multi", "image", 0.5, 18.0)
    rows = {r[1]: r for r in ablations.compare(results)}
    spatial = rows["spatial attention: plain vs window, rFID"]
    assert spatial[2] == "plain 1.55 vs window 1.28: window better by 17 %"
    assert spatial[3] == "plain 2.00 vs window 1.00: window better by 50 %" and spatial[4] == "yes"
    assert spatial[5] == "plain 18.00 vs window 19.00: window better by 1.00"
    image = rows["image-only: fixed vs multi-resolution, rFID"]
    assert image[4] == "no" and image[5].endswith("fixed better by 0.50")
    assert rows["temporal attention: plain vs causal, rFVD"][2:5] == [
        "plain 26.43 vs causal 25.97: causal better by 2 %", "not run", ""]
    assert len(rows) == len(ablations.COMPARISONS)  # every comparison finds its paper numbers


def test_the_experiment_list_drives_make_rules_and_comparisons():
    rules = experiments.make_rules("small").splitlines()
    assert "results/small/eval/tokenizer_video_fixed/video.json" in rules[0].split()
    # a run that starts from another run's stage waits for it; independent runs do not
    assert "results/small/tokenizer_kl_vq.json: | results/small/tokenizer.json" in rules
    assert not any(line.startswith("results/small/tokenizer_video_fixed.json") for line in rules)
    tiny = experiments.make_rules("tiny").splitlines()
    assert tiny[1:] == []  # tiny has no variants
    assert "results/tiny/dit_imagenet.json" in tiny[0].split()  # a generator row's result is an input
    for table, _, _, split, side_a, side_b in experiments.COMPARISONS:
        assert experiments.row(table, side_a[2], split) != experiments.row(table, side_b[2], split)
    with pytest.raises(KeyError, match="eval/experiments.py"):
        experiments.row(1, "nobody", "image")


def test_generation_rows_show_each_guidance_scale_with_class_consistency(tmp_path):
    results = tmp_path / "small"
    results.mkdir()
    fid = lambda v: {"value": v, "n": [64, 18], "dim": 2048, "network": "inception-v3-fid (RANDOM-INIT seed 0)"}  # noqa: E731
    (results / "dit_imagenet.json").write_text(json.dumps({
        "metrics": {"cfg4.0": {"guidance_scale": 4.0, "fid": fid(80.5), "inception_score": {"mean": 3.1, "std": 0.1},
                               "precision": 0.5, "recall": 0.25, "class_consistency": 0.9},
                    "cfg1.0": {"guidance_scale": 1.0, "fid": fid(90.25), "inception_score": {"mean": 2.0, "std": 0.1},
                               "precision": 0.4, "recall": 0.5, "class_consistency": 0.4}},
        "classifier": {"classifier_accuracy": 0.95, "chance": 1 / 12},
        "data": {"source": "embedded", "resolution": 64}, "scale": "small", "threads": 2,
        "wall_seconds": {"extraction": 30, "training": 500, "sampling": 60, "evaluation": 10}}))
    rows = tables._generation_rows(results, next(r for r in experiments.GENERATION_ROWS if r.name == "dit_imagenet"))
    assert [r[1] for r in rows] == ["1.0", "4.0"]  # ordered by guidance
    assert rows[0][3] == "90.25" and rows[1][4] == "3.10" and rows[1][5] == "0.50 / 0.25"
    assert rows[1][6] == "90%; classifier 95%, chance 8%" and "RANDOM-INIT network" in rows[0][2]
    assert rows[0][9] == "10.0 (2 thr.)"
    missing = tables._generation_rows(results, experiments.GENERATION_ROWS[0])
    assert missing[0][3] == "not run (make lm-imagenet SCALE=small)"
