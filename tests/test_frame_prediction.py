"""Frame prediction's offline score: per predicted frame, the model against the last given frame repeated and the
tokenizer's reconstruction, each checked against a hand computation."""
import json

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from eval import frame_prediction
from lm_generation.config import lm_config
from lm_generation.model import CodeLayout, build_lm
from lm_generation.pipeline import ARPipeline
from shared.data import EmbeddedClips
from shared.data.collate import collate
from tokenizer import OmniTokenizer


def hand_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two frames (3, H, W) in [-1, 1], on [0, 1] pixels."""
    mse = (((a.clamp(-1, 1) + 1) / 2 - (b.clamp(-1, 1) + 1) / 2) ** 2).mean()
    return float(10 * torch.log10(1 / mse))


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    tokenizer = OmniTokenizer.from_config("tiny", quantizer="vq").eval()
    layout = CodeLayout(codebook_size=tokenizer.config.codebook_size, num_classes=1, grid=(2, 4, 4), size=(5, 16, 16),
                        cond_frames=1)
    return ARPipeline(build_lm(lm_config("tiny").model, layout), tokenizer)


def test_scores_per_predicted_frame_against_a_hand_computation(pipe):
    clips = Subset(EmbeddedClips("val", 16, num_frames=5), range(2))
    out = frame_prediction.score(pipe, DataLoader(clips, batch_size=2, collate_fn=collate), {}, seed=0)
    assert out["given_frames"] == 1 and out["predicted_frames"] == [1, 2, 3, 4] and out["clips"] == 2
    x = torch.stack([clips[i]["pixels"] for i in range(2)])
    with torch.no_grad():
        recon = pipe.tokenizer.decode(pipe.tokenizer.encode(x).latents, size=x.shape[2:])
    for k, frame in enumerate(range(1, 5)):
        repeat = sum(hand_psnr(x[i, :, 0], x[i, :, frame]) for i in range(2)) / 2
        ceiling = sum(hand_psnr(recon[i, :, frame], x[i, :, frame]) for i in range(2)) / 2
        assert out["repeat_last_given"]["psnr"]["per_frame"][k] == pytest.approx(repeat, abs=1e-3)
        assert out["tokenizer_reconstruction"]["psnr"]["per_frame"][k] == pytest.approx(ceiling, abs=1e-3)
    for name in frame_prediction.PREDICTORS:
        per_frame = out[name]["psnr"]["per_frame"]
        assert out[name]["psnr"]["mean"] == pytest.approx(sum(per_frame) / 4)
    assert out["beats_repeating_the_last_frame"] == (out["model"]["psnr"]["mean"] > out["repeat_last_given"]["psnr"]["mean"])


def test_command_line_writes_the_record_and_refuses_a_model_that_does_not_predict(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "frames")
    record = frame_prediction.main(["--pipeline", str(tmp_path / "frames"), "--scale", "tiny", "--limit", "2",
                                    "--out", str(tmp_path / "fp.json")])
    assert json.loads((tmp_path / "fp.json").read_text())["metrics"]["clips"] == record["metrics"]["clips"] == 2
    layout = CodeLayout(codebook_size=pipe.tokenizer.config.codebook_size, num_classes=1, grid=(2, 4, 4),
                        size=(5, 16, 16))
    ARPipeline(build_lm(lm_config("tiny").model, layout), pipe.tokenizer).save_pretrained(tmp_path / "gen")
    with pytest.raises(SystemExit, match="does not predict frames"):
        frame_prediction.main(["--pipeline", str(tmp_path / "gen"), "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="--limit must be >= 1"):
        frame_prediction.main(["--pipeline", str(tmp_path / "frames"), "--limit", "0", "--out", str(tmp_path / "x.json")])


def test_a_split_the_embedded_clips_do_not_hold_out_is_refused_before_any_work(pipe, tmp_path):
    """--split train (or bogus) had been recorded while the validation clips were scored."""
    pipe.save_pretrained(tmp_path / "frames")
    for split in ("train", "bogus"):
        with pytest.raises(SystemExit, match=f"--split: split '{split}': the embedded data is evaluated on its "
                                             f"held-out split 'val' only"):
            frame_prediction.main(["--pipeline", str(tmp_path / "frames"), "--split", split, "--limit", "1",
                                   "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
    record = frame_prediction.main(["--pipeline", str(tmp_path / "frames"), "--scale", "tiny", "--limit", "1",
                                    "--out", str(tmp_path / "fp.json")])
    assert record["split"] == "val" and record["metrics"]["clips"] == 1
