"""Image distribution metrics with torch-fidelity's Inception-v3 (the FID network): FID, IS, KID, precision/recall,
each computed as an evaluation protocol (eval/protocols.py) says: how frames become 8-bit, the covariance, the
Inception Score's splits, KID's subsets, the precision / recall neighbourhood and distance precision.

Features are extracted once per batch and every metric is computed from them. torch-fidelity's own
constructor would load weights with pickle enabled; we load them with weights_only=True (shared/feature_weights.py)
and hand the network an empty state dict. A weights file is checked against the hash the registry knows for it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from shared.data.transforms import to_uint8
from shared.feature_weights import FeatureWeights, resolve_weights

from . import protocols
from .frechet import frechet_from_features
from .precision_recall import precision_recall

ENV_VAR = "OMNITOK_INCEPTION_WEIGHTS"


class _Inception(FeatureExtractorInceptionV3):
    def load_state_dict(self, state_dict, *args, **kwargs):
        if not state_dict:  # the constructor's own load: we load the weights ourselves
            return None
        return super().load_state_dict(state_dict, *args, **kwargs)


class InceptionFeatures:
    """Pool (2048-d) features and unbiased logits of frames in [-1, 1]."""

    dim = 2048  # width of the pool features the Fréchet distance uses

    def __init__(self, weights: str | None = None, allow_random: bool = False, device: str | torch.device = "cpu",
                 protocol: protocols.Protocol = protocols.PROTOCOLS[protocols.DEFAULT["image"]]):
        self.protocol = protocol
        self.weights: FeatureWeights = resolve_weights("inception-v3-fid", weights, ENV_VAR, URL_INCEPTION_V3, allow_random)
        self.checked = checked_weights(self.weights, protocol)
        with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng():
            torch.manual_seed(0)
            empty = Path(tmp) / "empty.pt"
            torch.save({}, empty)
            self.net = _Inception("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(empty))
        if self.weights.state_dict is not None:
            self.net.load_state_dict(self.weights.state_dict)
        else:
            variance_preserving_init(self.net)
        # channels-last convolutions: the same features, measured faster on a CPU
        self.net.to(device, memory_format=torch.channels_last).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (N, 3, H, W) in [-1, 1] -> (pool (N, 2048), logits (N, 1008))."""
        pool, logits = self.net(eight_bit(frames, self.protocol.quantization).to(self.device))
        return pool.cpu(), logits.cpu()


def eight_bit(frames: torch.Tensor, quantization: str) -> torch.Tensor:
    """Frames in [-1, 1] as uint8: rounded ("round"), or truncated ("floor") with the OmniTokenizer release's float32
    arithmetic, (x / 2 + 0.5) * 255 cast to 8 bits (its frames are x / 2, in [-0.5, 0.5]): its PNG files and I3D
    inputs."""
    if quantization == "round":
        return to_uint8(frames)
    if quantization == "floor":
        return ((frames.detach().float().clamp(-1, 1) / 2 + 0.5) * 255).to(torch.uint8)
    raise ValueError(f"an 8-bit network input needs quantization 'round' or 'floor', got {quantization!r}")


def checked_weights(weights: FeatureWeights, protocol: protocols.Protocol) -> str | None:
    """The weights file checked against the hash the registry knows for the network the protocol runs on (None for
    a random network): an error where they differ."""
    if weights.random:
        return None
    known = protocols.runnable_network(protocol).weights
    if weights.path is None:
        return f"{known.file}: downloaded, not kept on disk to check"
    return protocols.check_weights(weights.path, known, weights.sha256)


def inception_score(logits: torch.Tensor, rule: str) -> dict:
    """IS of generated logits (N, 1008) under a protocol's rule of splits (eval/protocols.py)."""
    if rule == protocols.IS_ADM:
        chunks = [isc_features_to_metric(c, splits=1, shuffle=False)["inception_score_mean"]
                  for c in logits.split(5000)]
        return {"mean": float(np.mean(chunks)), "splits": len(chunks)}
    splits = 10 if rule == protocols.IS_TORCH_FIDELITY else min(10, max(1, len(logits) // 2))
    isc = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=2020)
    return {"mean": isc["inception_score_mean"], "std": isc["inception_score_std"], "splits": splits}


def image_metrics(features_a: torch.Tensor, logits_a: torch.Tensor, features_b: torch.Tensor,
                  protocol: protocols.Protocol) -> dict:
    """FID, IS (of set a), KID and precision/recall between set a (generated or reconstructed) and set b (real), as
    `protocol` computes them (KID only where it defines KID)."""
    out = {"fid": frechet_from_features(features_a.numpy(), features_b.numpy(), protocol.covariance)}
    n = min(len(features_a), len(features_b))
    out["inception_score"] = inception_score(logits_a, protocol.inception_score)
    if protocol.kid is not None:
        subset = 1000 if protocol.kid == protocols.KID_TORCH_FIDELITY else min(1000, n)
        kid = kid_features_to_metric(features_a, features_b, kid_subsets=100, kid_subset_size=subset, kid_degree=3,
                                     kid_gamma=None, kid_coef0=1, verbose=False)
        out["kid"] = {"mean": kid["kernel_inception_distance_mean"], "std": kid["kernel_inception_distance_std"],
                      "subset_size": subset}
    if protocol.precision_recall == protocols.PR_ADM:
        out["precision"], out["recall"] = precision_recall(features_b, features_a, 3, torch.float16)
    else:
        k = 3 if protocol.precision_recall in (protocols.PR_TORCH_FIDELITY, protocols.PR_TORCH_FIDELITY_INCEPTION) \
            else min(3, n - 1)
        prc = prc_features_to_metric(features_a, features_b, prc_neighborhood=k, prc_batch_size=10000,
                                     save_cpu_ram=False, verbose=False)
        out["precision"], out["recall"] = prc["precision"], prc["recall"]
    return out


def variance_preserving_init(net: torch.nn.Module, seed: int = 0) -> None:
    """Fixed-seed Kaiming-normal weights: PyTorch's default init shrinks activations ~3x a layer, so a deep
    random network would map every input to the same features and every distance to zero."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
