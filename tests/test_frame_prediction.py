"""Frame prediction's offline score: per predicted frame, the model against the last given frame repeated and the
tokenizer's reconstruction, each checked against a hand computation."""
import json
import math

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from eval import frame_prediction
from eval.classifier import ConvClassifier
from eval.frechet import frechet_from_features
from eval.judge_references import FeatureSpace, judge_features
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
    tokenizer = OmniTokenizer.from_scale("tiny", quantizer="vq").eval()
    layout = CodeLayout(codebook_size=tokenizer.config.codebook_size, num_classes=1, grid=(2, 4, 4), size=(5, 16, 16),
                        cond_frames=1)
    lm = build_lm(lm_config("tiny").model, layout)
    torch.nn.init.normal_(lm.lm_head.weight, std=0.5)  # a head with a likeliest code (the built one starts at zero)
    return ARPipeline(lm, tokenizer)


def test_scores_per_predicted_frame_against_a_hand_computation(pipe):
    clips = Subset(EmbeddedClips("val", 16, num_frames=5), range(2))
    out = frame_prediction.score(pipe, DataLoader(clips, batch_size=2, collate_fn=collate), {}, seed=0)
    assert "judge_features" not in out
    assert out["given_frames"] == 1 and out["predicted_frames"] == [1, 2, 3, 4] and out["clips"] == 2
    x = torch.stack([clips[i]["pixels"] for i in range(2)])
    with torch.no_grad():
        recon = pipe.tokenizer.decode(pipe.tokenizer.encode(x).latents, size=x.shape[2:]).sample
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
    record = frame_prediction.main(["--pipeline", str(tmp_path / "frames"), "--scale", "tiny", "--limit", "3",
                                    "--best-of", "2", "--cache", str(tmp_path / "judges"), "--out",
                                    str(tmp_path / "fp.json")])
    written = json.loads((tmp_path / "fp.json").read_text())
    assert written["metrics"]["clips"] == record["metrics"]["clips"] == 3
    assert written["sampling"]["best_of"] == written["metrics"]["best_of"] == 2
    assert written["sampling"]["greedy"] == frame_prediction.GREEDY
    judged = written["metrics"]["judge_features"]
    assert judged["classifier"]["weights_sha256"] and judged["fit_items"] == 66  # 6 clips of each of the 11 classes
    assert set(judged) >= {*frame_prediction.PREDICTORS, "true_clips"} and judged["true_clips"]["frechet"] < 1e-6
    assert list((tmp_path / "judges").iterdir())  # the judge is cached for the next run
    with pytest.raises(SystemExit, match="needs at least 3 clips"):
        frame_prediction.main(["--pipeline", str(tmp_path / "frames"), "--scale", "tiny", "--limit", "2",
                               "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="--best-of must be >= 1"):
        frame_prediction.main(["--pipeline", str(tmp_path / "frames"), "--best-of", "0", "--out", str(tmp_path / "x.json")])
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
                                    "--no-judge", "--out", str(tmp_path / "fp.json")])
    assert record["split"] == "val" and record["metrics"]["clips"] == 1


def clip_batch(pipe, n=2):
    clips = Subset(EmbeddedClips("val", 16, num_frames=5), range(n))
    return clips, torch.stack([clips[i]["pixels"] for i in range(n)])


def test_greedy_decoding_is_the_argmax_code_at_every_step_whatever_the_seed(pipe):
    _, x = clip_batch(pipe)
    greedy = pipe.predict(x, **frame_prediction.GREEDY, seed=0)
    assert torch.equal(greedy, pipe.predict(x, **frame_prediction.GREEDY, seed=7))
    assert torch.equal(greedy, pipe.predict(x, temperature=0.5, top_k=1, seed=3))  # top_k=1: temperature changes nothing
    layout = pipe.layout
    with torch.no_grad():  # by hand: the whole prefix recomputed, argmax over the code tokens
        seq = torch.cat([torch.full((2, 1), layout.null_token),
                         pipe.tokenizer.encode(x[:, :, :pipe.given_frames]).indices.reshape(2, -1)], 1)
        for _ in range(layout.num_codes - layout.num_given):
            logits = pipe.lm(input_ids=seq).logits[:, -1, : layout.codebook_size]
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
        assert torch.equal(greedy, pipe.decode(seq[:, 1:].reshape(2, *layout.grid)))
    assert not torch.equal(greedy, pipe.predict(x, temperature=1.0, top_k=0, seed=0))  # a sample is not the argmax


def test_score_reports_greedy_as_top_k_1_sampling_and_best_of_n_never_below_its_first_sample(pipe):
    clips, _ = clip_batch(pipe)
    loader = DataLoader(clips, batch_size=1, collate_fn=collate)
    sampled = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
    one = frame_prediction.score(pipe, loader, sampled, seed=0, best_of=1)
    assert one["best_of"] == 1 and one["model_best_of_n"] == one["model"]  # N = 1: the as-sampled draw itself
    assert one["model_greedy"] != one["model"]
    three = frame_prediction.score(pipe, loader, sampled, seed=0, best_of=3)
    assert three["model"] == one["model"] and three["model_greedy"] == one["model_greedy"]
    assert three["model_best_of_n"]["psnr"]["mean"] >= three["model"]["psnr"]["mean"]
    greedy = frame_prediction.score(pipe, loader, {"temperature": 0.7, "top_k": 1}, seed=5, best_of=2)
    for name in ("model", "model_best_of_n"):  # top-k 1 sampling is the greedy decoding, at any seed
        assert greedy[name]["psnr"] == greedy["model_greedy"]["psnr"] == one["model_greedy"]["psnr"]
    with pytest.raises(ValueError, match="best_of must be >= 1"):
        frame_prediction.score(pipe, loader, sampled, seed=0, best_of=0)


def test_keep_better_picks_each_clip_by_its_mean_psnr_over_the_predicted_frames():
    x = torch.zeros(2, 3, 3, 4, 4)  # frame 0 given, frames 1-2 predicted

    def offset(d0, d1):  # clip 0 off by d0 on every predicted frame, clip 1 by d1; the given frame off by 1
        y = torch.stack([torch.full((3, 3, 4, 4), d0), torch.full((3, 3, 4, 4), d1)])
        y[:, :, 0] = 1.0
        return y

    a, b = offset(0.1, 0.5), offset(0.3, 0.2)
    # [-1, 1] pixels off by d are [0, 1] pixels off by d / 2: PSNR 10 log10(1 / (d / 2)^2)
    hand = lambda d: 10 * math.log10(1 / (d / 2) ** 2)  # noqa: E731
    sa, sb = frame_prediction.clip_psnr(a, x, 1), frame_prediction.clip_psnr(b, x, 1)
    assert sa.tolist() == pytest.approx([hand(0.1), hand(0.5)], abs=1e-4)
    assert sb.tolist() == pytest.approx([hand(0.3), hand(0.2)], abs=1e-4)
    best, best_score = frame_prediction.keep_better(a, sa, b, sb)
    assert torch.equal(best[0], a[0]) and torch.equal(best[1], b[1])
    assert best_score.tolist() == pytest.approx([hand(0.1), hand(0.2)], abs=1e-4)
    same, _ = frame_prediction.keep_better(a, sa, b, sa)  # a tie keeps what was there
    assert torch.equal(same, a)


def test_judge_distance_is_zero_for_the_true_clips_and_positive_for_the_repeated_frame(pipe):
    torch.manual_seed(0)
    judge = ConvClassifier("video", 11, width=8).eval()  # any network's features: untrained is enough here
    clips = Subset(EmbeddedClips("val", 16, num_frames=5), range(6))
    fit = judge_features(judge, torch.stack([EmbeddedClips("train", 16, num_frames=5)[i]["pixels"] for i in range(12)]))
    out = frame_prediction.score(pipe, DataLoader(clips, batch_size=4, collate_fn=collate), {}, seed=0, best_of=1,
                                 judge=judge, fit=fit)
    judged = out["judge_features"]
    assert "not I3D" in judged["network"] and judged["fit_items"] == 12 and judged["dim"] == 4  # 6 clips - 2
    assert judged["true_clips"]["frechet"] == pytest.approx(0, abs=1e-6)
    assert judged["true_clips"]["precision"] == judged["true_clips"]["recall"] == 1
    assert judged["repeat_last_given"]["frechet"] > 0.01
    assert all(judged[name]["n"] == [6, 6] for name in frame_prediction.PREDICTORS)
    # by hand: the Fréchet distance of the two sets' features in the fitted space
    x = torch.stack([clips[i]["pixels"] for i in range(6)])
    space = FeatureSpace(fit, judge_features(judge, x))
    still = judge_features(judge, x[:, :, :1].expand_as(x))
    assert judged["repeat_last_given"]["frechet"] == pytest.approx(
        frechet_from_features(space.project(still), space.reference)["value"], rel=1e-6)
    with pytest.raises(ValueError, match="needs `fit`"):
        frame_prediction.score(pipe, DataLoader(clips, batch_size=4, collate_fn=collate), {}, seed=0, judge=judge)


def test_the_generator_pages_read_every_predictor():
    from eval import generator_pages

    assert generator_pages.PREDICTION_READINGS == frame_prediction.PREDICTORS
