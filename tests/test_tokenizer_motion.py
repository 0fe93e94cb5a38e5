import math

import pytest
import torch

from bench.tokenizer_motion import future_psnr, repeat_last, table_lines


def test_future_psnr_reads_only_the_frames_after_the_given_ones():
    x = torch.zeros(2, 3, 7, 4, 4)
    y = x.clone()
    y[:, :, :5] = 0.7  # given frames: wrong everywhere, not counted
    y[:, :, 5:] = 0.2  # [-1, 1] pixels: an error of 0.1 on [0, 1], 20 dB
    assert future_psnr(y, x) == pytest.approx(20.0, abs=1e-4)
    y[1, :, 6] = 0.02  # one frame of one clip at 0.01: 40 dB; the mean is over clips and frames
    assert future_psnr(y, x) == pytest.approx((20 + 20 + 20 + 40) / 4, abs=1e-4)
    with pytest.raises(ValueError, match="none after the 5 given"):
        future_psnr(x[:, :, :5], x[:, :, :5])


def test_repeat_last_keeps_the_given_frames_and_repeats_the_fifth():
    x = torch.arange(7.0).view(1, 1, 7, 1, 1).expand(1, 3, 7, 2, 2)
    y = repeat_last(x)
    assert y[0, 0, :, 0, 0].tolist() == [0, 1, 2, 3, 4, 4, 4]
    # a clip that never moves after its given frames is predicted exactly
    still = torch.cat([x[:, :, :5], x[:, :, 4:5].expand(-1, -1, 2, -1, -1)], 2)
    assert future_psnr(repeat_last(still), still) == pytest.approx(10 * math.log10(1e10))


def test_table_puts_each_tokenizer_beside_repeating_the_last_frame():
    weakest = {"name": "pan_up", "share": 0.5}
    ref = {"share": 1.0, "weakest": weakest, "frechet": 2.0}
    result = {"rows": {"real": ref, "class_average": ref, "still": ref,
                       "repeat_last_given": {"future_psnr": 21.0, "held_out_future_psnr": 20.0},
                       "a": {"share": 0.7, "weakest": weakest, "frechet": 40.0, "future_psnr": 22.5,
                             "held_out_future_psnr": 19.5,
                             "stage_validation": {"image": {"psnr": 21.0, "block_edge": 1.4},
                                                  "video": {"psnr": 21.5, "block_edge": 1.6}}}},
              "tokenizers": ["a"], "per_class": 4, "judge_accuracy": 0.97, "given_frames": 5}
    row = next(line for line in table_lines(result) if line.startswith("| a |"))
    assert "70% (pan_up 50%)" in row and "22.50 (+1.50)" in row and "19.50 (-0.50)" in row
    assert "21.00 / 1.40, 21.50 / 1.60" in row
