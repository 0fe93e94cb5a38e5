"""Sampling codes from the LM: our own loop with the KV cache and classifier-free guidance on one doubled batch.

    codes = sample_codes(model, labels, guidance_scale=1.5, top_k=0, top_p=1.0, temperature=1.0, seed=0)

Each step takes the last position's logits over the code tokens only (class and null tokens can never be
sampled), applies guidance `uncond + s * (cond - uncond)` (the uncond half carries the null class; with
`cfg_interval=(a, b)` only on generated tokens whose share of the sequence lies in [a, b)), then temperature,
top-k and top-p, and draws from a seeded generator by inverting the CDF with one uniform number per row.
The same seed gives the same codes with or without the cache (`use_cache=False` recomputes the whole prefix
every step; kept for tests and the benchmark).

`transformers.generate()` is not used: it applies top_k=50 unless told otherwise and runs guidance as a
second forward pass (docs/lm_generation.md's speed table times the two on the same model).
"""
from __future__ import annotations

import torch
from transformers import LlamaForCausalLM
from transformers.cache_utils import Cache, DynamicLayer

from shared.config import check_seed
from shared.labels import NULL_LABEL, class_labels

from .config import check_settings
from .model import CodeLayout, layout_of


class BufferLayer(DynamicLayer):
    """One layer's KV cache in a buffer of the whole sequence's length: a step writes its own position instead of
    concatenating the whole cache again (transformers' DynamicLayer: torch.cat, 60 % of a small CPU step)."""

    def __init__(self, max_len: int):
        super().__init__()
        self.max_len, self.length = max_len, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        b, h, _, d = key_states.shape
        self.k_buf = key_states.new_empty(b, h, self.max_len, d)
        self.v_buf = value_states.new_empty(b, h, self.max_len, value_states.shape[-1])

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, asked for {end}")
        self.k_buf[:, :, self.length: end] = key_states
        self.v_buf[:, :, self.length: end] = value_states
        self.length = end
        self.keys, self.values = self.k_buf[:, :, :end], self.v_buf[:, :, :end]
        return self.keys, self.values


def kv_cache(model: LlamaForCausalLM, max_len: int) -> Cache:
    return Cache(layers=[BufferLayer(max_len) for _ in range(model.config.num_hidden_layers)])


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then keep the `top_k` largest (0: all), then the smallest set of probability >= top_p (always
    at least the most likely token)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
        drop = before >= top_p
        drop[:, 0] = False  # the nucleus rule keeps the most likely token whatever top_p is
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row from softmax(logits): the first index whose CDF reaches a uniform draw from (0, 1] (a draw
    of exactly 0 would pick token 0 whatever its probability; it is taken as 1)."""
    probs = logits.float().softmax(-1)
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)
    u = torch.where(u > 0, u, torch.ones_like(u)) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).clamp_(max=probs.shape[-1] - 1).squeeze(1)


def guided(logits: torch.Tensor, scale: float, batch: int, active: bool) -> torch.Tensor:
    """Rows [:batch] conditional, [batch:] unconditional (when guidance runs: scale != 1) -> (batch, V)."""
    if scale == 1.0:
        return logits
    cond, uncond = logits[:batch], logits[batch:]
    return uncond + scale * (cond - uncond) if active else cond


@torch.no_grad()
def sample_codes(model: LlamaForCausalLM, labels: torch.Tensor | None, given: torch.Tensor | None = None,
                 guidance_scale: float = 1.0, cfg_interval: tuple[float, float] | None = None,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 use_cache: bool = True) -> torch.Tensor:
    """Codes (B, T', h, w) for class `labels` (B,) (None: the null class, unconditional).

    given: (B, cond_frames * h * w) codes of the first latent frames (frame prediction), returned untouched.
    guidance_scale: classifier-free guidance, uncond + s (cond - uncond) on the logits; 1.0: none (the conditional
    logits alone, one pass), as in diffusers. Guidance needs class labels.
    """
    layout = layout_of(model)
    device = next(model.parameters()).device
    check_settings(guidance_scale, cfg_interval, temperature, top_k, top_p)
    check_seed(seed)
    if labels is None and guidance_scale != 1.0:
        raise ValueError(f"guidance_scale {guidance_scale} needs class labels (unconditional sampling: 1.0)")
    if labels is None:
        if given is None:
            raise ValueError("unconditional sampling needs `given` codes or labels to size the batch")
        labels = torch.full((given.shape[0],), NULL_LABEL, dtype=torch.long)
    else:
        labels = class_labels(labels, layout.num_classes, allow_null=True)
    labels = labels.to(device).long()
    b = labels.shape[0]
    null = labels < 0
    if given is not None:
        given = given.reshape(b, -1).to(device).long()
        if given.shape[1] != layout.num_given:
            raise ValueError(f"given codes must be (B, {layout.num_given}) for this model "
                             f"({layout.cond_frames} latent frames of {layout.grid[1]}x{layout.grid[2]}), got "
                             f"{tuple(given.shape)}")
        if given.numel() and (given.min() < 0 or given.max() >= layout.codebook_size):
            raise ValueError(f"given codes must be in [0, {layout.codebook_size})")
    elif layout.num_given:
        raise ValueError(f"this model predicts frames: pass `given` codes of the first {layout.cond_frames} latent "
                         f"frames (B, {layout.num_given})")
    generator = torch.Generator(device=device).manual_seed(seed)
    class_tok = layout.class_tokens(labels.clamp(min=0), null)
    prefix = torch.cat([class_tok[:, None]] + ([given] if given is not None else []), 1)
    if guidance_scale != 1.0:
        prefix = torch.cat([prefix, prefix], 0)
        prefix[b:, 0] = layout.null_token
    n_new = layout.num_codes - layout.num_given
    was_training = model.training
    model.eval()
    out = _loop(model, layout, prefix, n_new, b, guidance_scale, cfg_interval, temperature, top_k, top_p, generator,
                use_cache)
    model.train(was_training)
    return out[:, 1:].reshape(b, *layout.grid)


def _loop(model, layout: CodeLayout, prefix, n_new, b, guidance_scale, cfg_interval, temperature, top_k, top_p,
          generator, use_cache) -> torch.Tensor:
    seq = prefix
    cache = kv_cache(model, layout.seq_len) if use_cache else None
    step_input = prefix
    for i in range(n_new):
        if use_cache:
            out = model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
        else:
            out = model(input_ids=seq, use_cache=False, logits_to_keep=1)
        logits = out.logits[:, -1, : layout.codebook_size].float()  # code tokens only
        share = (layout.num_given + i) / layout.num_codes
        active = cfg_interval is None or cfg_interval[0] <= share < cfg_interval[1]
        logits = filter_logits(guided(logits, guidance_scale, b, active), temperature, top_k, top_p)
        token = draw(logits, generator)
        if guidance_scale != 1.0:
            token = torch.cat([token, token])
        step_input = token[:, None]
        seq = torch.cat([seq, step_input], 1)
    return seq[:b]
