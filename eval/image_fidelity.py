"""Image distribution metrics with torch-fidelity's Inception-v3 (the FID network): FID, IS, KID, precision/recall.

Features are extracted once per batch and every metric is computed from them. torch-fidelity's own
constructor would load weights with pickle enabled; we load them with weights_only=True (shared/feature_weights.py)
and hand the network an empty state dict.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from shared.data.transforms import to_uint8
from shared.feature_weights import FeatureWeights, resolve_weights

from .frechet import frechet_from_features

ENV_VAR = "OMNITOK_INCEPTION_WEIGHTS"


class _Inception(FeatureExtractorInceptionV3):
    def load_state_dict(self, state_dict, *args, **kwargs):
        if not state_dict:  # the constructor's own load: we load the weights ourselves
            return None
        return super().load_state_dict(state_dict, *args, **kwargs)


class InceptionFeatures:
    """Pool (2048-d) features and unbiased logits of frames in [-1, 1]."""

    dim = 2048  # width of the pool features the Fréchet distance uses

    def __init__(self, weights: str | None = None, allow_random: bool = False, device: str | torch.device = "cpu"):
        self.weights: FeatureWeights = resolve_weights("inception-v3-fid", weights, ENV_VAR, URL_INCEPTION_V3, allow_random)
        with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng():
            torch.manual_seed(0)
            empty = Path(tmp) / "empty.pt"
            torch.save({}, empty)
            self.net = _Inception("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(empty))
        if self.weights.state_dict is not None:
            self.net.load_state_dict(self.weights.state_dict)
        else:
            variance_preserving_init(self.net)
        self.net.to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (N, 3, H, W) in [-1, 1] -> (pool (N, 2048), logits (N, 1008))."""
        pool, logits = self.net(to_uint8(frames).to(self.device))
        return pool.cpu(), logits.cpu()


def image_metrics(features_a: torch.Tensor, logits_a: torch.Tensor, features_b: torch.Tensor,
                  kid_subset_size: int = 1000) -> dict:
    """FID, IS (of set a), KID and precision/recall between set a (generated or reconstructed) and set b (real)."""
    out = {"fid": frechet_from_features(features_a.numpy(), features_b.numpy())}
    n = min(len(features_a), len(features_b))
    isc = isc_features_to_metric(logits_a, splits=min(10, max(1, len(logits_a) // 2)), shuffle=True, rng_seed=2020)
    out["inception_score"] = {"mean": isc["inception_score_mean"], "std": isc["inception_score_std"]}
    subset = min(kid_subset_size, n)
    kid = kid_features_to_metric(features_a, features_b, kid_subsets=100, kid_subset_size=subset, kid_degree=3,
                                 kid_gamma=None, kid_coef0=1, verbose=False)
    out["kid"] = {"mean": kid["kernel_inception_distance_mean"], "std": kid["kernel_inception_distance_std"],
                  "subset_size": subset}
    prc = prc_features_to_metric(features_a, features_b, prc_neighborhood=min(3, n - 1), prc_batch_size=10000,
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
