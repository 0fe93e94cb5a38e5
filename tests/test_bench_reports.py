"""bench/: the FLOP counter counts SDPA on the CPU, GEMM replay finds a call's products, the README's speed
table is written from a bench result, and the no-network codes of linear_codes.py are what they say."""
import json
from pathlib import Path

import pytest
import torch

from bench.flops import _RecordGemms, count_flops, flop_counter_mode, gemm_seconds
from bench.linear_codes import PCA, KMeans, code_clips, from_patches, to_patches
from bench.readme_speed import BEGIN, END, write


def test_cpu_sdpa_is_counted():
    q = torch.randn(1, 4, 64, 32)
    with flop_counter_mode()(display=False) as counter:  # the mode the diffusion bench counts with
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert counter.get_total_flops() == 2 * (2 * 4 * 64 * 64 * 32)  # q k^T and (scores) v
    assert count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) == counter.get_total_flops()


def test_gemm_replay_finds_the_products_of_a_call():
    w, x = torch.nn.Linear(32, 48), torch.randn(5, 7, 32)

    def call():
        with torch.inference_mode():
            h = torch.nn.functional.gelu(w(x))
            return h @ h.transpose(-1, -2), h.softmax(-1)

    record = _RecordGemms()
    with record:
        call()
    assert sorted(str(op) for op, _, _ in record.calls) == ["aten.linear.default", "aten.matmul.default"]
    layouts = {str(op): args for op, args, _ in record.calls}
    assert layouts["aten.matmul.default"][1][1:4] == ((5, 48, 7), (336, 1, 48), torch.float32)  # a transposed view
    assert gemm_seconds(call, "cpu") > 0
    assert gemm_seconds(lambda: torch.nn.functional.gelu(x).softmax(-1), "cpu") == 0  # no products, no GEMM time


def case(name, layout, precision, seconds, frames=1):
    return {"case": name, "layout": layout, "precision": precision, "frames": frames, "seconds_per_call": seconds,
            "items_per_s": 1 / seconds, "frames_per_s": frames / seconds, "gflop_per_call": 96.0,
            "achieved_gflops": 96.0 / seconds, "matmul_gflops": 96.0 / seconds / 0.5, "fraction_of_matmul_rate": 0.5,
            "gemm_gflops": 150.0,
            "gemm_share": 0.64, "peak_rss_gb": 1.1, "rss_before_input_gb": 0.9}


def test_readme_speed_table_is_written_between_its_markers(tmp_path):
    report = {"machine": "Some CPU", "threads": 2, "device": "cpu", "torch": "2.x", "precisions": ["fp32", "bf16"],
              "automatic_precision": "bf16",
              "automatic_precision_reason": "CPU bf16 matmul measured at 4.0x fp32",
              "cases": [case("image_256", "paper", "fp32", 1.0),
                        {**case("release_image_256", "release", "fp32", 1.2), "gemm_fraction_of_matmul_rate": 0.94},
                        {**case("image_256", "paper", "bf16", 0.25), "paired_seconds_per_call": {"eager_fp32": 0.8}},
                        {**case("image_256_compiled", "paper", "bf16", 0.2), "gemm_gflops": None, "gemm_share": None,
                         "compile_seconds": 31.0, "paired_seconds_per_call": {"eager": 0.3, "eager_fp32": 0.9}}]}
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold figures\n{END}\n\nrest\n")
    assert write(readme, report)
    text = readme.read_text()
    assert "old figures" not in text and text.endswith(f"{END}\n\nrest\n")
    assert ("| image 256² | paper | 1.00 images/s; 96 GFLOP at 96 GFLOP/s = 50 % of the fp32 matmul rate; its GEMMs "
            "alone run at 150 GFLOP/s and take 64 % of the call") in text
    assert "| image 256² | release | 0.83 images/s" in text and text.count("| image 256² |") == 2
    assert "150 GFLOP/s (94 % of the rate: the most fusing the rest could give) and take 64 %" in text
    assert "Some CPU, 2 threads" in text
    assert "image 256² (paper), bf16 against eager fp32: 3.20x" in text  # from the pair timed in one process
    assert ("| image 256², `compile_for_inference()` | paper | - | 5.00 images/s; 96 GFLOP at 480 GFLOP/s = 50 % of "
            "the bf16 matmul rate; compiled in 31 s") in text
    assert ("image 256², `compile_for_inference()` (paper), bf16 against eager bf16: 1.50x; "
            "image 256², `compile_for_inference()` (paper), bf16 against eager fp32: 4.50x") in text
    assert "over this run's cases: fp32 160-192 GFLOP/s, bf16 768-960 GFLOP/s" in text  # each case's own rate
    readme.write_text("no markers\n")
    assert not write(readme, report) and readme.read_text() == "no markers\n"


def test_linear_codes_patches_pca_and_kmeans():
    torch.manual_seed(0)
    clip = torch.rand(2, 3, 9, 16, 24) * 2 - 1
    assert torch.equal(from_patches(to_patches(clip[:, :, 1:], 4), clip[:, :, 1:].shape, 4), clip[:, :, 1:])
    tubes = to_patches(clip[:, :, 1:], 4)
    assert tubes.shape == (2 * 2 * 2 * 3, 3 * 4 * 8 * 8)
    assert torch.equal(tubes[0].reshape(3, 4, 8, 8), clip[0, :, 1:5, :8, :8])  # one tube: 4 frames of a patch
    # a full-rank PCA is exact; fewer components lose more; a clip is coded as first frame + tubes
    first = to_patches(clip[:, :, :1])
    assert torch.allclose(PCA(first, first.shape[1])(first), first, atol=1e-5)
    error = [(PCA(first, k)(first) - first).pow(2).mean().item() for k in (2, 8, 24)]
    assert error[0] > error[1] > error[2]
    full = code_clips(clip, PCA(first, first.shape[1]), PCA(tubes, tubes.shape[0]))
    assert torch.allclose(full, clip, atol=1e-4)
    # k-means with a centre for every patch codes them exactly and uses every code; fewer centres lose more
    patches = torch.randn(10, 192)
    kmeans = KMeans(patches, 10)
    assert torch.equal(kmeans(patches), patches) and kmeans.usage(patches) == 1.0
    assert kmeans.usage(patches[:3]) == 0.3
    error = [(KMeans(patches, k)(patches) - patches).pow(2).mean().item() for k in (1, 5)]
    with pytest.raises(ValueError, match="needs at least 20 patches, got 10"):
        KMeans(patches, 20)
    assert error[0] == pytest.approx(patches.var(0, unbiased=False).mean().item()) and error[0] > error[1] > 0


@pytest.mark.slow
def test_dry_run_of_every_target_resumes_exactly_and_feeds_the_cost_plan(tmp_path):
    """`make dry-run` at the test size: the same code as the paper-scale run, each target in its own process."""
    from bench import cost_plan, data_throughput, dry_run

    report = dry_run.main(["--scale", "tiny", "--precision", "fp32", "--out", str(tmp_path / "dry.json")])
    assert set(report["targets"]) == {"tokenizer_image", "tokenizer_joint", "tokenizer_kl", "lm_model_image",
                                      "lm_model_video", "dit", "latte"}
    for name, r in report["targets"].items():
        assert "error" not in r, (name, r)
        assert r["resume_exact"] and r["step_repeatable"] and r["loss_finite"] and r["flops_per_step"] > 0, name
        assert r["memory_bytes"]["weights"] > 0 and r["memory_bytes"]["optimizer_state"] > 0, name
        assert len(r["seconds_per_step"]) == dry_run.STEPS and r["sampling"], name
    assert report["targets"]["lm_model_video"]["sampling"]["tokens"] == 8
    assert report["targets"]["tokenizer_joint"]["sampling"]["encode_flops_per_item"] > 0
    data = data_throughput.main(["--resolution", "32", "--frames", "5", "--items", "4", "--out", str(tmp_path / "data.json")])
    assert all(c["items_per_second"] > 0 for c in data["cases"].values()) and len(data["cases"]) == 4
    doc = tmp_path / "plan.md"
    doc.write_text(f"{cost_plan.BEGIN}\n{cost_plan.END}\n{cost_plan.LOADER_BEGIN}\n{cost_plan.LOADER_END}\n")
    cost_plan.main(["--dry-run", str(tmp_path / "dry.json"), "--data", str(tmp_path / "data.json"), "--doc", str(doc)])
    text = doc.read_text()
    assert "| tokenizer_image | image batch 1 x 1 x" in text
    assert "every target's resumed step was bitwise the uninterrupted one" in text
    assert "| lm_650M_image | not run |" in text  # the tiny scale has no 650M; the paper run fills it
    assert "UCF-101 layout, MPEG-4 AVI 320 x 240, interval 3" in text
    paper_page = tmp_path / "cost_plan.md"  # the tracked page, measured at scale paper, is left alone
    paper_page.write_text((Path(__file__).resolve().parents[1] / "docs" / "cost_plan.md").read_text())
    before = paper_page.read_text()
    with pytest.raises(SystemExit, match="measured at scale paper"):
        cost_plan.main(["--dry-run", str(tmp_path / "dry.json"), "--data", str(tmp_path / "data.json"),
                        "--doc", str(paper_page)])
    assert paper_page.read_text() == before


def test_lm_speed_table_shows_what_the_bench_measured(tmp_path):
    from bench import lm_speed
    from lm_generation.config import lm_config
    from lm_generation.model import CodeLayout

    shape = lm_config("tiny").model
    sampling = lm_speed.bench_sampling(shape, 8, 4, 2, "cpu", "fp32", matmul_rate=100.0)
    training = lm_speed.bench_training(shape, CodeLayout(16, 3, (1, 2, 2), (1, 8, 8)), 2, 1, "cpu", "fp32")
    report = {"machine": {"processor": "Some CPU", "device": "cpu", "gpu": None, "threads": 2, "torch": "2.x"},
              "dtype": "fp32", "matmul_gflop_per_s": 100.0, "matmul_gflop_per_s_after": 90.0, "flops_rule": "the rule",
              "sampling": {"small": sampling, "227M": sampling},
              "training": {"small_images_64px": training, "227M_imagenet_256": training}}
    (tmp_path / "lm.json").write_text(json.dumps(report))
    page = tmp_path / "lm.md"
    page.write_text(f"x\n{lm_speed.DOC_BEGIN}\nold\n{lm_speed.DOC_END}\n")
    lm_speed.main(["--from-result", str(tmp_path / "lm.json"), "--doc", str(page)])  # the table from the report alone
    text = page.read_text()
    assert "<!-- measured: scale small, paper; machine Some CPU (cpu, 2 threads); precision fp32 -->" in text
    assert "old" not in text and text.count("| small (") == 1 and text.count("| 227M (") == 1
    c = sampling["cached"]
    assert f"| {c['tokens_per_s']:.1f} tokens/s (2 x 8) | {c['gflop_per_s']:.1f} GFLOP/s: " in text
    assert f"{sampling['recompute_prefix']['cached_speedup']:.1f}x (4 tokens)" in text
    assert f"{sampling['generate']['ours_speedup']:.1f}x" in text and "(batch 2 x 5) |" in text
    assert "Some CPU, cpu, 2 threads, torch 2.x, fp32" in text and "100 GFLOP/s before the run and 90 after" in text


def test_diffusion_speed_table_pairs_ours_with_diffusers(tmp_path, monkeypatch):
    from bench import diffusion_speed

    monkeypatch.setitem(diffusion_speed.CASES, "dit_tiny", ("tiny", "dit", 2, (8, 8, 8), 1, 1, True))
    monkeypatch.setitem(diffusion_speed.CASES, "latte_tiny", ("tiny", "latte", 1, (8, 2, 8, 8), 1, 1, False))
    page = tmp_path / "diffusion.md"
    page.write_text(f"{diffusion_speed.DOC_BEGIN}\nold\n{diffusion_speed.DOC_END}\n")
    report = diffusion_speed.main(["--cases", "dit_tiny", "latte_tiny", "--out", str(tmp_path / "d.json"),
                                   "--doc", str(page)])
    text = page.read_text()
    dit, latte = report["cases"]["dit_tiny"], report["cases"]["latte_tiny"]
    assert "diffusers" in dit and "diffusers" not in latte  # diffusers has no Latte
    assert (f"| dit tiny (2 x 8x8x8; {dit['ours']['parameters'] / 1e6:.1f}M) | forward + MSE/VB loss + backward + "
            f"AdamW step; best of 1 rounds of 1 steps, models alternating | {dit['ours']['train_steps_per_s']:.3g} (diffusers "
            f"{dit['diffusers']['train_steps_per_s']:.3g}) |") in text
    assert f"{dit['ours_vs_diffusers_train_speed']:.2f}x, {dit['ours_vs_diffusers_sample_speed']:.2f}x |" in text
    assert "| latte tiny (1 x 8x2x8x8;" in text and "(no diffusers model) |" in text
    assert f"{report['matmul_gflops']:.0f} GFLOP/s at the start" in text
    assert f"<!-- measured: scale tiny; machine {report['cpu']} (cpu, " in text  # what the table was measured from
    page.write_text(f"{diffusion_speed.DOC_BEGIN}\nold\n{diffusion_speed.DOC_END}\n")
    diffusion_speed.main(["--from-result", str(tmp_path / "d.json"), "--doc", str(page)])  # nothing measured
    assert page.read_text() == text


def test_reference_map_places_each_of_our_weights_once():
    from bench.reference_pair import reference_state
    from diffusion_generation.latte import Latte

    ours = Latte(in_channels=8, patch_size=2, hidden_size=32, depth=2, num_heads=2, num_classes=3)
    state = reference_state(ours)
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in ours.parameters())
    assert torch.equal(state["blocks.1.attn.qkv.weight"][32:64], ours.blocks[1].attn.to_k.weight)


@pytest.mark.parametrize("name, extra, size", [("reference_dit", ["--sampling-steps", "2", "--sampling-rounds", "1"],
                                                (32, 2, 2)),
                                               ("reference_latte", ["--frames", "2"], (32, 2, 2)),
                                               ("reference_tokenizer", [], ("tiny", {}, 5, 32))])
def test_reference_bench_without_a_checkout_times_our_side_alone(tmp_path, monkeypatch, name, extra, size):
    import importlib

    from bench import reference_pair

    bench = importlib.import_module(f"bench.{name}")
    monkeypatch.setitem(bench.SIZES, "S/2", size)
    monkeypatch.setattr(reference_pair, "matmul_gflops", lambda device, dtype=torch.float32: 1.0)  # fp32 only
    reference_pair.matmul_rate.cache_clear()
    page = tmp_path / "speed.md"
    page.write_text(f"x\n{bench.DOC_BEGIN}\nold\n{bench.DOC_END}\nrest\n")
    report = bench.main(["--sizes", "S/2", "--batch", "1", "--rounds", "2", *extra, "--out", str(tmp_path / "r.json"),
                         "--doc", str(page)])
    assert json.loads((tmp_path / "r.json").read_text()) == report
    (case,) = report["cases"]
    assert report["reference"] == "not given: our side alone" and list(case["median_seconds"]) == ["ours"]
    assert "speedup" not in case and case["forward_max_abs_difference"] is None and case["rounds"] == 2
    text = page.read_text()
    assert "old" not in text and text.endswith(f"{bench.DOC_END}\nrest\n")
    share = case["gflop_per_step"]["ours"] / case["median_seconds"]["ours"]  # of the (patched) rate of 1 GFLOP/s
    assert case["gflop_per_step"]["ours"] > 0 and case["share_of_matmul_rate"]["ours"] == pytest.approx(share)
    assert 0 < case["ours_gemm_share"] < 1 and "speedup_ceiling" not in case
    assert case["peak_added_gb"]["ours"] > 0  # a step's activations at least
    ms = case["median_seconds"]["ours"] * 1000
    ms = f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"  # tenths below 100 ms
    assert (f"| S/2 | fp32 | {ms} | - | - | {share:.2f} | "
            f"{100 * case['ours_gemm_share']:.0f} % | {case['peak_added_gb']['ours']:.2f} | - |") in text
    reference_pair.matmul_rate.cache_clear()
    assert f"{bench.REPO_NAME} (ms)" in text and "reference: not given: our side alone." in text
    if name == "reference_dit":  # guided sampling, both samplers, our side alone
        assert [(r["sampler"], list(r["median_seconds"])) for r in report["sampling"]] == [("ddpm", ["ours"]),
                                                                                            ("ddim", ["ours"])]
        assert f"| S/2 | fp32 | DDIM | {report['sampling'][1]['median_seconds']['ours']:.2f} | - | - |" in text
    page.write_text(f"x\n{bench.DOC_BEGIN}\nold\n{bench.DOC_END}\nrest\n")
    assert bench.main(["--from-result", str(tmp_path / "r.json"), "--doc", str(page)]) == report  # nothing measured
    assert page.read_text() == text


def test_taking_turns_counts_a_compiled_steps_flops_on_its_eager_twin_and_replays_nothing():
    from types import SimpleNamespace

    from bench.reference_pair import take_turns

    a, b = torch.randn(64, 64), torch.randn(64, 64)
    sides = {"ours": SimpleNamespace(step=lambda: a + 1, flops_step=lambda: a @ b),
             "reference": SimpleNamespace(step=lambda: (a @ b) @ b)}
    case = take_turns({"size": "s", "precision": "fp32"}, sides, rounds=2, difference=None, replay=False)
    assert case["gflop_per_step"] == {"ours": 2 * 64**3 / 1e9, "reference": 4 * 64**3 / 1e9}
    assert "ours_gemm_share" not in case and "speedup_ceiling" not in case and case["speedup"] > 0


def test_the_release_is_built_at_our_configs_shapes_in_its_own_letters():
    from bench.reference_tokenizer import RELEASE_BLOCK, release_settings
    from tokenizer.config import model_config

    cfg = model_config("paper", encoder_spatial="ggww")
    settings = release_settings(cfg, 256)
    assert (settings["dim"], settings["heads"], settings["dim_head"]) == (512, 8, 64)
    assert (settings["patch_size"], settings["temporal_patch_size"], settings["window_size"]) == (8, 4, 8)
    assert "".join(RELEASE_BLOCK[c] for c in cfg.encoder_spatial) == "ttww"  # the release's stage-2 encoder
    with pytest.raises(ValueError, match="one temporal depth"):
        release_settings(model_config("paper", decoder_temporal=2), 256)


def test_llamagen_bench_runs_our_side_alone_and_writes_its_table(tmp_path):
    from bench import reference_llamagen as bench

    page = tmp_path / "speed.md"
    page.write_text(f"{bench.DOC_BEGIN}\nold\n{bench.DOC_END}\n")
    # fp32 alone: on a CPU without bf16 instructions a bf16 matmul runs tens of times slower than fp32 (seen on a
    # 2-core AMD EPYC: 381 ms against 7 ms for a 512 x 512 product), which would make this test take many minutes
    report = bench.main(["--shapes", "small", "--precisions", "fp32", "--batch", "1", "--train-batch", "1",
                         "--rounds", "1", "--out", str(tmp_path / "r.json"), "--doc", str(page)])
    text = page.read_text()
    assert report["reference"].startswith("not given") and text.count("reference not given") == 2
    (fp32,) = report["sampling"]
    assert fp32["precision"] == "fp32 weights" and report["sampling_bf16_vs_fp32"] == {}
    assert f"{fp32['ours']['tokens_per_s']:.1f} tokens/s" in text and "| training step, small (batch 1 x 257) |" in text
    train = report["training"][0]["ours"]
    assert train["peak_added_gb"] > 0 and f"adds {train['peak_added_gb']:.2f} GB at its peak" in text
    page.write_text(f"{bench.DOC_BEGIN}\nold\n{bench.DOC_END}\n")
    bench.main(["--from-result", str(tmp_path / "r.json"), "--doc", str(page)])  # nothing measured
    assert page.read_text() == text
    with pytest.raises(SystemExit, match="--from-result renders the table of --doc: give --doc"):
        bench.main(["--from-result", str(tmp_path / "r.json")])


def test_tokenizer_speed_runs_each_case_in_a_child_that_imports_the_project():
    import subprocess

    from bench.tokenizer_speed import REPO_ROOT, case_command

    cmd = case_command("image_256", "cpu", "fp32")
    proc = subprocess.run([*cmd[:3], "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr  # `bench` imports in the child (it did not as a script path)
    assert "--case" in proc.stdout


def test_a_reference_checkout_whose_imports_are_not_installed_is_a_clear_error(tmp_path):
    from bench.reference_pair import checkout

    (tmp_path / "models.py").write_text("")
    assert checkout(str(tmp_path), "facebookresearch/DiT", "models.py", needs=("json",)) == tmp_path
    assert checkout(None, "facebookresearch/DiT", "models.py", needs=("no_such_module",)) is None  # our side alone
    with pytest.raises(SystemExit, match=r"DiT's code imports no_such_module, which is not installed: "
                                         r"pip install -e '\.\[references\]'"):
        checkout(str(tmp_path), "facebookresearch/DiT", "models.py", needs=("no_such_module",))


def test_tiling_bench_measures_the_seams_and_writes_its_blocks(tmp_path):
    """The `small` part on tiny random models at a tiny size: every head and data kind measured, JSON and the page's
    block written, and written again from the JSON alone; the `paper` table from a result of that part's form."""
    from bench.tokenizer_tiling import PAPER_BEGIN, PAPER_END, SMALL_BEGIN, SMALL_END, main, paper_table
    from tokenizer import OmniTokenizer

    for quantizer in ("vq", "kl"):
        torch.manual_seed(0)
        OmniTokenizer.from_scale("tiny", quantizer=quantizer).save_pretrained(tmp_path / quantizer)
    page = tmp_path / "page.md"
    page.write_text(f"{SMALL_BEGIN}\n{SMALL_END}\n\n{PAPER_BEGIN}\n{PAPER_END}\n")
    report = main(["--part", "small", "--vq", str(tmp_path / "vq"), "--vae", str(tmp_path / "kl"), "--resolution", "32",
                   "--tile", "16", "--stride", "8", "--frames", "5", "--items", "2", "--clips", "1",
                   "--out", str(tmp_path / "tiling.json"), "--doc", str(page)])
    rows = report["small"]["rows"]
    assert [(r["head"], r["data"], r["items"]) for r in rows] == [("vq", "photos", 2), ("vq", "clips", 1),
                                                                   ("kl", "photos", 2), ("kl", "clips", 1)]
    for r in rows:  # random models: tiles see less of the frame, so the reconstructions differ, each a real PSNR
        assert r["seam_cost_db"] == pytest.approx(r["psnr_untiled"] - r["psnr_tiled"])
        assert 0 < r["psnr_tiled"] < 60 and 0 < r["psnr_tiled_vs_untiled"] < 100
    text = page.read_text()
    assert "| VQ | 2 photos |" in text and "| KL | 1 clips of 5 frames |" in text and "tiles of 16²" in text
    again = tmp_path / "again.md"  # make docs: from the report alone; the paper block, which it lacks, left as it is
    again.write_text(f"{SMALL_BEGIN}\n{SMALL_END}\n\n{PAPER_BEGIN}\n{PAPER_END}\n")
    main(["--from-result", str(tmp_path / "tiling.json"), "--doc", str(again)])
    assert again.read_text() == text
    part = {"device": "cpu", "machine": "Some CPU", "threads": 1, "precision": "fp32", "cases": [
        {"case": "image_1024", "tiled": False, "seconds": 9.0, "peak_rss_gb": 2.5, "rss_before_call_gb": 0.8, "tile": None},
        {"case": "image_1024", "tiled": True, "seconds": 12.0, "peak_rss_gb": 1.0, "rss_before_call_gb": 0.8,
         "tile": [256, 192, 16384]}]}
    assert paper_table(part)[2] == ("| image 1024² | 2.50 GB RSS (+1.70 GB over the model and input), 9.0 s | "
                                    "1.00 GB RSS (+0.20 GB over the model and input), 12.0 s |")
