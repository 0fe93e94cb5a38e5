"""The LM over VQ codes: transformers' `LlamaForCausalLM` (RMSNorm, SwiGLU, RoPE, SDPA) and the token layout.

One vocabulary, one sequence per image or clip:

    vocabulary  [0, K)          code indices of the tokenizer's codebook (K entries)
                [K, K + C)      one token per class
                K + C           the null class (unconditional; class dropout; the uncond half of guidance)

    sequence    [class] c_1 c_2 ... c_N              N = T' * h * w codes in raster order (frame, row, column)
    targets     -100 for the class token; every code is predicted from the tokens before it
                frame prediction: the codes of the first `cond_frames` latent frames are given, also -100

The layout (codebook size, classes, latent grid, given frames, pixel size) is stored in the LM's own
config.json (`code_layout`), so `LlamaForCausalLM.from_pretrained(folder)` brings back everything sampling
and decoding need.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from .config import GPTShape


@dataclass
class CodeLayout:
    codebook_size: int  # K
    num_classes: int  # C
    grid: tuple[int, int, int]  # (T', h, w) latent grid
    size: tuple[int, int, int]  # (T, H, W) pixels the grid decodes to
    cond_frames: int = 0  # latent frames given at sampling (frame prediction); 0: everything is generated
    class_names: tuple[str, ...] = ()
    seen_classes: tuple[int, ...] = ()  # classes present in the training codes (sampling defaults to these)

    def __post_init__(self):
        self.grid, self.size = tuple(self.grid), tuple(self.size)
        self.class_names, self.seen_classes = tuple(self.class_names), tuple(self.seen_classes)
        if not 0 <= self.cond_frames < self.grid[0]:
            raise ValueError(f"cond_frames must be in [0, {self.grid[0]}) for a grid of {self.grid[0]} latent "
                             f"frames, got {self.cond_frames}")

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + self.num_classes + 1

    @property
    def null_token(self) -> int:
        return self.codebook_size + self.num_classes

    @property
    def num_codes(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def num_given(self) -> int:
        """Codes given before generation starts (frame prediction), not predicted by the loss."""
        return self.cond_frames * self.grid[1] * self.grid[2]

    @property
    def seq_len(self) -> int:
        return 1 + self.num_codes

    def class_tokens(self, labels: torch.Tensor, null: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) class labels -> (B,) tokens; where `null` is true, the null class."""
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"class labels must be in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")
        tokens = labels.long() + self.codebook_size
        return tokens if null is None else torch.where(null, torch.full_like(tokens, self.null_token), tokens)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def layout_of(model: LlamaForCausalLM) -> CodeLayout:
    values = getattr(model.config, "code_layout", None)
    if not values:
        raise ValueError("this LlamaForCausalLM has no code_layout in its config: not an LM over VQ codes")
    return CodeLayout(**values)


def build_lm(shape: GPTShape, layout: CodeLayout) -> LlamaForCausalLM:
    """A LlamaForCausalLM of `shape` for `layout`'s vocabulary and sequence; output head zero-initialised
    (LlamaGen), so training starts from uniform predictions."""
    if shape.width % shape.heads:
        raise ValueError(f"width {shape.width} must be a multiple of heads {shape.heads}")
    config = LlamaConfig(vocab_size=layout.vocab_size, hidden_size=shape.width, intermediate_size=shape.intermediate,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.heads, max_position_embeddings=layout.seq_len,
                         rope_theta=shape.rope_theta, attention_dropout=shape.attention_dropout,
                         tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    config.code_layout = layout.to_dict()
    model = LlamaForCausalLM(config)
    if model.lm_head.weight.device.type != "meta":
        torch.nn.init.zeros_(model.lm_head.weight)
    return model


def sequences(codes: torch.Tensor, class_tokens: torch.Tensor) -> torch.Tensor:
    """codes (B, T', h, w) + class tokens (B,) -> input ids (B, 1 + T'hw)."""
    return torch.cat([class_tokens[:, None], codes.reshape(codes.shape[0], -1).long()], 1)


def targets(input_ids: torch.Tensor, layout: CodeLayout) -> torch.Tensor:
    """Labels for the causal LM loss (transformers shifts them): the class token and given codes are -100."""
    labels = input_ids.clone()
    labels[:, : 1 + layout.num_given] = -100
    return labels


def lm_inputs(codes: torch.Tensor, labels: torch.Tensor, layout: CodeLayout,
              drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, targets) of codes (B, T', h, w) and class labels (B,); `drop` (B,) bool: those sequences get the
    null class."""
    ids = sequences(codes, layout.class_tokens(labels, drop))
    return ids, targets(ids, layout)


def lm_loss(model: LlamaForCausalLM, codes: torch.Tensor, labels: torch.Tensor, layout: CodeLayout,
            drop: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over the predicted codes; `drop` (B,) bool: those sequences get the null class."""
    ids, labels = lm_inputs(codes, labels, layout, drop)
    return model(input_ids=ids, labels=labels).loss


def count_parameters(shape: GPTShape, layout: CodeLayout) -> int:
    """Parameters of `shape` for `layout` without allocating them (built on the meta device)."""
    with torch.device("meta"):
        model = build_lm(shape, layout)
    return sum(p.numel() for p in model.parameters())
