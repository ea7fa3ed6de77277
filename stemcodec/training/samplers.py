"""Batches as a pure function of the step: a resumed run draws exactly the batches the
uninterrupted run would, with nothing to save and nothing to skip.

Global batch g covers positions [g*B*W, (g+1)*B*W) of an endless sequence; process `rank`
of `world` takes its B of them:

    positions  0 1 2 3 | 4 5 6 7 | 8 ...      (B = 2, W = 2)
    batch      g=0     | g=1     | g=2
    rank       0 0 1 1 | 0 0 1 1 | 0 ...
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler


class StepBatches(Sampler):
    """Batches of positions: items of an endless dataset whose item i is a function of i."""

    def __init__(self, batch_size: int, start_batch: int = 0, rank: int = 0, world: int = 1):
        self.batch_size, self.start_batch, self.rank, self.world = batch_size, start_batch, rank, world

    def item(self, position: int) -> Any:
        return position

    def __iter__(self) -> Iterator[list[Any]]:
        batch = self.start_batch
        while True:
            first = (batch * self.world + self.rank) * self.batch_size
            yield [self.item(pos) for pos in range(first, first + self.batch_size)]
            batch += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return sys.maxsize


class ShuffledBatches(StepBatches):
    """Batches of (epoch, index) over `size` items: position p is item perm_e[p % size] of
    epoch e = p // size, perm_e a permutation seeded by (seed, e)."""

    def __init__(self, size: int, batch_size: int, seed: int, start_batch: int = 0,
                 rank: int = 0, world: int = 1):
        if size < 1:
            raise ValueError("ShuffledBatches needs at least one item")
        super().__init__(batch_size, start_batch, rank, world)
        self.size, self.seed = size, seed
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def item(self, position: int) -> tuple[int, int]:
        epoch, i = divmod(position, self.size)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return epoch, int(self._perm[i])
