"""Where a pretrained network (LPIPS' VGG16, FID's Inception-v3, FVD's I3D) gets its weights: an explicit
local file (argument or environment variable), loaded with weights_only=True; else the library's normal
download; else (offline) a clear error; only when the caller allows it, a fixed-seed random initialisation
of the same network, which every loss record and result then names as such."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from shared.provenance import file_sha256


@dataclass
class FeatureWeights:
    state_dict: dict | None  # None: use a random initialisation
    source: str  # where they came from, for result files
    sha256: str | None  # of the weights file, when there is one
    random: bool = False
    path: str | None = None  # the weights file, when there is one


def resolve_weights(name: str, path: str | None, env_var: str, url: str | None, allow_random: bool,
                    allow_hint: str = "--allow-random-features") -> FeatureWeights:
    """Weights of network `name` (e.g. "inception-v3-fid"); see the module docstring for the order.

    allow_hint: how the caller's user allows the random fallback, for the error message."""
    given = path
    path = path or os.environ.get(env_var)
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: {name} weights not found (from {'the argument' if given else env_var})")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: cannot be read as a {name} state dict ({exc.__class__.__name__}: {exc})") from None
        return FeatureWeights(state.get("state_dict", state), f"{name} from {path}", file_sha256(path), path=str(path))
    reason = "no download address"
    if url:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)
            cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
            found = cached.is_file()
            return FeatureWeights(state, f"{name} from {url}", file_sha256(cached) if found else None,
                                  path=str(cached) if found else None)
        except Exception as exc:  # offline: URLError, socket errors
            reason = f"download failed ({exc.__class__.__name__}: {str(exc)[:120]})"
        finally:
            socket.setdefaulttimeout(previous)
    if not allow_random:
        raise RuntimeError(f"{name}: no weights ({reason}). Give a local weights file (set {env_var} or pass a path); "
                           f"{allow_hint} uses a fixed-seed random network instead, and every number it gives is "
                           f"labelled as such.")
    return FeatureWeights(None, f"RANDOM-INIT {name} (seed 0; {reason}): not the published metric", None, random=True)
