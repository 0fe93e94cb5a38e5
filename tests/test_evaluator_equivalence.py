"""Our figures against the evaluators the papers cite, run from their own code in a local checkout (never copied into
the project), with the same network weights (random ones where the network is plain PyTorch) or a stand-in for a
TorchScript / TensorFlow network and the same inputs: each figure equals theirs to 1e-4 relative.

    RELEASE_REPO=/path/to/OmniTokenizer STYLEGAN_V_REPO=/path/to/stylegan-v ADM_REPO=/path/to/guided-diffusion \\
        python -m pytest -q -s tests/test_evaluator_equivalence.py      # -s prints each relative difference

Without a checkout its tests skip, saying which variable to set; the comparison with torch-fidelity (installed with
the project) always runs.
"""
import importlib.util
import os
import random
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eval import protocols
from eval.frame_folder_clips import FrameFolderClips
from eval.frechet import frechet_from_features
from eval.i3d import InceptionI3d
from eval.image_fidelity import InceptionFeatures, image_metrics, inception_score, variance_preserving_init
from eval.precision_recall import precision_recall
from eval.video_fidelity import I3DFeatures, fvd
from shared.data.transforms import to_uint8

from . import tf_stand_in

TOLERANCE = 1e-4


def checkout(variable: str, repo: str, marker: str) -> Path:
    path = os.environ.get(variable)
    if not path:
        pytest.skip(f"set {variable} to a checkout of {repo} to compare with its evaluator")
    if not (Path(path) / marker).is_file():
        pytest.fail(f"{variable}={path}: not a checkout of {repo} (no {marker})")
    return Path(path)


def unchecked(name: str) -> protocols.Protocol:
    """Protocol `name` with no known hash of its network's weights: the test's random weights pass the check."""
    p = protocols.PROTOCOLS[name]
    return replace(p, network=replace(p.network, weights=replace(p.network.weights, sha256_prefix=None, git_blob=None)))


def relative(ours: float, theirs: float, what: str) -> float:
    rel = abs(ours - theirs) / abs(theirs) if theirs else abs(ours)
    print(f"{what}: ours {ours:.10g}, theirs {theirs:.10g}, relative difference {rel:.1e}")
    return rel


@pytest.mark.slow  # eight clips through a 224x224 I3D on each side: ~40 s on one core
def test_release_rfvd_equals_ours(tmp_path):
    """vqgan_eval.py --inference_type video: 8-bit clips, OmniTokenizer/fvd/fvd.py's resize, I3D and Fréchet."""
    from bench.reference_tokenizer import release_module

    repo = checkout("RELEASE_REPO", "FoundationVision/OmniTokenizer", "OmniTokenizer/fvd/fvd.py")
    release = release_module(repo, "fvd.fvd")
    net = InceptionI3d(400)
    variance_preserving_init(net)
    torch.save(net.state_dict(), tmp_path / "i3d_pretrained_400.pt")
    theirs_net = release.InceptionI3d(400, in_channels=3)
    theirs_net.load_state_dict(torch.load(tmp_path / "i3d_pretrained_400.pt"))
    theirs_net.eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 10, 32, 32, generator=g) * 2 - 1  # inputs, in our [-1, 1]; the release's are x / 2
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)  # reconstructions
    # the script's own lines: real = batch['video'] + 0.5, fake = clamp(x_recons + 0.5, 0, 1); then
    # get_fvd_logits(shift_dim(v * 255, 1, -1).byte().data.numpy(), ...)
    to_bytes = lambda v: (v * 255).permute(0, 2, 3, 4, 1).byte().numpy()  # noqa: E731
    real = release.get_fvd_logits(to_bytes(x / 2 + 0.5), i3d=theirs_net, device="cpu")
    fake = release.get_fvd_logits(to_bytes(torch.clamp(y / 2 + 0.5, 0, 1)), i3d=theirs_net, device="cpu")
    theirs = release.frechet_distance(fake, real).item()
    ours_net = I3DFeatures(str(tmp_path / "i3d_pretrained_400.pt"), protocol=unchecked("omnitokenizer-rfvd"))
    ours_real, ours_fake = ours_net(x), ours_net(y)
    assert torch.equal(ours_real, real) and torch.equal(ours_fake, fake)  # the same 8-bit frames, resize and network
    assert relative(fvd(ours_fake, ours_real)["value"], theirs, "release rFVD") < TOLERANCE
    other = I3DFeatures(str(tmp_path / "i3d_pretrained_400.pt"), protocol=unchecked("project-video"))
    assert not torch.equal(other(y), fake)  # the project's own protocol feeds the floats: not the release's inputs


def _frame_folders(root: Path, lengths: list[int], rng: np.random.Generator) -> Path:
    """StyleGAN-V's dataset layout: one folder of PNG frames per video; each video drifts, so frames differ."""
    for i, n in enumerate(lengths):
        folder = root / f"video_{i:03d}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, (12, 12, 3))
        for t in range(n):
            Image.fromarray(((base + 7 * t * (i + 1)) % 256).astype(np.uint8)).save(folder / f"{t:05d}.png")
    return root


class _Detector(torch.nn.Module):
    """Stands in for i3d_torchscript.pt: features that depend on every frame and on their order."""

    def forward(self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool) -> torch.Tensor:
        v = x.float() / 255
        d = (v[:, :, 1:] - v[:, :, :-1]).abs()
        return torch.stack([v.mean((1, 2, 3, 4)), v.std((1, 2, 3, 4)), d.mean((1, 2, 3, 4)),
                            v[:, 0].mean((1, 2, 3)) - v[:, 2].mean((1, 2, 3))], 1)


def test_stylegan_v_fvd_and_clip_selection_equal_ours(tmp_path, monkeypatch):
    """src/metrics/frechet_video_distance.py compute_fvd, as fvd2048_16f calls it (16 frames), with max_real /
    num_gen 8 instead of 2048 on a dataset of 12 videos (one too short for a clip)."""
    repo = checkout("STYLEGAN_V_REPO", "universome/stylegan-v", "src/metrics/frechet_video_distance.py")
    monkeypatch.syspath_prepend(str(repo))
    if importlib.util.find_spec("omegaconf") is None:  # imported by its dataset module for a type name only
        monkeypatch.setitem(sys.modules, "omegaconf", types.SimpleNamespace(DictConfig=dict, OmegaConf=None))
    from src import dnnlib
    from src.metrics import frechet_video_distance, metric_utils

    rng = np.random.default_rng(0)
    real_dir = _frame_folders(tmp_path / "real", [20, 12, 30, 16, 25, 40, 18, 22, 5, 33, 19, 21], rng)
    gen_dir = _frame_folders(tmp_path / "gen", [16] * 9, rng)
    detector = torch.jit.script(_Detector())
    detector.save(str(tmp_path / "i3d_torchscript.pt"))
    monkeypatch.setattr(metric_utils, "get_feature_detector", lambda url, **kw: detector)
    loader = torch.utils.data.DataLoader  # in this process, so that random.seed decides every clip's start
    monkeypatch.setattr(torch.utils.data, "DataLoader", lambda **kw: loader(
        **{**kw, "num_workers": 0, "pin_memory": False, "prefetch_factor": None}))

    def dataset(path):
        return dnnlib.EasyDict(class_name="src.training.dataset.VideoFramesFolderDataset", path=str(path),
                               cfg=dnnlib.EasyDict(max_num_frames=1024), resolution=256, use_labels=False,
                               max_size=None, xflip=False)

    opts = metric_utils.MetricOptions(dataset_kwargs=dataset(real_dir), gen_dataset_kwargs=dataset(gen_dir),
                                      device=torch.device("cpu"), cache=False, generator_as_dataset=True)
    random.seed(5)
    theirs = frechet_video_distance.compute_fvd(opts, max_real=8, num_gen=8, num_frames=16)

    protocol = unchecked("stylegan-v-fvd2048-16f")
    net = I3DFeatures(str(tmp_path / "i3d_torchscript.pt"), protocol=protocol)
    real, gen = FrameFolderClips(real_dir, 8, 16, 1, seed=5), FrameFolderClips(gen_dir, 8, 16, 1, seed=None)
    assert [i for i, _ in real.clips] == [0, 2, 3, 4, 5, 6, 7, 9]  # the first 8 videos of 16 frames or more
    clips = lambda d: torch.stack([d[i]["pixels"] for i in range(len(d))])  # noqa: E731
    ours = fvd(net(clips(gen)), net(clips(real)), protocol.covariance)["value"]
    assert relative(ours, theirs, "StyleGAN-V fvd (16 frames, 8 clips)") < TOLERANCE
    # the same clips, frame for frame: StyleGAN-V's dataset reads them with the same random starts
    their_set = dnnlib.util.construct_class_by_name(**dataset(real_dir), load_n_consecutive=16,
                                                    discard_short_videos=True)
    random.seed(5)
    for i in range(8):  # (T, C, H, W) uint8 there, (C, T, H, W) in [-1, 1] here
        assert torch.equal(torch.from_numpy(their_set[i]["image"]), to_uint8(real[i]["pixels"]).transpose(0, 1))
    # what the protocol's choices change: the unbiased covariance, another seed
    assert relative(fvd(net(clips(gen)), net(clips(real)), "unbiased")["value"], theirs, "unbiased covariance") > 1e-3
    other = FrameFolderClips(real_dir, 8, 16, 1, seed=6)
    assert relative(fvd(net(clips(gen)), net(clips(other)), "biased")["value"], theirs, "seed 6") > 1e-3


@pytest.fixture
def adm(monkeypatch):
    """The ADM evaluator's module, imported from the checkout with TensorFlow stood in for (tests/tf_stand_in.py)."""
    repo = checkout("ADM_REPO", "openai/guided-diffusion", "evaluations/evaluator.py")
    tf = tf_stand_in.install(monkeypatch)
    spec = importlib.util.spec_from_file_location("adm_evaluator", repo / "evaluations" / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, tf


@pytest.mark.parametrize("case", ["integers", "float16", "float32"])
def test_adm_precision_recall_equals_ours(adm, case):
    """ManifoldEstimator and Evaluator.compute_prec_recall on given features: small integers (every float16 distance
    exact, many ties at a ball's edge), pool-like features (float16 distances) and large ones (float16 overflows:
    its float32 block)."""
    evaluator, _ = adm
    rng = np.random.default_rng(0)
    ref, sample = {"integers": lambda: (rng.integers(0, 4, (400, 8)), rng.integers(0, 4, (300, 8))),
                   "float16": lambda: (abs(rng.normal(size=(500, 256))), abs(rng.normal(size=(400, 256)) * 1.1)),
                   "float32": lambda: (rng.normal(size=(500, 64)) * 400, rng.normal(size=(400, 64)) * 420 + 30)}[case]()
    ref, sample = ref.astype(np.float32), sample.astype(np.float32)
    estimator = evaluator.ManifoldEstimator(tf_stand_in.Session())
    theirs = evaluator.Evaluator.compute_prec_recall(types.SimpleNamespace(manifold_estimator=estimator), ref, sample)
    ours = precision_recall(torch.from_numpy(ref), torch.from_numpy(sample), 3, torch.float16)
    for name, a, b in zip(("precision", "recall"), ours, theirs):
        assert relative(a, b, f"ADM {name} ({case})") < TOLERANCE


def test_adm_frechet_and_inception_score_equal_ours(adm):
    """FIDStatistics.frechet_distance of Evaluator.compute_statistics; Evaluator.compute_inception_score (splits of
    5000) of pool features through a softmax layer of random weights, as ours through the same logits."""
    evaluator, tf = adm
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(3000, 64)).astype(np.float32)
    sample = (rng.normal(size=(2500, 64)) * 1.2 + 0.1).astype(np.float32)
    stats = [evaluator.Evaluator.compute_statistics(None, a) for a in (sample, ref)]
    theirs = stats[0].frechet_distance(stats[1])
    assert relative(frechet_from_features(sample, ref)["value"], theirs, "ADM FID") < TOLERANCE

    weights = rng.normal(size=(64, 100)).astype(np.float32) * 0.3
    pool = tf.placeholder(tf.float32, [None, 64])
    graph = types.SimpleNamespace(sess=tf_stand_in.Session(), softmax=tf.nn.softmax(tf.matmul(pool, weights)),
                                  softmax_input=pool, softmax_batch_size=512)
    acts = rng.normal(size=(12000, 64)).astype(np.float32)  # three splits: 5000, 5000, 2000
    theirs = evaluator.Evaluator.compute_inception_score(graph, acts)
    ours = inception_score(torch.from_numpy(acts @ weights), protocols.IS_ADM)
    assert ours["splits"] == 3 and relative(ours["mean"], theirs, "ADM Inception Score") < TOLERANCE
    shuffled = inception_score(torch.from_numpy(acts @ weights), protocols.IS_TORCH_FIDELITY)["mean"]
    assert relative(shuffled, theirs, "torch-fidelity's splits") > TOLERANCE  # the splits are part of the protocol


@pytest.mark.slow  # 32 images through a random full-size Inception, thrice there and once here: ~2 min on one core
def test_torch_fidelity_defaults_equal_ours(tmp_path):
    """torch_fidelity.calculate_metrics with its default arguments (ISC and FID; KID's default subsets need 1000
    images) and the same random Inception weights, against eval.image_fidelity under protocol torch-fidelity; and its
    precision / recall of the same Inception features (its default network for them is VGG-16: the record says ours
    are of the Inception features)."""
    import torch_fidelity

    ours_net = InceptionFeatures(allow_random=True)
    torch.save(ours_net.net.state_dict(), tmp_path / "inception.pth")
    g = torch.Generator().manual_seed(2)
    fake = (torch.rand(16, 3, 64, 64, generator=g) * 255).to(torch.uint8)
    real = (fake.float() * 0.97 + torch.rand(16, 3, 64, 64, generator=g) * 8).to(torch.uint8)  # near: some overlap

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    common = dict(input1=Images(fake), input2=Images(real), cuda=False, cache=False, verbose=False,
                  feature_extractor_weights_path=str(tmp_path / "inception.pth"))
    theirs = {**torch_fidelity.calculate_metrics(isc=True, fid=True, **common),
              **torch_fidelity.calculate_metrics(prc=True, feature_extractor="inception-v3-compat",
                                                 feature_layer_prc="2048", **common)}
    protocol = replace(unchecked("torch-fidelity"), kid=None)
    net = InceptionFeatures(str(tmp_path / "inception.pth"), protocol=protocol)
    (fake_pool, fake_logits), (real_pool, _) = (net(x.float() / 127.5 - 1) for x in (fake, real))
    ours = image_metrics(fake_pool, fake_logits, real_pool, protocol)
    for name, a, b in [("FID", ours["fid"]["value"], theirs["frechet_inception_distance"]),
                       ("IS", ours["inception_score"]["mean"], theirs["inception_score_mean"]),
                       ("precision", ours["precision"], theirs["precision"]),
                       ("recall", ours["recall"], theirs["recall"])]:
        assert relative(a, b, f"torch-fidelity {name}") < TOLERANCE
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1  # neither set wholly inside or outside the other
