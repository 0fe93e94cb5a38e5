"""bench.lm_sampling_sweep: one LM under several sampling settings, judged and measured for novelty."""
import json

import pytest

from bench import lm_sampling_sweep


def test_settings_are_read_from_their_names():
    assert lm_sampling_sweep.parse_setting("g1.5_k64_t0.5") == {"guidance_scale": 1.5, "top_k": 64, "temperature": 0.5}
    assert lm_sampling_sweep.parse_setting("g2_k0_t1")["top_k"] == 0
    with pytest.raises(SystemExit, match="g<guidance>_k<top-k>_t<temperature>"):
        lm_sampling_sweep.parse_setting("guidance2")


@pytest.mark.slow
def test_each_setting_gets_its_folder_judge_and_novelty_and_the_page_its_table(tmp_path, monkeypatch):
    from eval import generator_pages
    from lm_generation import extract_codes
    from lm_generation.config import lm_config
    from lm_generation.train import train
    from tokenizer import OmniTokenizer

    monkeypatch.chdir(tmp_path)  # the judge is cached under results/tiny/classifiers
    tok = OmniTokenizer.from_scale("tiny", quantizer="vq").save_pretrained(tmp_path / "tok")
    extract_codes.main(["--tokenizer", str(tok), "--images", "embedded", "--out", str(tmp_path / "codes"),
                        "--scale", "tiny", "--precision", "fp32"])
    train(lm_config("tiny", ["train.steps=5"]), tmp_path / "codes", tmp_path / "run", "image")
    written = lm_sampling_sweep.main(["--run", str(tmp_path / "run"), "--scale", "tiny", "--settings", "g1_k0_t1",
                                      "g2_k4_t0.5", "--samples", str(tmp_path / "samples"), "--out",
                                      str(tmp_path / "sweep")])
    assert [w["sampling"]["guidance_scale"] for w in written] == [1.0, 2.0] and written[1]["sampling"]["top_k"] == 4
    saved = json.loads((tmp_path / "sweep" / "g2_k4_t0.5.json").read_text())
    assert saved["novelty"]["codes"]["near_copies"] >= 0 and 0 <= saved["class_consistency"]["share"] <= 1
    page = tmp_path / "page.md"
    page.write_text(f"{generator_pages.SWEEP_BEGIN}\n{generator_pages.SWEEP_END}\n")
    assert generator_pages.main(["--page", str(page), "--sampling-sweep", str(tmp_path / "sweep")])
    text = page.read_text()
    assert "| 1.0 | all | 1.0 |" in text and "| 2.0 | 4 | 0.5 |" in text
