"""Batches as a pure function of the training step: exact resume, per-rank sharding, joint image/video.

A `StepSchedule` says, for global step s, which kind of batch it is (image or video, following a
cycling `pattern` such as "iv"), at which resolution (drawn per batch from `resolutions`, the same on
every rank), and which items each rank reads (a fresh permutation per epoch of each dataset) with
which augmentation seed. `StepBatchSampler` turns a schedule into DataLoader batches from any start
step, so resuming at step s reads exactly the batches an uninterrupted run would have read.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .collate import collate
from .errors import DataError
from .keys import SampleKey


@dataclass
class StepSchedule:
    lengths: dict[str, int]  # dataset length per kind: {"image": n} and/or {"video": m}
    batch_sizes: dict[str, int]  # per-rank batch size per kind
    pattern: str = "i"  # one letter a step: "i" image, "v" video, cycling
    resolutions: Sequence[int | tuple[int, int]] = (256,)
    seed: int = 0
    rank: int = 0
    world_size: int = 1

    KINDS = {"i": "image", "v": "video"}

    def __post_init__(self):
        if not self.pattern or set(self.pattern) - set(self.KINDS):
            raise ValueError(f"pattern must be letters 'i' (image) and 'v' (video), got {self.pattern!r}")
        for letter in set(self.pattern):
            if self.KINDS[letter] not in self.lengths:
                raise ValueError(f"pattern {self.pattern!r} asks for {self.KINDS[letter]} batches, but no "
                                 f"{self.KINDS[letter]} dataset was given")
        self.resolutions = [tuple(r) if not isinstance(r, int) else (r, r) for r in self.resolutions]

    def kind(self, step: int) -> str:
        return self.KINDS[self.pattern[step % len(self.pattern)]]

    def _kind_step(self, step: int) -> int:
        """How many batches of this step's kind came before it."""
        letter = self.pattern[step % len(self.pattern)]
        full, rest = divmod(step, len(self.pattern))
        return full * self.pattern.count(letter) + self.pattern[:rest].count(letter)

    def resolution(self, step: int) -> tuple[int, int]:
        return random.Random(self.seed * 1_000_003 + step).choice(self.resolutions)

    def keys(self, step: int) -> list[SampleKey]:
        kind = self.kind(step)
        n, bs = self.lengths[kind], self.batch_sizes[kind]
        h, w = self.resolution(step)
        first = (self._kind_step(step) * self.world_size + self.rank) * bs
        out = []
        for pos in range(first, first + bs):
            epoch, offset = divmod(pos, n)
            index = self._permutation(kind, epoch, n)[offset]
            seed = (self.seed * 2_654_435_761 + pos * 2 + (kind == "video")) % (2**31 - 1)
            out.append(SampleKey(index, seed, h, w, kind))
        return out

    def _permutation(self, kind: str, epoch: int, n: int) -> list[int]:
        cache = self.__dict__.setdefault("_perm_cache", {})
        if (kind, epoch) not in cache:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch * 2 + (kind == "video"))
            cache.clear()
            cache[(kind, epoch)] = torch.randperm(n, generator=g).tolist()
        return cache[(kind, epoch)]


class StepBatchSampler(Sampler):
    """Yields the key lists of steps start..stop-1 of a schedule."""

    def __init__(self, schedule: StepSchedule, start: int, stop: int):
        self.schedule, self.start, self.stop = schedule, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.schedule.keys(step)


class KindRouter(Dataset):
    """Serves each key from the dataset of its kind ("image" or "video").

    An item that cannot be read (a DataError: a corrupt file, a video too short) is replaced by the next
    readable item of its dataset, and its error is listed in the item's "unreadable", so that one bad file
    in a long run costs a warning instead of the run. The replacement depends only on the files, so resume
    stays exact. `max_replacements` unreadable items in a row stop the run with the first one's error.
    """

    def __init__(self, datasets: dict[str, Dataset], max_replacements: int = 8):
        self.datasets, self.max_replacements = datasets, max_replacements

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets.values())

    def __getitem__(self, key: SampleKey) -> dict:
        dataset = self.datasets[key.kind]
        errors: list[DataError] = []
        for attempt in range(self.max_replacements + 1):
            try:
                item = dataset[key._replace(index=(key.index + attempt) % len(dataset))]
            except DataError as exc:
                errors.append(exc)
                continue
            return {**item, "unreadable": [str(e) for e in errors]}
        raise DataError(errors[0].path, f"{errors[0].problem}; and the next {self.max_replacements} items of the "
                                        f"{key.kind} dataset could not be read either: {errors[-1]}")


def step_loader(datasets: dict[str, Dataset], schedule: StepSchedule, start: int, stop: int,
                num_workers: int = 0) -> DataLoader:
    """A DataLoader over steps start..stop-1; batch s is identical whatever step the run resumed at."""
    return DataLoader(KindRouter(datasets), batch_sampler=StepBatchSampler(schedule, start, stop),
                      num_workers=num_workers, collate_fn=collate, persistent_workers=False,
                      prefetch_factor=4 if num_workers else None)
