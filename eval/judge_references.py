"""The scale beside a class-consistency share: what "generators" that need no training score with the same judge,
and a distribution figure in the judge's own features.

Reference points, each scored on real training items drawn class by class (as many per class as the samples
have):
- `flat_colour`: every pixel one colour, the mean colour of a class average (below);
- `class_average`: the pixel-wise mean of a resample (with replacement) of AVERAGE_OF drawn items of the class:
  a blurry class average, a little different for each item;
- `still` (clips): a real clip's first frame repeated, content without motion;
- `real`: the items themselves (a generator that copies its data: the ceiling);
- `reconstruction`: the items through the generator's tokenizer (the ceiling of a generator whose samples pass
  through that decoder).

The distribution figure: the judge's pooled features (what its last layer reads), projected on the leading
principal directions of a draw of real items so that the sample counts give a full-rank covariance, then the
Fréchet distance and k-nearest-neighbour precision / recall (torch-fidelity's) against a second, independent draw
of real items. Real against real is the floor. The network is the judge trained here on the real training split,
not Inception or I3D: its figures compare generators on this data only.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch_fidelity.metric_prc import prc_features_to_metric

from shared.data import SampleKey

from .classifier import ConvClassifier, RealData, autocast, device, judge
from .frechet import frechet_from_features

REAL_DRAW_SEED = 2**40  # seeds of the reference draws: far above the classifier's held-out seeds
FEATURE_DIM = 32  # principal directions kept; a few hundred items give a full-rank covariance
AVERAGE_OF = 64  # items of a class behind each class-average item


# --------------------------------------------------------------------------------------------------------------
# Real items, class by class
# --------------------------------------------------------------------------------------------------------------

def class_items(data: RealData, known: list[int], per_class: int, draw: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` random training items of each known class: (pixels (N, 3, T, H, W), labels (N,)), class-major.

    A folder's items are picked by their label; the embedded data's class comes with each random draw, so items
    are drawn until every class has its share. `draw` picks an independent draw (other seeds)."""
    train, size = data.train, (data.resolution, data.resolution)
    base = REAL_DRAW_SEED + draw * 10_000_000
    buckets: dict[int, list[torch.Tensor]] = defaultdict(list)
    labelled = getattr(train, "samples", None)
    if labelled is not None:  # folders: (path, label) per item
        by_class = defaultdict(list)
        for i, (_, label) in enumerate(labelled):
            by_class[label].append(i)
        g = torch.Generator().manual_seed(base)
        for c in known:
            pick = torch.randint(len(by_class[c]), (per_class,), generator=g).tolist() if by_class[c] else []
            buckets[c] = [train[SampleKey(by_class[c][j], base + k, *size)]["pixels"] for k, j in enumerate(pick)]
    else:
        wanted, limit = set(known), 200 * per_class * len(known)
        for i in range(limit):
            if not wanted:
                break
            item = train[SampleKey(i, base + i, *size)]
            c = int(item["label"])
            if c in wanted:
                buckets[c].append(item["pixels"])
                if len(buckets[c]) == per_class:
                    wanted.discard(c)
    short = [c for c in known if len(buckets[c]) < per_class]
    if short:
        raise ValueError(f"{data.describe()}: could not draw {per_class} training items of classes {short[:10]}")
    pixels = torch.stack([x for c in known for x in buckets[c]])
    return pixels, torch.tensor([c for c in known for _ in range(per_class)])


def reference_sets(pixels: torch.Tensor, labels: torch.Tensor, kind: str, pool: tuple[torch.Tensor, torch.Tensor],
                   seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The no-training generators built from real items, as many items as `pixels` has: name -> (pixels, labels).
    pool: (pixels, labels) of more items of the classes, that the class averages are taken over."""
    g = torch.Generator().manual_seed(seed)
    average = torch.empty_like(pixels)
    for c in labels.unique():
        members = pool[0][pool[1] == c]
        for r in (labels == c).nonzero().flatten():  # each item: the mean of a resample of the class's pool
            average[r] = members[torch.randint(len(members), (len(members),), generator=g)].mean(0)
    flat = average.mean(dim=(2, 3, 4), keepdim=True).expand_as(average).contiguous()
    sets = {"flat_colour": (flat, labels), "class_average": (average, labels)}
    if kind == "video":
        sets["still"] = (pixels[:, :, :1].expand_as(pixels).contiguous(), labels)
    sets["real"] = (pixels, labels)
    return sets


@torch.no_grad()
def reconstruct_items(pixels: torch.Tensor, tokenizer: str, batch_size: int = 16) -> torch.Tensor:
    """The items encoded and decoded by a tokenizer (a save_pretrained folder), clamped to [-1, 1]."""
    from tokenizer import OmniTokenizer
    from tokenizer.evaluate import reconstruct

    dev = device()
    model = OmniTokenizer.from_pretrained(tokenizer).to(dev).eval()
    out = []
    for i in range(0, len(pixels), batch_size):
        with autocast(dev):
            out.append(reconstruct(model, pixels[i : i + batch_size].to(dev))[0].float().clamp(-1, 1).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------------------

def class_shares(hit: torch.Tensor, labels: torch.Tensor, names: list[str]) -> list[dict]:
    """Per class: how many items, and the share the judge assigned their label (hit: bool per item)."""
    return [{"class": c, "name": names[c], "n": int((labels == c).sum()),
             "share": int(hit[labels == c].sum()) / int((labels == c).sum())} for c in sorted(set(labels.tolist()))]


@torch.no_grad()
def score(net: ConvClassifier, pixels: torch.Tensor, labels: torch.Tensor, known: list[int], names: list[str],
          space: "FeatureSpace", batch_size: int = 32) -> dict:
    """The judge's share of items assigned their label, overall and per class, and their distance in its feature
    space; one pass of the judge per batch gives both."""
    predicted, features = [], []
    for i in range(0, len(pixels), batch_size):
        probs, feats = judge(net, pixels[i : i + batch_size], known)
        predicted.append(probs.argmax(-1))
        features.append(feats)
    hit = torch.cat(predicted) == labels
    return {"n": len(labels), "share": int(hit.sum()) / len(labels), "per_class": class_shares(hit, labels, names),
            "feature_distance": space.distance(torch.cat(features).numpy().astype(np.float64))}


@torch.no_grad()
def judge_features(net: ConvClassifier, pixels: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """The judge's pooled features (the input of its last layer), (N, width)."""
    dev = next(net.parameters()).device
    out = []
    for i in range(0, len(pixels), batch_size):
        with autocast(dev.type):
            out.append(net.embed(pixels[i : i + batch_size].to(dev)).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


class FeatureSpace:
    """The leading principal directions of real items' judge features, and the second real draw compared against."""

    def __init__(self, fit: np.ndarray, reference: np.ndarray, dim: int = FEATURE_DIM):
        dim = min(dim, fit.shape[1], len(fit) - 1, len(reference) - 2)
        if dim < 1:
            raise ValueError(f"too few real items ({len(fit)}, {len(reference)}) for a feature space")
        self.mean = fit.mean(0)
        _, _, vt = np.linalg.svd(fit - self.mean, full_matrices=False)
        self.basis = vt[:dim].T
        self.reference = self.project(reference)

    @property
    def dim(self) -> int:
        return self.basis.shape[1]

    def project(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) @ self.basis

    def distance(self, features: np.ndarray) -> dict:
        """Fréchet distance and precision / recall of `features` (unprojected) against the real reference draw."""
        a = self.project(features)
        if len(a) < 2:
            raise ValueError(f"need at least 2 items for a Fréchet distance, got {len(a)}")
        fd = frechet_from_features(a, self.reference)
        k = min(3, len(a) - 1, len(self.reference) - 1)
        prc = prc_features_to_metric(torch.from_numpy(a).float(), torch.from_numpy(self.reference).float(),
                                     prc_neighborhood=k, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
        return {"frechet": fd["value"], "full_rank_covariance": fd["full_rank_covariance"], "n": fd["n"],
                "precision": float(prc["precision"]), "recall": float(prc["recall"]), "neighbours": k}


def reference_points(net: ConvClassifier, data: RealData, known: list[int], names: list[str], per_class: int,
                     tokenizer: str | None = None,
                     items: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[dict, FeatureSpace]:
    """Every reference point's share (overall and per class) and judge-feature distance, and the feature space
    (fitted on one real draw, compared against a second) that generated samples are measured in. `items`: the real
    draw the points are made of (class_items' draw 0) where the caller already holds it."""
    pixels, labels = items if items is not None else class_items(data, known, per_class, draw=0)
    other, _ = class_items(data, known, per_class, draw=1)
    space = FeatureSpace(judge_features(net, other), judge_features(net, class_items(data, known, per_class, draw=2)[0]))
    sets = reference_sets(pixels, labels, data.kind, class_items(data, known, max(per_class, AVERAGE_OF), draw=3))
    if tokenizer:
        sets["reconstruction"] = (reconstruct_items(pixels, tokenizer), labels)
    return {name: score(net, x, y, known, names, space) for name, (x, y) in sets.items()}, space
