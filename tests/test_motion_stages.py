"""eval.motion_stages: the judge's share of each clip class through each stage, the PSNR by frame index."""
import math

import torch

from eval import motion_stages


def test_psnr_by_frame_and_per_class_share_by_hand():
    x = torch.zeros(2, 3, 3, 4, 4)
    x_hat = x.clone()
    x_hat[:, :, 1] += 0.1  # frame 1 off by 0.1 on [-1, 1]: 0.05 on [0, 1]
    x_hat[:, :, 2] += 0.2
    frames = motion_stages.psnr_by_frame(x_hat, x)
    assert frames[0] > 90 and math.isclose(frames[1], 10 * math.log10(1 / 0.05**2), rel_tol=1e-4)
    assert math.isclose(frames[2], 10 * math.log10(1 / 0.1**2), rel_tol=1e-4)
    shares = motion_stages.per_class_share(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1]), [0, 1])
    assert shares == {0: 0.5, 1: 1.0}


def test_every_stage_is_judged_class_by_class_and_tabled(tmp_path):
    from tokenizer import OmniTokenizer

    vq = OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(tmp_path / "vq")
    vae = OmniTokenizer.from_scale("tiny", quantizer="kl").save_pretrained(tmp_path / "vae")
    metrics = motion_stages.measure("tiny", str(vq), str(vae), per_class=2, cache=str(tmp_path / "judge"))
    assert list(metrics["stages"]) == ["real clips", "VAE reconstruction", "VQVAE reconstruction"]
    classes = list(metrics["classes"])
    for stage in metrics["stages"].values():
        assert set(stage["per_class"]) == set(classes) and 0 <= stage["share"] <= 1
    assert len(metrics["stages"]["VQVAE reconstruction"]["psnr_by_frame"]) == 5
    generator = ("latte_ucf (guidance 4)", 0.5, {classes[0]: 1.0})
    lines = motion_stages.table_lines(metrics, [generator])
    assert lines[0] == "| class | real clips | VAE reconstruction | VQVAE reconstruction | latte_ucf (guidance 4) |"
    assert lines[2].startswith(f"| {metrics['classes'][classes[0]]} |") and lines[2].endswith("| 100% |")
    assert lines[3].endswith("| - |") and any(line.startswith("| VQVAE reconstruction | ") for line in lines)


def test_the_page_is_rendered_from_the_result_file_alone(tmp_path):
    """The table could only be written by measuring again; --from-result renders it from the file, measuring nothing,
    the same table on every run."""
    import json

    import pytest

    from eval.generator_result import read_result

    from .generator_results import guidance_entry, per_class, write_result

    generator = write_result(tmp_path / "small", "lm_ucf", [
        guidance_entry(1.0, task="video", share=0.25, shares=per_class(0.5, 0.0)),
        guidance_entry(2.0, task="video", share=0.5, shares=per_class(1.0, 0.0))], task="video")
    name, share, shares = motion_stages.best_guidance_shares(read_result(generator))
    assert (name, share, shares) == ("lm_ucf (guidance 2)", 0.5, {0: 1.0, 1: 0.0})
    stage = lambda *s: {"share": sum(s) / len(s), "per_class": dict(enumerate(s))}  # noqa: E731
    metrics = {"stages": {"real clips": {**stage(1.0, 1.0), "tokenizer": None},
                          "VQVAE reconstruction": {**stage(0.5, 1.0), "tokenizer": "vq", "psnr_by_frame": [25.0, 24.0]}},
               "classes": {0: "pan_left", 1: "bikes"}, "per_class": 2, "judge_accuracy": 0.9,
               "generators": [{"name": name, "share": share, "per_class": shares}]}
    result = tmp_path / "motion_stages.json"
    result.write_text(json.dumps({"metrics": metrics, "scale": "small", "threads": 1, "machine": "a test CPU",
                                  "precision": "fp32"}))
    page = tmp_path / "page.md"
    page.write_text(f"top\n{motion_stages.BEGIN}\n{motion_stages.END}\n")
    motion_stages.main(["--from-result", str(result), "--page", str(page)])
    text = page.read_text()
    assert "| pan_left | 100% | 50% | 100% |" in text and "| bikes | 100% | 100% | 0% |" in text
    assert "| VQVAE reconstruction | 25.0 | 24.0 |" in text
    assert "<!-- measured: scale small; machine a test CPU (1 threads); precision fp32 -->" in text
    motion_stages.main(["--from-result", str(result), "--page", str(page)])
    assert page.read_text() == text
    with pytest.raises(SystemExit):  # nothing to render it to
        motion_stages.main(["--from-result", str(result)])
