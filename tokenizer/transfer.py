"""Initialising one stage's model from another's: same-shape weights copy; the tube embedding and the
tube output projection are inflated when the temporal patch size changes (t = 2 -> 4 in the paper);
the head converts between VQ and KL (the mean of a Gaussian head starts from the VQ projection), a Gaussian
latent may change width (the channels both have keep their maps), and so may the pixel heads' deblocking features."""
from __future__ import annotations

import torch

from .model import OmniTokenizer

INITIAL_LOGVAR = -10.0  # a new Gaussian head starts nearly deterministic (std ~ 0.007)


def _inflate(w: torch.Tensor, t_src: int, t_dst: int, axis: int, scale: bool, channels: int = 3) -> torch.Tensor:
    """Map the t axis inside a flattened (channels, t, p*p) axis from t_src to t_dst frames.

    New frame j copies old frame j * t_src // t_dst; for an input embedding (`scale`) the weight is
    multiplied by t_src / t_dst, so a tube whose frames repeat the old tube's gives the old embedding.
    """
    shape = list(w.shape)
    n = shape[axis]
    pp = n // (channels * t_src)
    grid = w.reshape(shape[:axis] + [channels, t_src, pp] + shape[axis + 1 :])
    pick = torch.tensor([j * t_src // t_dst for j in range(t_dst)])
    out = grid.index_select(axis + 1, pick)
    if scale:
        out = out * (t_src / t_dst)
    return out.reshape(shape[:axis] + [channels * t_dst * pp] + shape[axis + 1 :])


def transfer_weights(src: OmniTokenizer, dst: OmniTokenizer) -> list[str]:
    """Load src's weights into dst wherever they fit; returns notes on what was converted."""
    s, d = src.state_dict(), dst.state_dict()
    t_src, t_dst = src.config.temporal_patch_size, dst.config.temporal_patch_size
    notes = []
    out_channels = 3 + src.config.deblock_channels
    if t_src != t_dst:
        for key, axis, scale, channels in (("embed_rest.proj.weight", 1, True, 3), ("out_rest.weight", 0, False, out_channels),
                                           ("out_rest.bias", 0, False, out_channels)):
            s[key] = _inflate(s[key], t_src, t_dst, axis, scale, channels)
        notes.append(f"inflated tube embedding and output from t={t_src} to t={t_dst}")
    if dst.config.deblock_channels != src.config.deblock_channels:
        # the pixel heads' rows are (channels, [t,] p, q) with the colours first: the colour rows keep their maps, the
        # feature rows dst has beyond src's keep dst's initial weights (read by a zero deblocking conv at first)
        both = min(out_channels, 3 + dst.config.deblock_channels)
        for key in ("out_first.weight", "out_first.bias", "out_rest.weight", "out_rest.bias"):
            rows = both * (s[key].shape[0] // out_channels)
            s[key] = torch.cat([s[key][:rows], d[key][rows:]])
        notes.append(f"pixel heads' deblocking features {src.config.deblock_channels} -> {dst.config.deblock_channels}")
    c, c_src = dst.config.latent_dim, src.config.latent_dim
    q_src, q_dst = src.config.quantizer, dst.config.quantizer
    n = min(c, c_src)  # the channels both have
    if q_dst == "kl" and (q_src == "vq" or c != c_src):
        # The Gaussian head's rows are [mean (c), logvar (c)]. The source's means (a VQ projection, or a Gaussian's
        # means) keep their maps; every logvar the source lacks starts at -10 (nearly deterministic); mean rows
        # beyond the source's keep dst's own initial weights, and the decoder does not read those channels yet
        # (zero columns of post_head), so a widened model computes what the narrow one did
        w, b = s["head.proj.weight"], s["head.proj.bias"]
        w_new, b_new = d["head.proj.weight"].clone(), d["head.proj.bias"].clone()
        w_new[:n], b_new[:n] = w[:n], b[:n]
        w_new[c:], b_new[c:] = 0, INITIAL_LOGVAR
        if q_src == "kl":
            w_new[c : c + n], b_new[c : c + n] = w[c_src : c_src + n], b[c_src : c_src + n]
        s["head.proj.weight"], s["head.proj.bias"] = w_new, b_new
        if q_src == "vq":
            notes.append("Gaussian head: mean from the VQ projection, logvar starts at -10")
        if c != c_src:
            post = torch.zeros_like(d["post_head.weight"])
            post[:, :n] = s["post_head.weight"][:, :n]
            s["post_head.weight"] = post
            notes.append(f"latent {'widened' if c > c_src else 'narrowed'} from {c_src} to {c} channels"
                         + (" (new channels unread by the decoder at first)" if c > c_src else ""))
    elif q_src == "kl" and q_dst == "vq":  # the Gaussian's first means (a wider VQ's projection starts fresh, below)
        s["head.proj.weight"], s["head.proj.bias"] = s["head.proj.weight"][:n], s["head.proj.bias"][:n]
        notes.append("VQ head: projection from the Gaussian mean; codebook initialised from data")
    copied, skipped = 0, []
    for key, value in d.items():
        if key in s and s[key].shape == value.shape:
            d[key] = s[key]
            copied += 1
        else:
            skipped.append(key)
    if "head.codebook" in skipped and "head.initialized" in d:  # a codebook of another size starts fresh: from data
        d["head.initialized"] = torch.tensor(False)
        notes.append(f"codebook of {d['head.codebook'].shape[0]} codes initialised from data")
    dst.load_state_dict(d)
    notes.append(f"copied {copied} tensors; fresh: {skipped}" if skipped else f"copied {copied} tensors")
    return notes
