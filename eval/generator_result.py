"""A generator run's result file, results/<scale>/<experiment>.json: written by eval.generation_report, read by
eval.tables, eval.generator_pages and eval.motion_stages through these dataclasses, never by walking dicts.

    result = read_result("results/small/lm_imagenet.json")
    best = max(result.judged(), key=lambda m: m.class_consistency)

Every field declared here is checked when a file is read (shared.config.build): a file missing one, holding a value
of the wrong type, or of another `schema_version` is an error naming the file, the field and how to write the file
again, never an empty table cell. A key the classes do not declare is left in the file unread: a step may add one
(to read it, declare it here with a default, so that the files written before it still read). A change that files
written before it cannot meet raises SCHEMA_VERSION.

Version 1 is the layout eval.generation_report wrote before it recorded the version: a file without
`schema_version` is read as version 1. The per-guidance figures are keyed by the scale's key (shared.guidance):
`metrics["cfg<s>"]`, each holding its `guidance_scale`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shared.atomic import read_json_object
from shared.config import ConfigError, build
from shared.guidance import guidance_key

SCHEMA_VERSION = 1
# eval.sample_metrics' figures an image generator's and a video generator's entries hold
IMAGE_FIGURES = ("fid", "inception_score", "kid", "precision", "recall")
VIDEO_FIGURES = ("fvd",)


class ResultError(ValueError):
    """A result file this version does not read: the message names the file, what is wrong and the remedy."""


class Record:
    """A part of a result file: keys it does not declare are left unread."""
    ignores_unknown_fields = True


@dataclass(frozen=True)
class ClassShare(Record):
    """The judge's share of one class (eval.class_consistency)."""
    index: int = field(metadata={"key": "class"})
    name: str
    n: int
    share: float


@dataclass(frozen=True)
class Frechet(Record):
    """A Fréchet distance in a feature network's space (eval.frechet): FID, FVD."""
    value: float
    n: list[int]
    dim: int
    full_rank_covariance: bool


@dataclass(frozen=True)
class JudgeDistance(Record):
    """The Fréchet distance and precision / recall in the judge's features (eval.judge_references)."""
    frechet: float
    precision: float
    recall: float


@dataclass(frozen=True)
class Mean(Record):
    """A figure averaged over subsets, frames or clips (its spread, where recorded, is left unread)."""
    mean: float


@dataclass(frozen=True)
class Nearer(Record):
    """eval.novelty in one space: the share of samples nearer a training item than fresh real items are."""
    nearer_than_fresh: float


@dataclass(frozen=True)
class Copies(Record):
    """eval.novelty on VQ codes: the share of samples with most of their codes from one training row."""
    near_copies: float


@dataclass(frozen=True)
class SampleNovelty(Record):
    latent: Nearer
    judge: Nearer
    codes: Copies | None = None  # VQ codes only


@dataclass(frozen=True)
class GuidanceResult(Record):
    """One guidance scale's samples and their figures: eval.sample_metrics' (IMAGE_FIGURES or VIDEO_FIGURES, by the
    generator's task) and the judge's (None for an unconditional generator)."""
    guidance_scale: float
    n_samples: int  # scored by eval.sample_metrics (--limit)
    n_sampled: int
    sampling_seconds: float
    grid: str
    network: str
    class_consistency: float | None
    class_consistency_per_class: list[ClassShare] | None
    judge_features: JudgeDistance | None
    novelty: SampleNovelty | None
    fid: Frechet | None = None
    inception_score: Mean | None = None
    precision: float | None = None
    recall: float | None = None
    kid: Mean | None = None
    fvd: Frechet | None = None
    protocol: dict | None = None  # eval.protocols' name and record of the FID / FVD / IS above, as run

    def weakest_share(self) -> float | None:
        return min(c.share for c in self.class_consistency_per_class) if self.class_consistency_per_class else None


@dataclass(frozen=True)
class Classifier(Record):
    """The judge's accuracy on held-out real data, and whether its share of the samples rises with guidance."""
    classifier_accuracy: float
    chance: float
    rises_with_guidance: bool | None


@dataclass(frozen=True)
class ReferencePoint(Record):
    """A reference point scored by the judge (eval.judge_references): real items, their reconstructions ..."""
    n: int
    share: float
    per_class: list[ClassShare]
    feature_distance: JudgeDistance | None


@dataclass(frozen=True)
class Data(Record):
    """What the generator learnt from (the extraction's manifest)."""
    source: str
    split: str | None
    items: int | None
    resolution: int
    frames: int


@dataclass(frozen=True)
class WallSeconds(Record):
    extraction: float | None
    training: float
    sampling: float
    evaluation: float

    @property
    def total(self) -> float:
        return sum(v for v in (self.extraction, self.training, self.sampling, self.evaluation) if v)


@dataclass(frozen=True)
class Reading(Record):
    """One reading of frame prediction against the true frames: its PSNR (dB), mean over frames and clips."""
    psnr: Mean


@dataclass(frozen=True)
class PredictionDistances(Record):
    """Each reading's distance to the true clips in the clip judge's features."""
    model: JudgeDistance
    model_greedy: JudgeDistance
    model_best_of_n: JudgeDistance
    repeat_last_given: JudgeDistance
    tokenizer_reconstruction: JudgeDistance


@dataclass(frozen=True)
class PredictionScores(Record):
    """eval.frame_prediction's figures: each reading's PSNR (the model as sampled, greedy and best of N; the last
    given frame repeated; the tokenizer's reconstruction of the truth), and their judge-feature distances where
    measured."""
    predicted_frames: list[int]
    clips: int
    best_of: int
    model: Reading
    model_greedy: Reading
    model_best_of_n: Reading
    repeat_last_given: Reading
    tokenizer_reconstruction: Reading
    judge_features: PredictionDistances | None = None


@dataclass(frozen=True)
class FramePrediction(Record):
    metrics: PredictionScores


@dataclass(frozen=True)
class Samples(Record):
    """The samples' record (shared.sample_folders' samples.json without its folders)."""
    classes: list[int]
    per_class: int
    seed: int
    sampling: dict[str, Any]


@dataclass(frozen=True)
class GeneratorResult(Record):
    schema_version: int
    generator: str
    task: Literal["image", "video", "frames"]
    experiment: str
    scale: str
    metrics: dict[str, GuidanceResult]  # by guidance key
    classifier: Classifier | None
    references: dict[str, ReferencePoint] | None
    frame_prediction: FramePrediction | None
    data: Data
    steps: int
    parameters: int
    threads: int
    precision: str
    machine: str
    wall_seconds: WallSeconds
    sampling: Samples

    @property
    def metric(self) -> str:
        """The Fréchet distance of the generator's samples: FID (images) or FVD (clips)."""
        return "fid" if self.task == "image" else "fvd"

    def by_guidance(self) -> list[GuidanceResult]:
        return sorted(self.metrics.values(), key=lambda m: m.guidance_scale)

    def judged(self) -> list[GuidanceResult]:
        """The guidance scales whose samples the judge scored."""
        return [m for m in self.by_guidance() if m.class_consistency is not None]


def remedy(path: Path) -> str:
    """How to write a generator's result file again: from its run's files, or by its make target."""
    scale, name = path.parent.name, path.stem
    return (f"write it again from its run's files (python -m eval.generation_report --run runs/{scale}/{name} "
            f"--metrics {path.parent}/eval/{name} --scale {scale} --out {path}), or delete it and run "
            f"`make {name.replace('_', '-')} SCALE={scale}`")


def result_from(values: dict, path: str | Path, fix: str | None = None) -> GeneratorResult:
    """A result file's contents checked against this schema; a ResultError naming `path` and `fix` (default: how to
    write the file again) where they do not fit."""
    path = Path(path)
    fix = fix or remedy(path)
    version = values.get("schema_version", 1)
    if version != SCHEMA_VERSION:
        raise ResultError(f"{path}: a generator result of schema version {version!r}; this version of the project "
                          f"reads version {SCHEMA_VERSION}: {fix}")
    try:
        result = build(GeneratorResult, {**values, "schema_version": version}, str(path))
    except ConfigError as exc:
        raise ResultError(f"{exc}; {fix}") from None
    figures = IMAGE_FIGURES if result.task == "image" else VIDEO_FIGURES
    for key, entry in result.metrics.items():
        if key != guidance_key(entry.guidance_scale):
            raise ResultError(f"{path}: metrics[{key!r}] holds guidance scale {entry.guidance_scale:g}, whose key is "
                              f"{guidance_key(entry.guidance_scale)!r}; {fix}")
        missing = [f for f in figures if getattr(entry, f) is None]
        if missing:
            raise ResultError(f"{path}: metrics[{key!r}] of a {result.task} generator holds no {', '.join(missing)}; "
                              f"{fix}")
    return result


def read_result(path: str | Path) -> GeneratorResult:
    return result_from(read_json_object(Path(path), "generator result"), path)
