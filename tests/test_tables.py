"""Evaluation CLI and table builder, end to end on a tiny run."""
import json
from pathlib import Path

import pytest

from eval import experiments, tables, tokenizer_eval
from eval.generator_result import ResultError
from shared.paths import seeded
from shared.data.embedded import load_video
from tokenizer.train import run

from .generator_results import guidance_entry, judge, per_class, write_result

REPO_ROOT = Path(__file__).resolve().parents[1]


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
def test_eval_writes_labelled_results_and_tables_show_them(tiny_run, capsys, monkeypatch):
    from eval import image_fidelity, video_fidelity

    out = tiny_run / "results" / "tiny" / "eval" / "tokenizer" / "joint.json"
    argv = ["--model", str(tiny_run / "runs" / "tiny" / "tokenizer" / "joint" / "final"), "--scale", "tiny",
            "--resolution", "32", "--frames", "9", "--limit", "4", "--batch-size", "2", "--allow-random-features",
            "--feature-cache", str(tiny_run / "feature_cache")]
    # 4 items against 2048 / 400 feature dimensions: the Fréchet distances are not computed
    tokenizer_eval.main(argv + ["--out", str(tiny_run / "skipped.json")])
    skipped = json.loads((tiny_run / "skipped.json").read_text())["metrics"]
    for kind, name, d in (("image", "rfid", 2048), ("video", "rfvd", 400)):
        assert skipped[kind][name]["value"] is None and skipped[kind][name]["dim"] == d
        assert skipped[kind][name]["not_computed"] == f"4 items <= {d} feature dimensions"
        assert skipped[kind]["real_features_cached"] == 0 and skipped[kind]["psnr"] > 0
    # as if the networks were 3 features wide, they are computed (and their inputs' features cached)
    monkeypatch.setattr(image_fidelity.InceptionFeatures, "dim", 3)
    monkeypatch.setitem(video_fidelity.FEATURE_DIMS, "videogpt", 3)
    tokenizer_eval.main(argv + ["--out", str(tiny_run / "first.json")])
    tokenizer_eval.main(argv + ["--out", str(out)])
    first, rec = json.loads((tiny_run / "first.json").read_text()), json.loads(out.read_text())
    assert skipped["image"]["psnr"] == rec["metrics"]["image"]["psnr"]
    # the second evaluation takes the inputs' features from the cache, and gets the same numbers
    assert [first["metrics"][k]["real_features_cached"] for k in ("image", "video")] == [0, 0]
    assert [rec["metrics"][k]["real_features_cached"] for k in ("image", "video")] == [2, 2]
    assert rec["metrics"]["image"]["rfid"] == first["metrics"]["image"]["rfid"]
    assert rec["metrics"]["video"]["rfvd"] == first["metrics"]["video"]["rfvd"]
    image, video = rec["metrics"]["image"], rec["metrics"]["video"]
    assert image["items"] == 4 and video["frames"] == 4 * 9
    assert image["bicubic"]["same_numbers"]["psnr"] > 0 and "same_bits" in video["bicubic"]
    assert "RANDOM-INIT" in image["rfid"]["network"] and "RANDOM-INIT" in video["rfvd"]["network"]
    assert image["rfid"]["n"] == [4, 4] and not image["rfid"]["full_rank_covariance"] and video["rfvd"]["dim"] == 400
    assert "RANDOM-INIT vgg16-imagenet" in image["lpips"]["network"] and 0 < image["lpips"]["value"]
    assert rec["scale"] == "tiny" and rec["checkpoint_sha256"] and rec["eval_seconds"] > 0 and "git_commit" in rec

    built = tables.build("tiny", tiny_run / "results", tiny_run)
    md = (tiny_run / "TABLES.md").read_text()
    assert all(f"## Table {n}:" in md for n in range(1, 11))
    assert "| Ours-VQVAE | ImageNet | 32x32 | 8192 | 1.11 |" in md  # the paper's row
    vq_row = built[1]["ours"][0]
    # 4 items against 2048 features: the rFID is not reported; PSNR is, beside its bicubic baseline
    assert vq_row[2] == "not reported: n=4 items <= d=2048 features, the covariance is rank-deficient"
    assert "RANDOM-INIT network" in vq_row[1] and vq_row[7] == "tiny"
    assert vq_row[5] == f"{image['block_edge']:.2f} ({image['block_edge_input']:.2f}; {image['bicubic']['8x']['block_edge']:.2f})"
    assert vq_row[3] == f"{image['psnr']:.2f} (bicubic {image['bicubic']['same_numbers']['psnr']:.2f})"
    stages = json.loads((tiny_run / "results" / "tiny" / "tokenizer.json").read_text())["stages"]
    behind = stages["image"]["wall_seconds"] + stages["joint"]["wall_seconds"]  # joint starts from image
    assert vq_row[8] == f"{(behind + rec['eval_seconds']) / 60:.1f} ({rec['threads']} thr.)"
    assert built[1]["ours"][1][2] == "not run"  # no VAE evaluated here
    assert "not run (make lm-imagenet SCALE=tiny)" in md and "not run (make latte-ucf SCALE=tiny)" in md
    assert "not run (the tiny config has no variant 'spatial_plain')" in md  # tiny has no ablation variants
    assert "## Do our ablations point the same way as the paper's?" in md and "Welch's t-test" in md
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
    """a bad video split costs only the video part; a bad frame count costs nothing."""
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


def _write_eval(results, run, stage, rfid, psnr, ssim=0.5, full_rank=True, split="image"):
    f = results / "eval" / run / f"{stage}.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    metric = "rfid" if split == "image" else "rfvd"
    f.write_text(json.dumps({"metrics": {split: {metric: {"value": rfid, "n": [300, 300], "dim": 192,
                                                           "full_rank_covariance": full_rank},
                                                  "psnr": psnr, "ssim": ssim}}}))


def test_ablation_verdicts_are_gated_by_the_spread_over_seeds(tmp_path):
    from eval import ablations

    results = tmp_path / "small"
    # Table 8, paper: window (1.28) beats plain (1.55). Ours: window clearly better on PSNR over 3 seeds each
    for k, (plain, window) in enumerate([(18.0, 19.0), (18.1, 19.2), (17.9, 19.1)]):
        _write_eval(results, seeded("tokenizer_spatial_plain", k), "image", 2.0 + k, plain, ssim=0.5 + 0.01 * k)
        _write_eval(results, seeded("tokenizer_spatial_window", k), "image", 1.0 + 2 * k, window, ssim=0.51 - 0.01 * k)
    # Table 7 image-only, paper: fixed (1.28) beats multi (1.44). Ours: one seed each -> no call
    _write_eval(results, "tokenizer", "image", 1.0, 18.5)
    _write_eval(results, "tokenizer_image_multi", "image", 0.5, 18.0, full_rank=False)
    rows = {r["comparison"]: r for r in ablations.compare(results)}
    spatial = rows["spatial attention: plain vs window, rFID"]
    assert spatial["cells"][2] == "plain 1.55 vs window 1.28: window better by 17 %"
    assert spatial["cells"][3] == "plain 3.00 ± 1.00 (3 seeds) vs window 3.00 ± 2.00 (3 seeds)"
    assert spatial["verdicts"] == {"rfid": "within noise", "psnr": "paper's way", "ssim": "within noise"}
    image = rows["image-only: fixed vs multi-resolution, rFID"]
    assert image["cells"][3].startswith("not reported: n=300 items <= d=192") and "rfid" not in image["verdicts"]
    assert image["verdicts"]["psnr"] == "one seed" and image["cells"][5] == "fixed 18.50 vs multi 18.00"
    assert rows["temporal attention: plain vs causal, rFVD"]["cells"][3] == "not run"
    assert len(rows) == len(ablations.COMPARISONS)  # every comparison finds its paper numbers
    findings = "\n".join(ablations.findings(list(rows.values())))
    assert "Hold beyond noise" in findings and "  - Table 8, spatial attention: plain vs window: image PSNR plain " \
        "18.00 ± 0.10 (3 seeds) vs window 19.10 ± 0.10 (3 seeds) dB" in findings
    assert "Not decided" in findings and "Reversed" not in findings


def test_noise_rule_follows_welch_and_needs_two_seeds():
    from eval.seeds import Seeds, call, verdict

    a, b = Seeds([1.0, 1.1, 0.9]), Seeds([2.0, 2.1, 1.9])  # far apart for their spread: p ~ 1e-4
    assert call(a, b, higher_is_better=True) == "b" and call(a, b, higher_is_better=False) == "a"
    assert verdict(a, b, True, paper_better="b") == "paper's way" and verdict(a, b, True, "a") == "opposite"
    close = Seeds([1.0, 2.0, 1.5])  # mean 1.5 vs 1.0, spread 0.5: Welch p ~ 0.24
    assert verdict(a, close, True, "b") == "within noise"
    assert verdict(Seeds([1.0]), b, True, "b") == "one seed"
    assert Seeds([1.0, 3.0]).std == pytest.approx(2 ** 0.5) and Seeds([2.5]).text(".2f") == "2.50"


def test_seeded_runs_find_their_files_and_the_readme_block_is_rewritten(tmp_path):
    from eval.seeds import seed_files

    results = tmp_path / "small"
    for name in ("tokenizer", "tokenizer_seed2", "tokenizer_seed1", "tokenizer_seedless", "tokenizer_image_multi_seed1"):
        _write_eval(results, name, "image", 1.0, 18.0)
    row = experiments.row(7, "Ours-Image (Fix)", "image")
    assert [(k, f.parent.name) for k, f in seed_files(results, row)] == [
        (0, "tokenizer"), (1, "tokenizer_seed1"), (2, "tokenizer_seed2")]
    assert [k for k, _ in seed_files(results, row, seeds=[1, 2])] == [1, 2]  # eval.tables --seeds 1,2
    with pytest.raises(SystemExit):
        tables.main(["--seeds", "0,one"])
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + tables.README_BEGIN + "\nstale figures\n" + tables.README_END + "\nrest\n")
    from eval import ablations
    tables.write_findings(readme, "small", ablations.compare(results), results)
    text = readme.read_text()
    assert text.startswith("intro\n<!-- ablation findings") and text.endswith(tables.README_END + "\nrest\n")
    assert "stale figures" not in text and "Not decided" in text and "Welch" in text
    assert "<!-- measured: scale small; machine" in text


def test_the_experiment_list_drives_make_rules_and_comparisons():
    rules = experiments.make_rules("small").splitlines()
    assert "results/small/eval/tokenizer_video_fixed/video.json" in rules[0].split()
    # a run that starts from another run's stage waits for it; independent runs do not
    assert "results/small/tokenizer_kl_vq.json: | results/small/tokenizer.json" in rules
    assert not any(line.startswith("results/small/tokenizer_video_fixed.json") for line in rules)
    # with seeds, every run has a copy per seed, and a seed's variant waits for the default run of that seed
    seeds = experiments.make_rules("small", seeds=3).splitlines()
    inputs = seeds[0].split()
    assert {"results/small/eval/tokenizer_seed2/joint.json", "results/small/eval/tokenizer_video_fixed_seed1/video.json",
            "results/small/eval/tokenizer_kl_vq_seed2/vq.json"} <= set(inputs)
    assert len([f for f in inputs if "/eval/" in f]) == 3 * len([f for f in rules[0].split() if "/eval/" in f])
    assert "results/small/tokenizer_kl_vq_seed2.json: | results/small/tokenizer_seed2.json" in seeds
    assert not any(line.startswith("results/small/tokenizer_video_fixed_seed1.json") for line in seeds)
    # the Makefile's pattern rule trains a run from its name: variant and seed
    from shared.paths import tokenizer_run_parts
    assert tokenizer_run_parts("tokenizer_video_fixed_seed1") == ("video_fixed", 1)
    assert tokenizer_run_parts("tokenizer_seed12") == (None, 12) and tokenizer_run_parts("tokenizer") == (None, 0)
    assert tokenizer_run_parts("tokenizer_kl_vq") == ("kl_vq", 0) and tokenizer_run_parts("tokenizer_x_seed01") == ("x_seed01", 0)
    for variant, seed in [(None, 0), ("kl_vq", 3), ("image_multi", 0)]:
        assert tokenizer_run_parts(seeded(experiments.VARIANT(variant), seed)) == (variant, seed)
    tiny = experiments.make_rules("tiny").splitlines()
    assert tiny[1:] == []  # tiny has no variants
    assert "results/tiny/dit_imagenet.json" in tiny[0].split()  # a generator row's result is an input
    for table, _, _, split, side_a, side_b in experiments.COMPARISONS:
        assert experiments.row(table, side_a[2], split) != experiments.row(table, side_b[2], split)
    with pytest.raises(KeyError, match="eval/experiments.py"):
        experiments.row(1, "nobody", "image")


def make_dry_run(*args: str) -> str:
    """What `make -n` (the venv taken as built: -o its stamp) would run for these arguments, in the repository."""
    import subprocess

    done = subprocess.run(["make", "-n", "-o", ".venv/.stamp", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_makefile_has_a_generator_target_for_each_generation_row(tmp_path):
    """make -n: each row's target runs its generator's chain into the row's result file, and the Makefile has no
    generator target without a row."""
    import re

    def dry_run(target: str, *extra: str) -> str:
        recipe = make_dry_run(target, "SCALE=tiny", f"RESULTS={tmp_path}", *extra)
        return " ".join(recipe.replace("\\\n", " ").split())

    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = dict(re.findall(r"^([a-z0-9-]+): \$\(RESULTS\)/(\w+)\.json$", makefile, re.M))
    assert targets == {row.target: row.name for row in experiments.GENERATION_ROWS}
    for row in experiments.GENERATION_ROWS:
        recipe = dry_run(row.target)
        assert f"tokenizer.train --scale tiny --out runs/tiny/tokenizer --results {tmp_path}/tokenizer.json" in recipe
        assert f"eval.sample_metrics --kind {row.kind} --record runs/tiny/{row.name}/samples" in recipe
        assert f"eval.generation_report --run runs/tiny/{row.name} --metrics {tmp_path}/eval/{row.name} " \
               f"--scale tiny --out {tmp_path}/{row.name}.json" in recipe
        # frame prediction is unconditional: scored by eval.frame_prediction, not by a class judge
        assert ("eval.frame_prediction" in recipe) == (row.name == "lm_k600")
        assert ("eval.class_consistency" in recipe) == ("eval.novelty" in recipe) == (row.name != "lm_k600")
        if row.name.startswith("lm_"):
            assert f"lm_generation.extract_codes --tokenizer runs/tiny/tokenizer/joint/final --{row.data} embedded" \
                in recipe
        else:
            assert f"diffusion_generation.extract_latents --scale tiny --experiment {row.name.split('_')[0]} " \
                   "--tokenizer runs/tiny/tokenizer/kl/final" in recipe
    # a user's folder reaches extraction, the reference and the judge
    recipe = dry_run("latte-ucf", "DATA_VIDEOS=/data/ucf")
    assert "--set data.source=/data/ucf" in recipe and "--reference /data/ucf --video-layout ucf101" in recipe
    assert "--videos /data/ucf --video-layout ucf101 --out" in recipe
    # TOKENIZER= names the tokenizer run: `make tokenizer` trains there, the generators read its models and train
    # it first only where the model they read is missing
    tokenizer = tmp_path / "my_tokenizer"
    (tokenizer / "joint" / "final").mkdir(parents=True)
    (tokenizer / "joint" / "final" / "config.json").write_text("{}")
    assert f"tokenizer.train --scale tiny --out {tokenizer} " in dry_run("tokenizer", f"TOKENIZER={tokenizer}")
    recipe = dry_run("lm-imagenet", f"TOKENIZER={tokenizer}")
    assert "tokenizer.train" not in recipe and f"extract_codes --tokenizer {tokenizer}/joint/final " in recipe
    recipe = dry_run("dit-imagenet", f"TOKENIZER={tokenizer}")
    assert f"tokenizer.train --scale tiny --out {tokenizer} " in recipe
    assert f"extract_latents --scale tiny --experiment dit --tokenizer {tokenizer}/kl/final" in recipe


def test_make_bench_with_a_reference_checkout_installs_the_references_extra_whole():
    """make -n bench with a reference checkout: the install of the extra `references` is one command, not cut at the
    comma of '.[dev,references]' (inside $(if) a comma splits the branches)."""
    recipe = make_dry_run("bench", "DIT_REPO=/nowhere/DiT")
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert installs == [".venv/bin/pip install --quiet -e '.[dev,references]'"]
    assert "--dit-repo /nowhere/DiT" in recipe
    assert "pip install" not in make_dry_run("bench")


def test_a_seeded_variant_starts_from_the_default_run_of_its_seed():
    import dataclasses

    from tokenizer.train_config import train_config

    cfg = train_config("small")
    assert cfg.variants["kl_vq"][0].init_from == "tokenizer/image"  # <run>/<stage>: no folder in the config
    # the other run's model is in the folder beside the run's own
    assert [s.init_from for s in cfg.stage_list("kl_vq", "runs/small")] == ["runs/small/tokenizer/image/final", "kl"]
    assert cfg.stage_list("kl_vq", "/elsewhere")[0].init_from == "/elsewhere/tokenizer/image/final"
    seed2 = dataclasses.replace(cfg, seed=2)
    assert [s.init_from for s in seed2.stage_list("kl_vq", "runs/small")] == \
        ["runs/small/tokenizer_seed2/image/final", "kl"]
    # stages of the same run: unchanged
    assert [s.init_from for s in seed2.stage_list(None, "runs/small")] == [None, "image", "joint"]


def test_only_our_own_runs_have_seeded_copies_and_bad_references_are_refused(tmp_path):
    import dataclasses

    import yaml

    from shared.config import ConfigError
    from tokenizer.train_config import train_config

    raw = yaml.safe_load(open("tokenizer/configs/tiny.yaml"))
    stage = {"name": "joint", "quantizer": "vq", "steps": 1, "pattern": "i", "resolutions": [32]}

    def config(name: str, **variants):
        raw["train"]["variants"] = {k: [{**stage, "init_from": v} if v else stage] for k, v in variants.items()}
        (tmp_path / name).write_text(yaml.safe_dump(raw))
        return tmp_path / name

    cfg = dataclasses.replace(train_config(str(config("ok.yaml", from_elsewhere="/data/release/omni/final",
                                                      from_folder="models/final", from_ours="tokenizer/image"))),
                              seed=1)
    assert cfg.stage_list("from_elsewhere", "runs/tiny")[0].init_from == "/data/release/omni/final"  # used as is
    assert cfg.stage_list("from_folder", "runs/tiny")[0].init_from == "models/final"  # not a tokenizer run's name
    assert cfg.stage_list("from_ours", "runs/tiny")[0].init_from == "runs/tiny/tokenizer_seed1/image/final"
    for bad, why in [("tokenizer/imag", "run 'tokenizer' has no stage 'imag'"),
                     ("tokenizer_nope/image", "no variant 'nope'"),
                     ("tokenizer_seed1/image", "without a seed")]:
        with pytest.raises(ConfigError, match=f"bad.yaml.*variant 'v' stage 'joint' starts from '{bad}': .*{why}"):
            train_config(str(config("bad.yaml", v=bad)))
    with pytest.raises(ConfigError, match="video_seed2.*would read as a seed of variant 'video'"):
        train_config(str(config("bad.yaml", video_seed2=None)))


def test_generation_rows_show_each_guidance_scale_with_class_consistency(tmp_path):
    results = tmp_path / "small"
    write_result(results, "dit_imagenet", [
        guidance_entry(4.0, fid=80.5, share=0.9, shares=per_class(1.0, 0.8), features=judge(1.5, 0.75, 0.5),
                       novelty={"latent": {"nearer_than_fresh": 0.04}, "judge": {"nearer_than_fresh": 0.125},
                                "codes": {"near_copies": 0.5}}, inception_score={"mean": 3.1, "std": 0.1},
                       precision=0.5, recall=0.25),
        guidance_entry(1.0, fid=90.25, share=0.4, precision=0.4, recall=0.5)],
        references={"real": {"share": 0.95, "n": 8, "per_class": per_class(1.0), "feature_distance": judge(0.5, 0.9, 0.8)},
                    "flat_colour": {"share": 0.25, "n": 8, "per_class": per_class(0.0, 0.5), "feature_distance": None}},
        classifier={"classifier_accuracy": 0.95, "chance": 1 / 12, "rises_with_guidance": True})
    rows = tables.generation_rows(results, next(r for r in experiments.GENERATION_ROWS if r.name == "dit_imagenet"))
    assert [r[1] for r in rows] == ["1.0", "4.0", "", ""]  # ordered by guidance; then the reference points
    assert rows[0][3] == "90.25" and rows[1][4] == "3.10" and rows[1][5] == "0.50 / 0.25"
    assert rows[1][6] == "90% (weakest 80%); classifier 95%, chance 8%" and "RANDOM-INIT network" in rows[0][2]
    assert rows[1][7] == "1.50 / 0.75 / 0.50" and rows[0][7] == ""
    assert "n=64/18, d=2048; rank-deficient covariance: a rough figure" in rows[0][2]
    assert rows[1][8] == "4% / 12%; 50% with 90 % of codes from one training row" and rows[0][8] == ""
    assert rows[0][9] == "source embedded, split train, items 16, resolution 64, frames 1"
    assert rows[0][11] == "10.0 (2 thr.)"
    # then the reference points, in their fixed order, whatever the file's order
    assert [r[0] for r in rows[2:]] == ["Ours (DiT): reference, flat mean colour",
                                        "Ours (DiT): reference, real items (copying ceiling)"]
    assert rows[2][6] == "25% (weakest 0%)" and rows[3][6:8] == ["95% (weakest 100%)", "0.50 / 0.90 / 0.80"]
    assert rows[3][9] == "8 items"
    missing = tables.generation_rows(results, experiments.GENERATION_ROWS[0])
    assert missing[0][3] == "not run (make lm-imagenet SCALE=small)"


def test_a_result_file_of_another_schema_or_missing_a_field_is_an_error_not_an_empty_cell(tmp_path):
    """The tables and pages had read result files through .get() walks: a file of another layout gave empty cells."""
    from eval import generator_pages
    from eval.generator_result import read_result

    results = tmp_path / "small"
    row = next(r for r in experiments.GENERATION_ROWS if r.name == "dit_imagenet")
    path = write_result(results, "dit_imagenet", [guidance_entry(2.0, share=0.9, shares=per_class(0.8, 1.0))])
    record = json.loads(path.read_text())
    del record["schema_version"]  # as written before the version was recorded: version 1
    path.write_text(json.dumps(record))
    assert read_result(path).judged()[0].weakest_share() == 0.8
    for change, message in [
            ({"schema_version": 2}, r"dit_imagenet.json: a generator result of schema version 2; this version of the "
                                    r"project reads version 1: write it again .*eval.generation_report --run "
                                    r"runs/small/dit_imagenet .*or delete it and run `make dit-imagenet SCALE=small`"),
            ({"wall_seconds": {"training": 1.0}}, r"dit_imagenet.json: wall_seconds: missing WallSeconds field\(s\) "
                                                  r"\['extraction', 'sampling', 'evaluation'\]; write it again"),
            ({"threads": "two"}, r"dit_imagenet.json: threads: expected an integer, got 'two'"),
            ({"metrics": {"cfg3": guidance_entry(2.0)}}, r"metrics\['cfg3'\] holds guidance scale 2, whose key is 'cfg2'"),
            ({"metrics": {"cfg2": {**guidance_entry(2.0), "kid": None}}},
             r"metrics\['cfg2'\] of a image generator holds no kid")]:
        path.write_text(json.dumps({**record, **change}))
        with pytest.raises(ResultError, match=message):
            tables.generation_rows(results, row)
        with pytest.raises(SystemExit, match=message):
            generator_pages.main(["--results", str(tmp_path), "--page", str(tmp_path / "page.md"), "--summary"])
    write_result(results, "dit_imagenet", [guidance_entry(2.0, task="video")], task="video")
    with pytest.raises(ResultError, match=r"the result of a video generator \(FVD\), not of Ours \(DiT\)'s images"):
        tables.generation_rows(results, row)


def test_tokenizer_report_writes_its_table_between_the_readme_markers(tmp_path):
    from eval import tokenizer_report

    val = {"psnr": 21.0, "ssim": 0.5, "block_edge": 1.7, "block_edge_input": 1.01, "codebook_usage": 0.5,
           "bicubic": {"8x": {"factor": 8.0, "psnr": 22.0, "ssim": 0.58, "block_edge": 1.15}}}
    report = {"scale": "small", "seed": 0, "wall_seconds": 600.0, "stages": {
        "joint": {"quantizer": "vq", "steps": 10, "wall_seconds": 60.0, "threads": 2, "precision": "bf16",
                  "precision_reason": "measured", "validation": {"image": val, "video": {**val, "psnr": 20.0}}},
        "kl": {"quantizer": "kl", "steps": 5, "wall_seconds": 30.0, "validation": {"image": {"psnr": 25.0, "ssim": 0.7}}}}}
    (tmp_path / "r.json").write_text(json.dumps(report))
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{tokenizer_report.BEGIN}\nold\n{tokenizer_report.END}\nbottom\n")
    assert tokenizer_report.main(["--results", str(tmp_path / "r.json"), "--readme", str(readme)])
    text = readme.read_text()
    assert "old" not in text and text.startswith("top\n") and text.endswith("bottom\n")
    assert "| joint | VQ | 10 | 1.0 | 21.00 / 0.500 / 1.70 | 20.00 / 0.500 / 1.70 | 50%, 50% |" in text
    assert "| kl | KL | 5 | 0.5 | 25.00 / 0.700 | - | - |" in text  # a result without the ratio shows none
    assert "| the inputs themselves | | | | - / - / 1.01 | - / - / 1.01 | |" in text
    assert "| bicubic 8x | | | | 22.00 / 0.580 / 1.15 | 22.00 / 0.580 / 1.15 | |" in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not tokenizer_report.main(["--results", str(tmp_path / "r.json"), "--readme", str(plain)])
    assert plain.read_text() == "no markers\n"


# eval.frame_prediction's metrics as the pages read them: PSNR mean and judge-feature FD per reading
PREDICTION = {"predicted_frames": [5, 6], "clips": 3, "best_of": 4, **{
    k: {"psnr": {"mean": v}} for k, v in (("model", 15.0), ("model_greedy", 18.0), ("model_best_of_n", 19.0),
                                           ("repeat_last_given", 21.0), ("tokenizer_reconstruction", 22.0))},
    "judge_features": {"network": "the clip judge", **{
        k: judge(v) for k, v in (("model", 3.0), ("model_greedy", 2.5), ("model_best_of_n", 2.0),
                                 ("repeat_last_given", 9.0), ("tokenizer_reconstruction", 0.5))}}}


def test_generator_pages_write_the_results_and_a_sampling_comparison(tmp_path):
    from eval import generator_pages

    results = tmp_path / "results" / "small"
    write_result(results, "lm_imagenet", [
        guidance_entry(1.5, fid=3.0, share=0.8, shares=per_class(1.0, 0.25, names=("a", "b")))],
        classifier={"classifier_accuracy": 0.98, "chance": 0.05, "rises_with_guidance": None},
        sampling={"classes": [0, 1], "per_class": 2, "seed": 0, "sampling": {"temperature": 0.5, "top_k": 64}},
        frame_prediction={"metrics": PREDICTION})
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for name, (g, share) in {"x": (2.0, 0.5), "y": (1.0, 0.75)}.items():
        (sweep / f"{name}.json").write_text(json.dumps({
            "model": "m", "sampling": {"guidance_scale": g, "top_k": 0, "temperature": 1.0, "per_class": 2, "seed": 0},
            "judge": {"classifier_accuracy": 0.9, "chance": 0.5},
            "class_consistency": {"share": share, "n": 4, "per_class": per_class(share, names=("a",))},
            "novelty": {"latent": {"nearer_than_fresh": share / 10}, "judge": {"nearer_than_fresh": 0.0}},
            "machine": "a test CPU", "threads": 1, "precision": "fp32"}))
    page = tmp_path / "page.md"
    page.write_text(f"{generator_pages.BEGIN}\n{generator_pages.END}\n{generator_pages.SWEEP_BEGIN}\n"
                    f"{generator_pages.SWEEP_END}\n")
    assert generator_pages.main(["--results", str(tmp_path / "results"), "--page", str(page), "--target", "lm-imagenet",
                                 "lm-ucf"])
    assert generator_pages.main(["--page", str(page), "--sampling-sweep", str(sweep)])
    text = page.read_text()
    assert "| 1.5 | FID (RANDOM-INIT network" in text and "80% (weakest 25%); classifier 98%, chance 5%" in text
    assert "not run (make lm-ucf SCALE=small)" in text
    assert ("predicted frames 5-6 of 3 held-out clips, mean PSNR: the model as sampled 15.00 dB, greedy 18.00, best "
            "of 4 samples (picked by the truth: an oracle) 19.00, the last given frame repeated 21.00, the tokenizer's "
            "reconstruction of the true frames (the ceiling) 22.00; judge-feature FD to the true clips (the judge "
            "trained here, not I3D): as sampled 3.00, greedy 2.50, best of 4 2.00, repeated 9.00, reconstruction "
            "0.50") in text
    assert ("sampling temperature 0.5, top_k 64; guidance 1.5: weakest class b 25%, 1 of 2 classes at 50 % or more "
            "(8 samples)") in text
    assert text.index("| 1.0 | all | 1.0 | 75% | weakest class a 75%, 1 of 1 classes at 50 % or more | 8% / 0% |") < \
        text.index("| 2.0 | all | 1.0 | 50% | weakest class a 50%, 1 of 1 classes at 50 % or more | 5% / 0% |")
    with pytest.raises(SystemExit, match="unknown target"):
        generator_pages.main(["--page", str(page), "--target", "nope"])
    (sweep / "z.json").write_text(json.dumps({"model": "m"}))
    with pytest.raises(SystemExit, match=r"z.json: missing SweepResult field\(s\) \['sampling'"):
        generator_pages.main(["--page", str(page), "--sampling-sweep", str(sweep)])


def test_generator_summary_shows_the_best_guidance_beside_the_references(tmp_path):
    from eval import generator_pages

    results = tmp_path / "results" / "small"
    write_result(results, "dit_imagenet", [
        guidance_entry(1.0, share=0.5, shares=per_class(0.25, 0.75), features=judge(9.0)),
        guidance_entry(3.0, share=0.75, shares=per_class(0.5, 1.0), features=judge(4.25),
                       novelty={"latent": {"nearer_than_fresh": 0.03}, "judge": {"nearer_than_fresh": 0.06}})],
        references={"class_average": {"share": 0.6, "n": 8, "per_class": per_class(0.6), "feature_distance": None},
                    "real": {"share": 0.95, "n": 8, "per_class": per_class(0.95), "feature_distance": judge(0.5)}},
        classifier={"classifier_accuracy": 0.98, "chance": 0.05, "rises_with_guidance": True},
        wall_seconds={"extraction": 30, "training": 540, "sampling": 60, "evaluation": 30})
    write_result(results, "lm_k600", [guidance_entry(1.0, task="video")], task="frames",
                 frame_prediction={"metrics": PREDICTION})
    page = tmp_path / "README.md"
    page.write_text(f"intro\n{generator_pages.SUMMARY_BEGIN}\nold\n{generator_pages.SUMMARY_END}\n")
    assert generator_pages.main(["--results", str(tmp_path / "results"), "--page", str(page), "--summary"])
    text = page.read_text()
    assert "| `make dit-imagenet` | 75% at 3 (weakest 50%) | 60% / 95% / - | 4.2 (0.5) | 3% / 6% |  | 11.0 |" in text
    assert "| `make lm-ucf` | not run | | | | | |" in text and "old" not in text
    assert "| `make lm-k600` | unconditional | - / - / - | - (-) |  | 15.00 / 18.00 / 19.00 / 21.00 / 22.00 dB (N = 4) |" in text
    assert "The judge's accuracy: on held-out photos 98% (chance 5%, from `make dit-imagenet`)." in text
    assert "machine a test CPU (2 threads); precision fp32" in text


def test_generators_only_rebuild_keeps_the_tokenizer_tables_of_tables_json(tmp_path):
    (tmp_path / "results" / "small").mkdir(parents=True)
    tables.build("small", tmp_path / "results", tmp_path)
    saved = json.loads((tmp_path / "tables.json").read_text())
    saved["tables"]["1"]["ours"] = [["kept row"] + [""] * (len(saved["tables"]["1"]["ours_columns"]) - 1)]
    (tmp_path / "tables.json").write_text(json.dumps(saved))
    write_result(tmp_path / "results" / "small", "dit_imagenet", [guidance_entry(2.0, share=0.9)])
    (tmp_path / "results" / "small" / "tokenizer.json").write_text(json.dumps({"stages": {"joint": {
        "threads": 2, "precision": "bf16"}}, "machine": "this machine"}))  # a run not behind tables.json
    record = "<!-- measured: scale small; machine The runs' CPU (1 threads); precision fp32 -->"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "evaluation.md").write_text(f"{tables.README_BEGIN}\n{record}\nold\n{tables.README_END}\n")
    tables.main(["--results", str(tmp_path / "results"), "--out", str(tmp_path), "--generators-only"])
    text = (tmp_path / "TABLES.md").read_text()
    assert "| kept row |" in text and "| Ours (DiT) | 2.0 |" in text
    findings = (tmp_path / "docs" / "evaluation.md").read_text()  # tables.json's verdicts, with their runs' record
    assert record in findings and "old" not in findings and "this machine" not in findings
    with pytest.raises(SystemExit, match="not 'paper'"):
        tables.main(["--scale", "paper", "--results", str(tmp_path / "results"), "--out", str(tmp_path),
                     "--generators-only"])
