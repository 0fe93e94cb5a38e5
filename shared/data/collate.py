"""One collate for every dataset here: tensors are stacked, everything else is listed.

Items are dicts. A field holding tensors of one shape in every item becomes one stacked tensor; any other
field (paths, strings, tensors of different shapes) becomes a list. The "unreadable" field that
`KindRouter` adds (errors of items replaced because they could not be read) is flattened into one list.
"""
from __future__ import annotations

import torch


def collate(items: list[dict]) -> dict:
    if not items:
        raise ValueError("collate: empty batch")
    fields = items[0].keys()
    for i, item in enumerate(items[1:], 1):
        if item.keys() != fields:
            raise ValueError(f"collate: item {i} has fields {sorted(item)}, item 0 has {sorted(fields)}")
    out = {}
    for name in fields:
        values = [item[name] for item in items]
        if name == "unreadable":
            out[name] = [e for v in values for e in v]
        elif all(isinstance(v, torch.Tensor) for v in values) and len({v.shape for v in values}) == 1:
            out[name] = torch.stack(values)
        else:
            out[name] = values
    out.setdefault("unreadable", [])
    return out
