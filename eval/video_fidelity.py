"""FVD features from an I3D network (Kinetics-400), in the form an evaluation protocol names (eval/protocols.py):

- VideoGPT's PyTorch I3D state dict `i3d_pretrained_400.pt` (VideoGPT, and OmniTokenizer's release).
  Features: the 400 class logits averaged over time. Frames resized to 224x224 (bilinear), in [-1, 1].
- StyleGAN-V's TorchScript detector `i3d_torchscript.pt`, called as StyleGAN-V calls it: frames as uint8
  [0, 255], rescale=True, resize=True, return_features=True. The feature width is whatever the network returns,
  and is stored with every result.

The protocol also says how float frames become 8-bit before the network ("none": the floats themselves). Weights come
from a local file (argument or OMNITOK_I3D_WEIGHTS), checked against the hash the registry knows for it: neither file
has a stable public download address, so without one FVD stops with a clear error, or, only when allowed, uses a
fixed-seed random VideoGPT I3D, labelled as such.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from shared.feature_weights import resolve_weights
from shared.provenance import file_sha256

from . import protocols
from .frechet import frechet_from_features
from .i3d import InceptionI3d
from .image_fidelity import eight_bit, variance_preserving_init

ENV_VAR = "OMNITOK_I3D_WEIGHTS"
FEATURE_DIMS = {"videogpt": 400}  # feature width of each form known before it runs (not the TorchScript file's)


class I3DFeatures:
    def __init__(self, weights: str | None = None, allow_random: bool = False, device: str | torch.device = "cpu",
                 protocol: protocols.Protocol = protocols.PROTOCOLS[protocols.DEFAULT["video"]]):
        self.protocol, self.device = protocol, device
        network = protocols.runnable_network(protocol)
        self.torchscript = network.form == "torchscript"
        self.dim = FEATURE_DIMS.get(network.form)
        if self.torchscript:
            path = weights or os.environ.get(ENV_VAR)
            if not path or not Path(path).is_file():
                raise FileNotFoundError(f"{path}: StyleGAN-V's i3d_torchscript.pt is needed for protocol "
                                        f"{protocol.name} (pass its path or set {ENV_VAR})")
            self.sha256 = file_sha256(path)
            self.checked = protocols.check_weights(path, network.weights, self.sha256)
            self.net = torch.jit.load(str(path), map_location=device).eval()
            self.source, self.random = f"i3d-styleganv torchscript from {path}", False
            return
        resolved = resolve_weights("i3d-kinetics400-videogpt", weights, ENV_VAR, None, allow_random)
        self.checked = None if resolved.random else protocols.check_weights(resolved.path, network.weights,
                                                                            resolved.sha256)
        self.net = InceptionI3d(400)
        if resolved.state_dict is not None:
            self.net.load_state_dict(resolved.state_dict)
        else:
            variance_preserving_init(self.net)
        self.net.to(device).eval()
        self.source, self.sha256, self.random = resolved.source, resolved.sha256, resolved.random

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """videos (B, 3, T, H, W) in [-1, 1] -> features (B, d)."""
        if videos.dim() != 5 or videos.shape[1] != 3:
            raise ValueError(f"videos must be (B, 3, T, H, W), got {tuple(videos.shape)}")
        x = videos.to(self.device).float()
        if self.torchscript:
            return self.net(eight_bit(x, self.protocol.quantization), rescale=True, resize=True,
                            return_features=True).cpu()
        eight = self.protocol.quantization != "none"
        if eight:  # 8-bit frames are resized in [0, 255], then scaled, as VideoGPT's FVD does
            x = eight_bit(x, self.protocol.quantization).float()
        b, c, t, h, w = x.shape
        if (h, w) != (224, 224):
            x = F.interpolate(x.transpose(1, 2).reshape(b * t, c, h, w), size=(224, 224), mode="bilinear",
                              align_corners=False).reshape(b, t, c, 224, 224).transpose(1, 2)
        return self.net(2.0 * x / 255.0 - 1 if eight else x.clamp(-1, 1)).cpu()


def fvd(features_a: torch.Tensor, features_b: torch.Tensor, covariance: str = "unbiased") -> dict:
    return frechet_from_features(features_a.double().numpy(), features_b.double().numpy(), covariance)
