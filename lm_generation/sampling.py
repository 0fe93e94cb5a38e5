"""Sampling codes from the LM: our own loop with the KV cache and classifier-free guidance on one doubled batch.

    codes = sample_codes(model, labels, guidance_scale=1.5, top_k=0, top_p=1.0, temperature=1.0, seed=0)

Each step takes the last position's logits over the code tokens only (class and null tokens can never be
sampled), applies guidance `uncond + s * (cond - uncond)` (the uncond half carries the null class; with
`cfg_interval=(a, b)` only on generated tokens whose share of the sequence lies in [a, b)), then temperature,
top-k and top-p, and draws from a seeded generator by inverting the CDF with one uniform number per row.
The same seed gives the same codes with or without the cache (`use_cache=False` recomputes the whole prefix
every step; kept for tests and the benchmark).

`compile=True` runs every decode step after the first through torch.compile over transformers' `StaticCache`: one
graph of fixed shapes for the whole sequence (CUDA graphs on CUDA); the prefix (the class token, and the given codes
of frame prediction) fills the same cache in one eager call. Greedy decoding and seeded draws give the eager
sampler's codes (the logits agree to float rounding). Each new batch size compiles anew (the last, smaller batch of
a sampling run too); inductor's cache on disk makes a compilation of a shape it has seen take seconds.
`compile="auto"`: compiled where a measurement of a few decode steps shows it faster, decided once per model and
batch size (decode_choices records the decisions).

`transformers.generate()` is not used: it applies top_k=50 unless told otherwise and runs guidance as a
second forward pass (docs/lm_generation.md's speed table times the two on the same model).
"""
from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

import torch
from transformers import LlamaForCausalLM
from transformers.cache_utils import Cache, DynamicLayer, StaticCache

from shared.config import check_seed
from shared.labels import NULL_LABEL, class_labels
from shared.timing import best_in_turns, timed
from shared.training.compile import check_compile, measured_choice

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


def kv_cache(model: LlamaForCausalLM, max_len: int, static: bool = False) -> Cache:
    """The eager sampler's cache (BufferLayer), or the compiled decode step's (transformers' StaticCache).

    Why StaticCache and not BufferLayer for the compiled step: BufferLayer hands attention the filled part of its
    buffer, one length more every step, and its fill level is a Python int; compiled code would recompile at every
    step, or trace the length as a symbol. StaticCache keeps the buffer's shape and its fill level in a tensor
    (attention runs over every position under a mask), so one graph serves every step. An own buffer of that kind
    would be StaticCache again. Eager, BufferLayer stays the faster: at tiny (16 rows, 1 thread, a shared CPU)
    3.2-4.6 ms a token against StaticCache's 4.2-4.3 (compiled StaticCache: 1.3 ms); at GPT-B (16 rows, 256 tokens,
    16,384 codes) 81 s against 87 s for the whole sequence."""
    if static:
        return StaticCache(config=model.config, max_cache_len=max_len)
    return Cache(layers=[BufferLayer(max_len) for _ in range(model.config.num_hidden_layers)])


def code_logits(model: LlamaForCausalLM, ids: torch.Tensor, cache: Cache | None, codes: int) -> torch.Tensor:
    """The last position's logits over the code tokens (class and null tokens can never be sampled), in fp32."""
    out = model(input_ids=ids, cache=cache, use_cache=cache is not None, logits_to_keep=1)
    return out.logits[:, -1, :codes].float()


_compiled: dict[str, Callable] = {}  # device type -> torch.compile(code_logits), made at first use
_choices: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(rows, dtype): (compiled?, why)}
log = logging.getLogger(__name__)


def compiled_logits(device: torch.device) -> Callable:
    """torch.compile(code_logits) for a device's type; on CUDA with CUDA graphs (mode "reduce-overhead": a decode
    step is a few hundred small kernels, and StaticCache keeps its buffers at fixed addresses for the graphs)."""
    if device.type not in _compiled:
        _compiled[device.type] = torch.compile(code_logits, mode="reduce-overhead" if device.type == "cuda" else None,
                                               dynamic=False)
    return _compiled[device.type]


def decode_choices(model: LlamaForCausalLM) -> dict[str, dict]:
    """What compile="auto" chose for this model: {"<rows> rows, <dtype>": {"compiled": bool, "reason": str}}."""
    return {f"{rows} rows, {str(dtype).removeprefix('torch.')}": {"compiled": c, "reason": why}
            for (rows, dtype), (c, why) in _choices.get(model, {}).items()}


def choose_decode(model: LlamaForCausalLM, layout: CodeLayout, prefix: torch.Tensor, steps: int = 4) -> bool:
    """compile="auto": whether the compiled decode step is faster for this model and batch, measured once (the
    prefix filled into both caches, then `steps` decode steps of each in turns, the best of each)."""
    rows, dtype = prefix.shape[0], next(model.parameters()).dtype
    known = _choices.setdefault(model, {})
    if (rows, dtype) not in known:
        steps = min(steps, layout.num_codes - layout.num_given - 1)
        if steps < 1:
            known[rows, dtype] = (False, "nothing to decode after the first token")
        else:
            device, token = prefix.device, torch.zeros(rows, 1, dtype=torch.long, device=prefix.device)
            caches = {"eager": kv_cache(model, layout.seq_len), "compiled": kv_cache(model, layout.seq_len, True)}
            calls = {"eager": code_logits, "compiled": compiled_logits(device)}
            for cache in caches.values():
                code_logits(model, prefix, cache, layout.codebook_size)
            seconds = timed(lambda: calls["compiled"](model, token, caches["compiled"], layout.codebook_size), device)
            best = best_in_turns({k: (lambda k=k: calls[k](model, token, caches[k], layout.codebook_size))
                                  for k in calls}, device, rounds=steps)
            choice, why = measured_choice("a decode step", best)
            known[rows, dtype] = (choice, f"{why}; compiled in {seconds:.0f} s")
        log.info("compile=auto, %d rows: %s", rows, known[rows, dtype][1])
    return known[rows, dtype][0]


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
                 use_cache: bool = True, compile: bool | str = False) -> torch.Tensor:
    """Codes (B, T', h, w) for class `labels` (B,) (None: the null class, unconditional).

    given: (B, cond_frames * h * w) codes of the first latent frames (frame prediction), returned untouched.
    guidance_scale: classifier-free guidance, uncond + s (cond - uncond) on the logits; 1.0: none (the conditional
    logits alone, one pass), as in diffusers. Guidance needs class labels.
    compile: True, False or "auto" (the module docstring); with the cache only.
    """
    layout = layout_of(model)
    device = next(model.parameters()).device
    check_settings(guidance_scale, cfg_interval, temperature, top_k, top_p)
    check_seed(seed)
    check_compile(compile)
    if compile is True and not use_cache:
        raise ValueError("compile=True decodes over a static KV cache: it needs use_cache=True")
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
    if compile == "auto":
        compile = use_cache and choose_decode(model, layout, prefix)
    out = _loop(model, layout, prefix, n_new, b, guidance_scale, cfg_interval, temperature, top_k, top_p, generator,
                use_cache, compile)
    model.train(was_training)
    return out[:, 1:].reshape(b, *layout.grid)


def _loop(model, layout: CodeLayout, prefix, n_new, b, guidance_scale, cfg_interval, temperature, top_k, top_p,
          generator, use_cache, compiled: bool = False) -> torch.Tensor:
    seq = prefix
    cache = kv_cache(model, layout.seq_len, static=compiled) if use_cache else None
    step = compiled_logits(prefix.device) if compiled else code_logits
    step_input = prefix
    for i in range(n_new):
        if use_cache:  # the prefix in one eager call, every later token through `step`
            logits = (step if i else code_logits)(model, step_input, cache, layout.codebook_size)
        else:
            logits = code_logits(model, seq, None, layout.codebook_size)
        share = (layout.num_given + i) / layout.num_codes
        active = cfg_interval is None or cfg_interval[0] <= share < cfg_interval[1]
        logits = filter_logits(guided(logits, guidance_scale, b, active), temperature, top_k, top_p)
        token = draw(logits, generator)
        if guidance_scale != 1.0:
            token = torch.cat([token, token])
        step_input = token[:, None]
        seq = torch.cat([seq, step_input], 1)
    return seq[:b]
