"""bench/: the FLOP counter counts SDPA on the CPU, GEMM replay finds a call's products, the README's speed
table is written from a bench result, and the no-network codes of linear_codes.py are what they say."""
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
