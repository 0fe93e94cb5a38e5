"""Frame prediction scored against the truth, offline: PSNR and SSIM of every predicted frame of held-out clips
against the real frame at that index, for three readings of the LM beside two reference points measured on the same
clips:

- `model`: one sample per clip with the config's sampling settings (temperature, top-k, top-p), as the LM is used;
- `model_greedy`: the point estimate, greedy decoding (top_k=1: the likeliest code at every step; temperature and
  seed then change nothing). A PSNR rewards the mean of the plausible futures and a random sample is one of them,
  so a sample loses to a blurry guess however good the model; greedy is the LM's own mode-seeking guess, with no
  setting to tune against the truth (a low temperature is a sample still, and its value would be one more choice);
- `model_best_of_n`: N samples per clip (--best-of; the first is `model`'s), the one with the best mean PSNR over
  the predicted frames kept (its SSIM beside it), as stochastic video prediction papers report (SV2P, SAVP). It
  picks by the truth: an oracle figure, an upper bound on what the samples hold, not a predictor;
- `repeat_last_given`: the last given frame repeated (a predictor that knows nothing of motion: the floor to beat);
- `tokenizer_reconstruction`: the tokenizer's reconstruction of the true clip (what a perfect LM over these codes
  could reach: the ceiling).

    python -m eval.frame_prediction --pipeline runs/small/lm_k600/final --videos embedded \
        --out results/small/eval/lm_k600/frame_prediction.json

A distribution figure beside them (--judge, on by default): the Fréchet distance and precision / recall of every
predictor's whole clips to the true clips in the features of the clip judge trained here on the real training clips
(eval.classifier, kept under results/<scale>/classifiers; eval.judge_references' feature space, its principal
directions fitted on a draw of real training clips). The judge is not I3D: its figures compare predictors on this
data only, and the true clips against themselves are 0. At small, on one core, the judge trains once in about
2 minutes; measuring with it adds under 10 seconds to the 40 of the predictions (36 clips, best of 4). An FVD would
need an I3D network with weights, which offline is a random one.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from lm_generation.config import lm_config
from lm_generation.pipeline import ARPipeline
from shared.atomic import atomic_write_json
from shared.data.collate import collate
from shared.metrics.reconstruction import psnr, ssim
from shared.provenance import file_sha256, stamp
from tokenizer.evaluate import reconstruct

from .classifier import PRESETS, ConvClassifier, RealData, load_or_train
from .datasets import held_out_split, video_split
from .judge_references import FEATURE_DIM, FeatureSpace, class_items, judge_features

PREDICTORS = ("model", "model_greedy", "model_best_of_n", "repeat_last_given", "tokenizer_reconstruction")
GREEDY = {"temperature": 1.0, "top_k": 1, "top_p": 1.0}  # the likeliest code at every step
TRUE_CLIPS = "true_clips"  # the judge's reference set, measured against itself too (0)
FIT_ITEMS = 2 * FEATURE_DIM  # real training clips whose judge features fix the feature space's directions
JUDGE = ("the clip judge trained here on the real training clips (eval.classifier), not I3D: its figures compare "
         "predictors on this data only")


def per_frame(metric, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-frame metric of clips (B, 3, T, H, W) as (B, T)."""
    return metric(x_hat, x).view(x.shape[0], x.shape[2])


def clip_psnr(y: torch.Tensor, x: torch.Tensor, given: int) -> torch.Tensor:
    """Each clip's mean PSNR over its predicted frames (those from index `given` on): (B,)."""
    return per_frame(psnr, y[:, :, given:], x[:, :, given:]).mean(1)


def keep_better(best: torch.Tensor, best_score: torch.Tensor, y: torch.Tensor,
                score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip, the better of `best` and `y` by their scores (B,) (a tie keeps `best`), and its score."""
    take = score > best_score
    return torch.where(take.view(-1, 1, 1, 1, 1), y, best), torch.where(take, score, best_score)


def judge_distances(features: dict[str, np.ndarray], fit: np.ndarray) -> dict:
    """Each set's judge features against the true clips' (features[TRUE_CLIPS]), in the principal directions of
    `fit` (real training clips' features): Fréchet distance and precision / recall per set, and the directions kept."""
    space = FeatureSpace(fit, features[TRUE_CLIPS])
    return {"dim": space.dim, "fit_items": len(fit), **{name: space.distance(f) for name, f in features.items()}}


@torch.no_grad()
def score(pipe: ARPipeline, loader, sampling: dict, seed: int, best_of: int = 1,
          judge: ConvClassifier | None = None, fit: np.ndarray | None = None) -> dict:
    """Per predicted frame index: mean PSNR / SSIM of every predictor (PREDICTORS) over every clip of `loader`, and
    their means over the predicted frames. Batch b's sample is drawn with seed + b, best-of-N's n-th with
    seed + n * len(loader) + b (n >= 1). With `judge`: the judge-feature distances of every predictor's clips to the
    true clips (judge_distances, in the directions of `fit`)."""
    if best_of < 1:
        raise ValueError(f"best_of must be >= 1, got {best_of}")
    if judge is not None and fit is None:
        raise ValueError("the judge-feature distance needs `fit`: real training clips' judge features")
    given = pipe.given_frames
    device = next(pipe.lm.parameters()).device
    sums = {name: {"psnr": 0.0, "ssim": 0.0} for name in PREDICTORS}
    features: dict[str, list[np.ndarray]] = {name: [] for name in (*PREDICTORS, TRUE_CLIPS)}
    clips = 0
    for b, batch in enumerate(tqdm(loader, desc="frame prediction", unit="batch")):
        x = batch["pixels"].to(device)
        sampled = pipe.predict(x, **sampling, seed=seed + b)
        best, best_score = sampled, clip_psnr(sampled, x, given)
        for n in range(1, best_of):
            y = pipe.predict(x, **sampling, seed=seed + n * len(loader) + b)
            best, best_score = keep_better(best, best_score, y, clip_psnr(y, x, given))
        outputs = {"model": sampled, "model_greedy": pipe.predict(x, **GREEDY, seed=seed), "model_best_of_n": best,
                   "repeat_last_given": x[:, :, given - 1 : given].expand_as(x),
                   "tokenizer_reconstruction": reconstruct(pipe.tokenizer, x)[0].clamp(-1, 1)}
        for name, y in outputs.items():
            for key, metric in (("psnr", psnr), ("ssim", ssim)):
                sums[name][key] = sums[name][key] + per_frame(metric, y[:, :, given:], x[:, :, given:]).sum(0).cpu()
        if judge is not None:
            for name, y in {**outputs, TRUE_CLIPS: x}.items():
                features[name].append(judge_features(judge, y))
        clips += x.shape[0]
    out = {"given_frames": given, "predicted_frames": list(range(given, given + len(sums["model"]["psnr"]))),
           "clips": clips, "best_of": best_of}
    for name, s in sums.items():
        out[name] = {key: {"per_frame": (v / clips).tolist(), "mean": float((v / clips).mean())} for key, v in s.items()}
    out["beats_repeating_the_last_frame"] = out["model"]["psnr"]["mean"] > out["repeat_last_given"]["psnr"]["mean"]
    if judge is not None:
        out["judge_features"] = {"network": JUDGE,
                                 **judge_distances({k: np.concatenate(v) for k, v in features.items()}, fit)}
    return out


def load_judge(real: RealData, scale: str, cache: str) -> tuple[ConvClassifier, np.ndarray, dict]:
    """The clip judge of `real` (trained and cached first if there is none), the judge features of FIT_ITEMS real
    training clips (as many of each class) and the judge's record."""
    net, record = load_or_train(real, PRESETS[scale]["video"], cache)
    known = record["known_classes"]
    fit = judge_features(net, class_items(real, known, math.ceil(FIT_ITEMS / len(known)))[0])
    return net, fit, record


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", required=True, help="a frame-prediction LM's pipeline folder (its final/)")
    ap.add_argument("--videos", default="embedded", help="held-out clips: 'embedded' or a video folder")
    ap.add_argument("--video-layout", default="classes", choices=["ucf101", "classes", "plain"])
    ap.add_argument("--split", default="val")
    ap.add_argument("--scale", default="small", help="config whose sample section gives temperature, top-k, top-p; "
                                                     "the judge's training preset")
    ap.add_argument("--limit", type=int, default=None, help="at most this many clips")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--best-of", type=int, default=4, help="samples per clip behind the best-of-N (oracle) figure")
    ap.add_argument("--judge", action=argparse.BooleanOptionalAction, default=True,
                    help="the judge-feature distance of every predictor's clips to the true clips")
    ap.add_argument("--cache", default=None, help="classifier folder (default results/<scale>/classifiers)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="result JSON")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit must be >= 1, got {args.limit}")
    if args.best_of < 1:
        raise SystemExit(f"--best-of must be >= 1, got {args.best_of}")
    if args.judge and args.scale not in PRESETS:
        raise SystemExit(f"--scale {args.scale}: the judge trains with a preset of {sorted(PRESETS)}; give one of "
                         f"them or --no-judge")
    try:
        split = held_out_split(args.videos, args.split)
    except ValueError as exc:
        raise SystemExit(f"--split: {exc}") from None
    pipe = ARPipeline.from_pretrained(args.pipeline, "cuda" if torch.cuda.is_available() else "cpu")
    if pipe.layout.cond_frames == 0:
        raise SystemExit(f"{args.pipeline}: this LM does not predict frames (trained with no given latent frames)")
    frames, h, w = pipe.layout.size
    data = video_split(args.videos, args.video_layout, split, frames, None, (h, w))
    if args.limit is not None and args.limit < len(data):
        data = Subset(data, range(args.limit))
    start = time.perf_counter()
    judge = fit = classifier = None
    if args.judge:
        if len(data) < 3 or h != w:
            raise SystemExit(f"the judge-feature distance needs at least 3 clips (got {len(data)}) of square frames "
                             f"(got {h}x{w}); give more or --no-judge")
        real = RealData("video", args.videos, h, frames, args.video_layout)
        judge, fit, trained = load_judge(real, args.scale, args.cache or f"results/{args.scale}/classifiers")
        classifier = {"accuracy": trained["held_out_accuracy"], "chance": trained["chance"],
                      "weights_sha256": trained["weights_sha256"], "data": trained["data"]}
    s = lm_config(args.scale, task="frames").sample
    sampling = {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p}
    result = score(pipe, DataLoader(data, batch_size=args.batch_size, collate_fn=collate), sampling, args.seed,
                   args.best_of, judge, fit)
    if classifier:
        result["judge_features"]["classifier"] = classifier
    record = {"metrics": result, "pipeline": str(Path(args.pipeline).resolve()),
              "pipeline_sha256": file_sha256(Path(args.pipeline) / "model.safetensors"), "videos": args.videos,
              "split": split, "frames": frames, "resolution": [h, w],
              "sampling": {**sampling, "seed": args.seed, "greedy": GREEDY, "best_of": args.best_of},
              "threads": torch.get_num_threads(), "eval_seconds": time.perf_counter() - start, **stamp()}
    atomic_write_json(args.out, record)
    m = result
    means = {name: m[name]["psnr"]["mean"] for name in PREDICTORS}
    print(f"predicted frames {m['predicted_frames'][0]}-{m['predicted_frames'][-1]} of {m['clips']} clips, mean PSNR: "
          f"model as sampled {means['model']:.2f} dB, greedy {means['model_greedy']:.2f}, best of {args.best_of} "
          f"(oracle) {means['model_best_of_n']:.2f}, last given frame repeated {means['repeat_last_given']:.2f}, "
          f"tokenizer reconstruction {means['tokenizer_reconstruction']:.2f}")
    if args.judge:
        fd = {name: m["judge_features"][name]["frechet"] for name in (*PREDICTORS, TRUE_CLIPS)}
        print("judge-feature Fréchet distance to the true clips (the judge trained here, not I3D): "
              + ", ".join(f"{name} {v:.2f}" for name, v in fd.items()))
    return record


if __name__ == "__main__":
    main()
