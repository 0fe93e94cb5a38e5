"""The one name of a classifier-free guidance scale wherever it is written down: its key `cfg<s>` (s in its shortest
form: cfg1, cfg1.5). The key names the samples folder `<out>/cfg<s>/` and its grid, a folder's entry in samples.json,
eval.sample_metrics' `samples_cfg<s>.json` and a generator result's `metrics["cfg<s>"]`; a file or row that holds
the scale itself calls it `guidance_scale` (a config's list of them: `guidance_scales`). Rows of two files are
joined by this key, never by comparing floats.

    guidance_key(1.5) == "cfg1.5"
    keyed(rows, "class_consistency.json")  # {"cfg1": row, "cfg1.5": row}: rows by the key of their guidance_scale
"""
from __future__ import annotations

from typing import Iterable

PREFIX = "cfg"


def guidance_key(guidance_scale: float) -> str:
    """The name of a guidance scale: "cfg" and the scale in its shortest form (1.0 -> cfg1, 1.5 -> cfg1.5)."""
    return f"{PREFIX}{guidance_scale:g}"


def keyed(rows: Iterable[dict], where: str) -> dict[str, dict]:
    """Rows holding a `guidance_scale`, by its key; a clear error naming `where` for a row without one (a file an
    earlier version wrote) or two rows of one scale."""
    out: dict[str, dict] = {}
    for i, row in enumerate(rows):
        if not isinstance(row.get("guidance_scale"), (int, float)):
            raise ValueError(f"{where}: row {i} holds no guidance_scale (written by an earlier version of the "
                             f"step that wrote it); run that step again")
        key = guidance_key(row["guidance_scale"])
        if key in out:
            raise ValueError(f"{where}: two rows of guidance scale {row['guidance_scale']:g}")
        out[key] = row
    return out
