"""Metrics: reconstruction metrics, the Fréchet distance, feature-network weight handling."""
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch_fidelity.metric_fid import fid_statistics_to_metric

from eval import protocols
from eval.frechet import frechet_distance, frechet_from_features, gaussian_statistics
from eval.i3d import InceptionI3d
from eval.image_fidelity import InceptionFeatures, image_metrics
from eval.video_fidelity import I3DFeatures, fvd
from shared.data import DataError, EmbeddedPhotos
from shared.metrics.reconstruction import psnr, ssim


def unchecked(name: str) -> protocols.Protocol:
    """Protocol `name` with no known hash of its network's weights: test weights pass the check."""
    p = protocols.PROTOCOLS[name]
    return replace(p, network=replace(p.network, weights=replace(p.network.weights, sha256_prefix=None, git_blob=None)))


def real_frames(n=12, size=64):
    ds = EmbeddedPhotos("val", size)
    return torch.stack([ds[i]["pixels"][:, 0] for i in range(n)])


def test_psnr_and_ssim_match_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    x = real_frames(2)
    y = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    a, b = ((x[0] + 1) / 2).permute(1, 2, 0).numpy(), ((y[0] + 1) / 2).permute(1, 2, 0).numpy()
    assert psnr(y, x)[0].item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1), abs=1e-4)
    ref = structural_similarity(a, b, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ssim(y, x)[0].item() == pytest.approx(ref, abs=1e-4)
    assert ssim(x, x).min().item() == pytest.approx(1.0, abs=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast does not reach the metric
        assert ssim(y, x)[0].item() == pytest.approx(ref, abs=1e-4)
    video = torch.stack([x, y], 2)  # (B, 3, T=2, H, W): one value per frame
    assert psnr(video, video.roll(1, 2)).shape == (4,)


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    a = rng.normal(size=(d, d))
    s1 = a @ a.T + np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # same covariance: the distance is the squared mean difference
    assert frechet_distance(mu1, s1, mu2, s1) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-9)
    # diagonal covariances: sum of (sqrt(a) - sqrt(b))^2 plus the mean term
    v1, v2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)
    # one feature: (mean difference)^2 + (standard deviation difference)^2
    a, b = np.array([[0.0], [2.0]]), np.array([[1.0], [5.0], [3.0]])
    assert frechet_from_features(a, b)["value"] == pytest.approx((1 - 3) ** 2 + (np.sqrt(2) - 2) ** 2, rel=1e-9)


def test_frechet_distance_agrees_with_torch_fidelity():
    rng = np.random.default_rng(1)
    fa, fb = rng.normal(size=(300, 32)), rng.normal(0.3, 1.2, size=(400, 32))
    ours = frechet_from_features(fa, fb)
    sa, sb = gaussian_statistics(fa), gaussian_statistics(fb)
    theirs = fid_statistics_to_metric(sa, sb, verbose=False)["frechet_inception_distance"]
    assert ours["value"] == pytest.approx(theirs, rel=1e-6)
    assert ours["n"] == [300, 400] and ours["dim"] == 32 and ours["full_rank_covariance"]
    assert not frechet_from_features(fa[:20], fb[:20])["full_rank_covariance"]  # n <= d is reported


@pytest.mark.slow  # full-size Inception / VGG16 networks
def test_inception_metrics_offline_error_and_labelled_random_fallback():
    with pytest.raises(RuntimeError, match="--allow-random-features"):
        InceptionFeatures(allow_random=False)
    net = InceptionFeatures(allow_random=True)
    assert net.weights.random and "RANDOM-INIT" in net.weights.source
    x = real_frames()
    feats, logits = net(x)
    assert feats.shape == (12, 2048) and logits.shape == (12, 1008)
    small = protocols.PROTOCOLS["project-image"]
    same = image_metrics(feats, logits, feats, small)
    noisy = image_metrics(net((x + 0.4 * torch.randn_like(x)).clamp(-1, 1))[0], logits, feats, small)
    assert abs(same["fid"]["value"]) < 1e-3 < noisy["fid"]["value"]
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    assert set(noisy) == {"fid", "inception_score", "kid", "precision", "recall"}


def test_inception_loads_a_local_state_dict_with_the_right_shapes(tmp_path):
    net = InceptionFeatures(allow_random=True)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in net.net.state_dict().items()}
    torch.save(state, tmp_path / "inception.pth")
    with pytest.raises(ValueError, match=r"inception.pth: not weights-inception-2015-12-05-6726825d.pth \(sha256 "
                                         r"\w+\.\.\. does not start with 6726825d"):
        InceptionFeatures(weights=str(tmp_path / "inception.pth"))  # not the file the registry knows
    loaded = InceptionFeatures(weights=str(tmp_path / "inception.pth"), protocol=unchecked("project-image"))
    assert not loaded.weights.random and loaded.weights.sha256 and str(tmp_path) in loaded.weights.source
    assert loaded.checked == "weights-inception-2015-12-05-6726825d.pth: no known hash to check"
    assert torch.equal(loaded.net.fc.weight, state["fc.weight"])
    with pytest.raises(FileNotFoundError, match="missing.pth: inception-v3-fid weights not found"):
        InceptionFeatures(weights=str(tmp_path / "missing.pth"))


def test_i3d_videogpt_weights_load_and_give_400_logits(tmp_path):
    torch.manual_seed(0)
    state = InceptionI3d(400).state_dict()
    assert "Mixed_5c.b3b.conv3d.weight" in state and "logits.conv3d.bias" in state  # the port's names
    torch.save(state, tmp_path / "i3d_pretrained_400.pt")
    with pytest.raises(ValueError, match="i3d_pretrained_400.pt: not i3d_pretrained_400.pt \\(git object id \\w+, "
                                         "not a867b87ac3a9097d200598b1d48a1b890d8ec744"):
        I3DFeatures(weights=str(tmp_path / "i3d_pretrained_400.pt"))
    net = I3DFeatures(weights=str(tmp_path / "i3d_pretrained_400.pt"), protocol=unchecked("project-video"))
    feats = net(torch.rand(2, 3, 17, 32, 32) * 2 - 1)
    assert feats.shape == (2, 400) and torch.isfinite(feats).all()
    with pytest.raises(RuntimeError, match="no weights"):
        I3DFeatures()


def test_i3d_styleganv_torchscript_is_called_as_stylegan_v_does(tmp_path):
    class Detector(torch.nn.Module):
        def forward(self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool) -> torch.Tensor:
            assert rescale and resize and return_features and x.dtype == torch.uint8
            x = x.float()
            return torch.cat([x.mean((1, 2, 3, 4))[:, None], x.amax((1, 2, 3, 4))[:, None]], 1)

    torch.jit.script(Detector()).save(str(tmp_path / "i3d_torchscript.pt"))
    net = I3DFeatures(weights=str(tmp_path / "i3d_torchscript.pt"), protocol=unchecked("stylegan-v-fvd2048-16f"))
    feats = net(torch.ones(2, 3, 5, 16, 16))
    assert torch.allclose(feats, torch.full((2, 2), 255.0))  # frames reach it as uint8 in [0, 255]
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt is needed for protocol stylegan-v-fvd2048-16f"):
        I3DFeatures(protocol=protocols.PROTOCOLS["stylegan-v-fvd2048-16f"])
    with pytest.raises(ValueError, match="not i3d_torchscript.pt .git object id"):
        I3DFeatures(weights=str(tmp_path / "i3d_torchscript.pt"), protocol=protocols.PROTOCOLS["stylegan-v-fvd2048-16f"])


def test_fvd_of_identical_and_shifted_sets():
    rng = np.random.default_rng(2)
    a = torch.from_numpy(rng.normal(size=(64, 8)))
    assert fvd(a, a)["value"] == pytest.approx(0.0, abs=1e-9)
    assert fvd(a, a + 1.0)["value"] == pytest.approx(8.0, rel=1e-6)


def test_feature_cache_hits_only_the_same_batch_and_network(tmp_path):
    from eval.feature_cache import FeatureCache

    net_a, net_b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    calls = []

    def compute(net):
        return lambda x: calls.append(1) or net(x)

    batch = torch.randn(2, 4)
    cache = FeatureCache(tmp_path, "image", net_a)
    first = cache.features(batch, compute(net_a))
    cache.save()
    again = FeatureCache(tmp_path, "image", net_a)  # a later evaluation: read back from the file
    assert torch.equal(again.features(batch.clone(), compute(net_a)), first) and len(calls) == 1
    again.features(batch + 1e-6, compute(net_a))  # different pixels: computed
    other = FeatureCache(tmp_path, "image", net_b)  # different weights: a different file
    assert other.path != again.path and not other.entries
    assert torch.equal(other.features(batch, compute(net_b)), net_b(batch).detach()) and len(calls) == 3
    assert FeatureCache(None, "image", net_a).path is None


@pytest.mark.slow  # full-size Inception / VGG16 networks
def test_generation_metrics_of_a_sample_folder_against_a_reference(tmp_path, imagenet_dir):
    import json

    from PIL import Image

    from eval import sample_metrics
    from shared.data import DataError

    same, dark = tmp_path / "same", tmp_path / "dark"
    for i, f in enumerate(sorted((imagenet_dir / "val").rglob("*.*"))):
        img = Image.open(f).convert("RGB")
        for folder, out in ((same, img), (dark, img.point(lambda v: v // 3))):
            folder.mkdir(exist_ok=True)
            out.save(folder / f"{i}.png")
    common = ["--kind", "image", "--reference", str(imagenet_dir), "--split", "val", "--resolution", "64",
              "--batch-size", "4", "--allow-random-features", "--feature-cache", str(tmp_path / "cache")]
    sample_metrics.main(common + ["--samples", str(same), "--out", str(tmp_path / "same.json")])
    sample_metrics.main(common + ["--samples", str(dark), "--out", str(tmp_path / "dark.json")])
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("same", "dark"))
    assert a["n_samples"] == a["n_reference"] == 10 and "RANDOM-INIT" in a["metrics"]["network"]
    assert abs(a["metrics"]["fid"]["value"]) < 1e-3 and a["metrics"]["precision"] == a["metrics"]["recall"] == 1.0
    assert b["metrics"]["fid"]["value"] > 1.0 and b["metrics"]["kid"]["mean"] > a["metrics"]["kid"]["mean"]
    record = a["metrics"]["protocol"]["record"]  # the run under the project's protocol, as it ran
    assert a["metrics"]["protocol"]["name"] == "project-image" and record["network"]["weights"] is None
    assert record["network"]["name"].startswith("RANDOM-INIT Inception-v3") and record["real_split"] == "val"
    assert record["items"] is None and record["resolution"] == "64" and record["seed"] == 2020
    assert len(list((tmp_path / "cache").glob("image-*.safetensors"))) == 1  # the reference, kept for next time
    with pytest.raises(DataError, match="no images found"):
        sample_metrics.main(common + ["--samples", str(tmp_path / "cache"), "--out", str(tmp_path / "x.json")])


def test_fvd_of_a_sample_folder_against_ucf101(tmp_path, ucf_dir):
    import json
    import shutil

    from eval import sample_metrics

    samples = tmp_path / "samples"
    samples.mkdir()
    for line in (ucf_dir / "ucfTrainTestlist" / "testlist01.txt").read_text().split():
        shutil.copy(ucf_dir / line, samples / line.replace("/", "_"))
    sample_metrics.main(["--kind", "video", "--samples", str(samples), "--reference", str(ucf_dir), "--split", "test",
                         "--frames", "8", "--resolution", "32", "--allow-random-features", "--feature-cache", "",
                         "--out", str(tmp_path / "fvd.json")])
    rec = json.loads((tmp_path / "fvd.json").read_text())
    assert rec["n_samples"] == rec["n_reference"] == 2 and rec["metrics"]["fvd"]["dim"] == 400
    protocol = rec["metrics"]["protocol"]
    assert protocol["name"] == "project-video" and protocol["weights_check"] is None
    assert {k: protocol["record"][k] for k in ("frames", "clip", "real_split", "covariance", "quantization")} == {
        "frames": 8, "clip": "centre: first frame (length - span) // 2", "real_split": "test", "covariance": "unbiased",
        "quantization": "none"}
    assert abs(rec["metrics"]["fvd"]["value"]) < 1e-3  # the same clips, decoded the same way


def test_sample_metrics_needs_two_samples_and_says_so_before_any_work(tmp_path):
    from eval import sample_metrics

    (tmp_path / "one").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "one" / "only.png")
    with pytest.raises(DataError, match=r"one: the samples set has 1 item\(s\); the Frechet distance needs at least 2"):
        sample_metrics.main(["--kind", "image", "--samples", str(tmp_path / "one"), "--reference", "embedded",
                             "--resolution", "32", "--out", str(tmp_path / "r.json")])


def test_bicubic_baselines_keep_as_many_numbers_as_the_tokenizer():
    """the baseline beside every reconstruction figure."""
    from shared.metrics.bicubic import BicubicBaselines, bicubic_down_up, matched_factors

    factors = matched_factors(8, 8, 1, codebook_size=1024)
    assert factors["same_numbers"] == pytest.approx(8 * (3 / 8) ** 0.5)  # 3 values per (8/f)^2 pixels = 8 numbers
    assert factors["same_bits"] == pytest.approx(8 * (3 / 1.25) ** 0.5)  # 10 bits = 1.25 bytes a token
    assert matched_factors(8, 8, 4)["same_numbers"] == pytest.approx(2 * factors["same_numbers"])  # tubes of 4
    x = real_frames(6).unsqueeze(2)
    assert bicubic_down_up(x, 4.0).shape == x.shape
    baselines = BicubicBaselines(factors)
    baselines.add(x)
    got = baselines.result()
    assert got["4x"]["psnr"] > got["same_numbers"]["psnr"] > got["8x"]["psnr"] > got["same_bits"]["psnr"] > 10


def test_sample_metrics_of_a_record_reads_the_folder_given_checks_it_and_names_what_it_scored(tmp_path, monkeypatch,
                                                                                               capsys):
    """--record had scored the files samples.json named, not the folder given."""
    import json
    import shutil

    from eval import sample_metrics
    from shared.sample_folders import write_sample_folders

    def draw(positions, seed, scale):
        return torch.rand(len(positions), 3, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1

    record = write_sample_folders(tmp_path / "s", {"seed": 0, "batch_size": 4}, [(0, i) for i in range(5)], [1.0],
                                  draw, video=False)
    shutil.copytree(tmp_path / "s", tmp_path / "copy")
    scored = []
    monkeypatch.setattr(sample_metrics, "InceptionFeatures",
                        lambda *a, **k: SimpleNamespace(weights=SimpleNamespace(random=True), checked=None))
    monkeypatch.setattr(sample_metrics, "image_generation_metrics",
                        lambda samples, *a, **k: scored.append([p for p, _ in samples.samples]) or {"fid": 1.0})
    common = ["--kind", "image", "--reference", "embedded", "--resolution", "16", "--feature-cache", ""]
    sample_metrics.main(common + ["--record", str(tmp_path / "copy"), "--out", str(tmp_path / "eval")])
    result = json.loads((tmp_path / "eval" / "samples_cfg1.json").read_text())
    assert result["samples"] == str(tmp_path / "copy" / "cfg1") and result["n_samples"] == 5
    assert result["samples_sha256"] == record["folders"]["cfg1"]["sha256"]
    assert all(str(p).startswith(str(tmp_path / "copy")) for p in scored[0])
    (tmp_path / "copy" / "cfg1" / "0000" / "00004.png").unlink()
    with pytest.raises(SystemExit):
        sample_metrics.main(common + ["--record", str(tmp_path / "copy"), "--out", str(tmp_path / "eval")])
    assert "copy/cfg1/0000/00004.png: missing (1 of the 5 samples" in capsys.readouterr().err
