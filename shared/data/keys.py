"""What a sampler hands a dataset: which item, the seed for its random augmentation, and the size."""
from __future__ import annotations

import random
from typing import NamedTuple


class SampleKey(NamedTuple):
    index: int
    seed: int | None  # None: evaluation (centre crop, no flip)
    height: int
    width: int
    kind: str = ""  # "image" or "video": which dataset of a joint set serves it

    def rng(self) -> random.Random | None:
        return None if self.seed is None else random.Random(self.seed)
