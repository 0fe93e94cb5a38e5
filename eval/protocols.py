"""Evaluation protocols: each a frozen record of every choice a FID / FVD / IS / precision-recall figure depends on.

A figure is comparable with a paper's only when both were computed under the same record: the feature network and
the form of its weights (a TensorFlow graph and its PyTorch ports compute different numbers), what reaches the
network (how float frames become 8-bit, the range, the resize), which frames of a clip, how many items are counted
against which real split and how many real items, the seed of any random selection, and the estimators (covariance,
Inception Score splits, precision / recall neighbourhoods). The registry names the records of the evaluators the
papers cite and the project's own; `eval.tokenizer_eval` and `eval.sample_metrics` compute under a named protocol
(`--image-protocol` / `--video-protocol`, `--protocol`) and write the record of what they actually ran (`run_record`:
the protocol with the network, weights, counts, split, frames and resolution of the run) beside every figure;
`differences` names the fields where a run's record and a paper's protocol differ (eval.protocol_match, TABLES.md).

A weights file for a network whose hash is known (a full sha256, the sha256 prefix of a torch.hub file name, or the
git object id a repository ships the file under) is checked before use: another file is an error, not a figure under
the wrong network.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from shared.provenance import file_sha256

QUANTIZATIONS = ("none", "round", "floor")  # how float frames in [-1, 1] reach the network: as floats, or 8-bit
COVARIANCES = ("unbiased", "biased")  # the covariance estimator: divide by n - 1 (np.cov) or by n


@dataclass(frozen=True)
class Weights:
    file: str  # the file name people use
    get: str  # where people get it
    sha256: str | None = None
    sha256_prefix: str | None = None  # torch.hub's file-name convention: the first hex digits of the sha256
    git_blob: str | None = None  # `git hash-object <file>`: the id a repository ships the file under


@dataclass(frozen=True)
class Network:
    name: str
    family: str  # "inception" or "i3d": which networks can stand in for each other in a run
    form: str  # the code that runs it: "tensorflow", "torch-fidelity", "pytorch-fid", "videogpt", "torchscript"
    weights: Weights | None  # None: a fixed-seed random network
    input: str  # what the network is fed
    resize: str
    features: str


@dataclass(frozen=True)
class Protocol:
    name: str
    cites: str  # the code that defines it
    metrics: tuple[str, ...]
    network: Network
    quantization: str  # QUANTIZATIONS
    resolution: str | None  # the frames' size before the network's own resize; None: as given
    frames: int | None  # per clip (None: images)
    stride: int | None
    clip: str | None  # which frames of a video
    items: int | None  # generated or reconstructed items counted; None: every item of the split
    real_split: str | None  # None: as given
    real_count: int | None  # real items; None: every item of the split
    seed: int | None  # of a random selection; None: unseeded (any seed)
    covariance: str  # COVARIANCES
    inception_score: str | None = None
    kid: str | None = None
    precision_recall: str | None = None

    def __post_init__(self):
        if self.quantization not in QUANTIZATIONS or self.covariance not in COVARIANCES:
            raise ValueError(f"protocol {self.name}: quantization must be one of {QUANTIZATIONS} and covariance one "
                             f"of {COVARIANCES}, got {self.quantization!r} / {self.covariance!r}")


# ---------------------------------------------------------------------------------------------- the networks

INCEPTION_INPUT = "uint8 [0, 255], any size"
TF_INCEPTION = Network(
    "Inception-v3 (2015-12-05 FID graph), TensorFlow", "inception", "tensorflow",
    Weights("classify_image_graph_def.pb",
            "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/classify_image_graph_def.pb "
            "(the ADM evaluator downloads it)"),
    INCEPTION_INPUT, "TensorFlow 1 bilinear to 299x299 inside the graph",
    "pool_3 (2048); IS: softmax of pool_3 times the logits weights (1008, no bias)")
TORCH_FIDELITY_INCEPTION = replace(
    TF_INCEPTION, name="Inception-v3 (2015-12-05 FID graph), torch-fidelity's PyTorch port", form="torch-fidelity",
    weights=Weights("weights-inception-2015-12-05-6726825d.pth",
                    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                    "weights-inception-2015-12-05-6726825d.pth (torch-fidelity downloads it)",
                    sha256_prefix="6726825d"),
    resize="bilinear as TensorFlow 1 computes it (torch-fidelity), to 299x299",
    features="pool (2048); IS: logits without bias (1008)")
PYTORCH_FID_INCEPTION = Network(
    "Inception-v3 (2015-12-05 FID graph), pytorch-fid's PyTorch port", "inception", "pytorch-fid",
    Weights("pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth (pytorch-fid downloads it)", sha256_prefix="6726825d"),
    "8-bit PNG files read as [0, 1], then 2x - 1", "bilinear (torch, align_corners=False) to 299x299", "pool (2048)")
I3D_INPUT = "8-bit frames as [-1, 1]"
VIDEOGPT_I3D = Network(
    "I3D (Kinetics-400), VideoGPT's PyTorch port", "i3d", "videogpt",
    Weights("i3d_pretrained_400.pt", "the OmniTokenizer release ships it as OmniTokenizer/fvd/i3d_pretrained_400.pt "
            "(VideoGPT's file)", git_blob="a867b87ac3a9097d200598b1d48a1b890d8ec744"),
    I3D_INPUT, "bilinear (torch, align_corners=False) to 224x224", "400 logits averaged over time")
VIDEOGPT_I3D_SHORT_SIDE = replace(  # common_metrics_on_video_quality's preprocessing, which fvd_external.py calls
    VIDEOGPT_I3D, name="I3D (Kinetics-400), VideoGPT's PyTorch port after a shorter-side resize and centre crop",
    form="videogpt-shorter-side", resize="shorter side to 224, bilinear (torch, align_corners=False), centre crop")
STYLEGANV_I3D = Network(
    "I3D (Kinetics-400), StyleGAN-V's TorchScript", "i3d", "torchscript",
    Weights("i3d_torchscript.pt", "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1 (StyleGAN-V's "
            "address; the OmniTokenizer release ships the file under the git id given)",
            git_blob="93daef59c7ae0e9e8f76225521407e60cbafa6aa"),
    "uint8 [0, 255] (rescale=True)", "inside the TorchScript (resize=True), to 224x224",
    "raw features before the softmax (return_features=True)")
# the forms this project runs; a protocol naming another form of a family runs on this one (and its record says so)
RUNNABLE_FORMS = ("torch-fidelity", "videogpt", "torchscript")
RUNNABLE = {"inception": TORCH_FIDELITY_INCEPTION, "i3d": VIDEOGPT_I3D}

# ---------------------------------------------------------------------------------------------- the protocols

IS_TORCH_FIDELITY = "10 splits after a shuffle (seed 2020), mean and std"
IS_ADM = "splits of 5000 samples in order, mean"
IS_SMALL = "min(10, n // 2) splits after a shuffle (seed 2020), mean and std"
PR_TORCH_FIDELITY = ("k = 3 (the 3rd nearest other item), float32 distances, of VGG-16 fc2 features (torch-fidelity's "
                     "default network for precision / recall)")
PR_TORCH_FIDELITY_INCEPTION = "k = 3 (the 3rd nearest other item), float32 distances, of the Inception pool features"
PR_ADM = ("k = 3 (the 3rd nearest other item), float16 squared distances, float32 where float16 overflows, of the "
          "Inception pool features")
PR_SMALL = "k = min(3, n - 1), float32 distances, of the Inception pool features"
# a rule this project computes otherwise, and how it does (its precision / recall are of the Inception features)
RUNS_AS = {PR_TORCH_FIDELITY: PR_TORCH_FIDELITY_INCEPTION}
KID_TORCH_FIDELITY = "100 subsets of 1000, polynomial kernel of degree 3"
KID_SMALL = "100 subsets of min(1000, n), polynomial kernel of degree 3"
CENTRE_OURS = "centre: first frame (length - span) // 2"
CENTRE_RELEASE = "centre: first frame length // 2 - frames // 2"
EVERY_ITEM = "every item of the folder"  # a folder without splits (eval.datasets.split_label)
RELEASE_VAL = "val (the release's annotations/*_val.txt, not published)"
STYLEGAN_V_CLIPS = ("the first `real count` videos in name order (videos under frames x stride left out), each from "
                    "a uniform random start; generated clips from their first frame")

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol("omnitokenizer-rfid", cites="FoundationVision/OmniTokenizer: vqgan_eval.py --inference_type image (inputs "
             "and reconstructions saved as PNG), then evaluation/pytorch-fid", metrics=("rfid",),
             network=PYTORCH_FID_INCEPTION, quantization="floor", resolution="256", frames=None, stride=None,
             clip=None, items=None, real_split="val", real_count=None, seed=None, covariance="unbiased"),
    Protocol("omnitokenizer-rfvd", cites="FoundationVision/OmniTokenizer: vqgan_eval.py --inference_type video, "
             "OmniTokenizer/fvd/fvd.py", metrics=("rfvd",), network=VIDEOGPT_I3D, quantization="floor",
             resolution="256 (decord, aspect not kept)", frames=17, stride=1, clip=CENTRE_RELEASE, items=None,
             real_split=RELEASE_VAL, real_count=None, seed=None, covariance="unbiased"),
    Protocol("omnitokenizer-fvd", cites="FoundationVision/OmniTokenizer: evaluation/fvd_external.py (method videogpt)",
             metrics=("fvd",), network=VIDEOGPT_I3D_SHORT_SIDE, quantization="floor",
             resolution="128 (UCF-101) / 64 (K600), decord", frames=17, stride=1, clip=CENTRE_RELEASE, items=2048,
             real_split="train", real_count=2048, seed=None, covariance="unbiased"),
    Protocol("stylegan-v-fvd2048-16f", cites="universome/stylegan-v: src/metrics/metric_main.py fvd2048_16f "
             "(frechet_video_distance.py, metric_utils.py FeatureStats, training/dataset.py)", metrics=("fvd",),
             network=STYLEGANV_I3D, quantization="round", resolution="256", frames=16, stride=1, clip=STYLEGAN_V_CLIPS,
             items=2048, real_split=EVERY_ITEM, real_count=2048, seed=None, covariance="biased"),
    Protocol("adm", cites="openai/guided-diffusion: evaluations/evaluator.py",
             metrics=("fid", "inception_score", "precision", "recall"), network=TF_INCEPTION, quantization="round",
             resolution="256", frames=None, stride=None, clip=None, items=50000,
             real_split="train (VIRTUAL_imagenet256_labeled.npz: statistics of the whole split, 10,000 images for "
             "precision / recall)", real_count=10000, seed=None, covariance="unbiased", inception_score=IS_ADM,
             precision_recall=PR_ADM),
    Protocol("torch-fidelity", cites="toshas/torch-fidelity: calculate_metrics with its default arguments",
             metrics=("fid", "inception_score", "kid", "precision", "recall"), network=TORCH_FIDELITY_INCEPTION,
             quantization="round", resolution=None, frames=None, stride=None, clip=None, items=None, real_split=None,
             real_count=None, seed=2020, covariance="unbiased", inception_score=IS_TORCH_FIDELITY,
             kid=KID_TORCH_FIDELITY, precision_recall=PR_TORCH_FIDELITY),
    Protocol("project-image", cites="this project's small-scale evaluation (eval.image_fidelity): torch-fidelity's "
             "functions, adapted to a few hundred images",
             metrics=("fid", "rfid", "inception_score", "kid", "precision", "recall"), network=TORCH_FIDELITY_INCEPTION,
             quantization="round", resolution=None, frames=None, stride=None, clip=None, items=None, real_split=None,
             real_count=None, seed=2020, covariance="unbiased", inception_score=IS_SMALL, kid=KID_SMALL,
             precision_recall=PR_SMALL),
    Protocol("project-video", cites="this project's small-scale evaluation (eval.video_fidelity)",
             metrics=("fvd", "rfvd"), network=VIDEOGPT_I3D, quantization="none", resolution=None, frames=None,
             stride=1, clip=CENTRE_OURS, items=None, real_split=None, real_count=None, seed=None,
             covariance="unbiased"),
]}
DEFAULT = {"image": "project-image", "video": "project-video"}


def names(kind: str) -> list[str]:
    """The registry's protocols of images ("image") or of videos ("video")."""
    return [n for n, p in PROTOCOLS.items() if (p.network.family == "inception") == (kind == "image")]


def protocol(name: str, kind: str) -> Protocol:
    """The registry's protocol `name` of `kind` ("image" or "video"); an error naming the registry's protocols of that
    kind where there is none."""
    if name not in names(kind):
        raise ValueError(f"no {kind} protocol {name!r}; the registry (eval/protocols.py) has {', '.join(names(kind))}")
    return PROTOCOLS[name]


def runnable_network(p: Protocol) -> Network:
    """The network this project runs for protocol `p`: its own where the project runs that form, else the form of
    the same family that it runs (torch-fidelity's Inception for TensorFlow's or pytorch-fid's)."""
    return p.network if p.network.form in RUNNABLE_FORMS else RUNNABLE[p.network.family]


def git_blob_id(path: str | Path) -> str:
    """`git hash-object`: sha1 of b"blob <size>\\0" + the file's bytes."""
    path = Path(path)
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_weights(path: str | Path, weights: Weights, sha256: str | None = None) -> str:
    """What was checked of a weights file against the hash the registry knows for it; an error naming the file, its
    hash and where to get the right one where they differ. sha256: the file's, where already computed."""
    sha256 = sha256 or file_sha256(path)
    wrong = None
    if weights.sha256 and sha256 != weights.sha256:
        wrong = f"sha256 {sha256[:16]}..., not {weights.sha256[:16]}..."
    elif weights.sha256_prefix and not sha256.startswith(weights.sha256_prefix):
        wrong = f"sha256 {sha256[:16]}... does not start with {weights.sha256_prefix} (its file name's hash)"
    elif weights.git_blob and (blob := git_blob_id(path)) != weights.git_blob:
        wrong = f"git object id {blob}, not {weights.git_blob}"
    if wrong:
        raise ValueError(f"{path}: not {weights.file} ({wrong}); get it from {weights.get}")
    known = [k for k in ("sha256", "sha256_prefix", "git_blob") if getattr(weights, k)]
    return f"{weights.file}: {', '.join(known)} checked" if known else f"{weights.file}: no known hash to check"


def run_record(p: Protocol, random_network: bool, weights_check: str | None, **observed) -> dict:
    """What a result file says of the protocol of its figures: the protocol's name, the record of the run (the
    network it ran, RANDOM-INIT and without weights where random, and what it observed of the fields items,
    real_split, real_count, frames, clip, resolution; a key left out keeps the protocol's value) and what was checked
    of the weights file."""
    network = runnable_network(p)
    if random_network:
        network = replace(network, name=f"RANDOM-INIT {network.name}", weights=None)
    observed.setdefault("precision_recall", RUNS_AS.get(p.precision_recall, p.precision_recall))
    if "resolution" in observed and observed["resolution"] is not None:
        observed["resolution"] = str(observed["resolution"])
    record = asdict(replace(p, network=network, **observed))
    record["metrics"] = list(record["metrics"])
    return {"name": p.name, "record": record, "weights_check": weights_check}


FIELDS = {"network": "network", "quantization": "8-bit conversion", "resolution": "resolution", "frames": "frames",
          "stride": "frame stride", "clip": "frames of a clip", "items": "items counted", "real_split": "real split",
          "real_count": "real items", "seed": "selection seed", "covariance": "covariance",
          "inception_score": "IS splits", "kid": "KID subsets", "precision_recall": "precision / recall"}


def field_text(field: str, value) -> str:
    if field == "network":
        return value["name"] if value.get("weights") is None else f"{value['name']} ({value['weights']['file']})"
    if value is None:
        return {"items": "every item", "real_count": "every item", "seed": "unseeded", "resolution": "as given",
                "real_split": "as given"}.get(field, "none")
    return str(value)


def differences(record: dict, paper: Protocol, metric: str) -> list[str]:
    """The fields where a run's record differs from protocol `paper` for `metric`, each as "field (ours X; paper Y)";
    fields the metric does not depend on are left out (IS splits for a FID), and an unseeded protocol takes any seed."""
    theirs = asdict(paper)
    skip = {"inception_score": metric != "inception_score", "kid": metric != "kid",
            "precision_recall": metric not in ("precision", "recall"), "seed": paper.seed is None}
    out = []
    for field, label in FIELDS.items():
        if skip.get(field) or record.get(field) == theirs[field]:
            continue
        out.append(f"{label} (ours {field_text(field, record.get(field))}; paper {field_text(field, theirs[field])})")
    return out
