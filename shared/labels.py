"""Class labels as the generators take them: checked once, for the LM's sampler and the diffusion pipeline alike."""
from __future__ import annotations

import torch

NULL_LABEL = -1  # a row of the null class (unconditional), where a generator allows it


def class_labels(labels, num_classes: int, allow_null: bool = False) -> torch.Tensor:
    """Labels (B,) as a long tensor: a non-empty list or 1-D tensor of integers in [0, num_classes) (and NULL_LABEL
    where `allow_null`); anything else is an error that says what labels must be."""
    try:
        values = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"labels must be integers (an integer tensor or a list of ints), got {labels!r}") from None
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor (a non-empty list or 1-D tensor of class indices), "
                         f"got shape {tuple(values.shape)}")
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"labels must be integers (an integer tensor or a list of ints), got {labels!r}")
    low = NULL_LABEL if allow_null else 0
    if values.min() < low or values.max() >= num_classes:
        null = f", or {NULL_LABEL} for the null class" if allow_null else ""
        raise ValueError(f"labels must be in [0, {num_classes}){null}; got values in [{values.min().item()}, "
                         f"{values.max().item()}]")
    return values.long()
