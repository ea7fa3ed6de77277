"""Blocks parked on disk and read back in order: for a codec that must measure a whole item
before it encodes any of it (encodec_48khz scales each item to unit RMS), without holding
the item in memory. The file is removed on close; its pages are the OS's cache, not ours.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import numpy as np
import torch


class Spool:
    """Pairs (stems [K, C, n], mix [1, C, n] or None), written then read back once."""

    def __init__(self, folder: str | None = None):
        self._file = tempfile.TemporaryFile(dir=folder)
        self._shapes: list[tuple[tuple[int, ...], tuple[int, ...] | None]] = []

    def write(self, stems: torch.Tensor, mix: torch.Tensor | None) -> None:
        for block in (stems, mix):
            if block is not None:
                self._file.write(block.detach().cpu().float().numpy().tobytes())
        self._shapes.append((tuple(stems.shape), None if mix is None else tuple(mix.shape)))

    def blocks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        self._file.seek(0)
        for stems, mix in self._shapes:
            yield self._read(stems), (None if mix is None else self._read(mix))

    def _read(self, shape: tuple[int, ...]) -> torch.Tensor:
        raw = self._file.read(int(np.prod(shape)) * 4)
        return torch.from_numpy(np.frombuffer(raw, np.float32).reshape(shape).copy())

    def close(self) -> None:
        self._file.close()
