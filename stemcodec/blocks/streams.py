"""Audio read front to back in blocks: `read(n)` gives the next `[..., C, m]`, m = min(n, left).

A stream knows its rate, channels and total length before it is read (the file was scanned),
so a stage that needs the end (the last Demucs segment, the codec's last chunk) knows where
it is. Each stage holds at most one block and what its own context needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..decode import Found, read_blocks
from ..levels import LevelMeter


class Stream:
    """Subclasses give `_next()`: the next piece (any size), or None at the end."""

    rate: int
    channels: int
    length: int  # samples in all

    def __init__(self) -> None:
        self._pieces: list[torch.Tensor] = []
        self._held = 0
        self.position = 0  # samples read so far

    def _next(self) -> torch.Tensor | None:
        raise NotImplementedError

    def read(self, n: int) -> torch.Tensor:
        """The next `n` samples (fewer only at the end)."""
        while self._held < n:
            piece = self._next()
            if piece is None:
                break
            if piece.shape[-1]:
                self._pieces.append(piece)
                self._held += piece.shape[-1]
        if not self._pieces:
            return self._empty()
        whole = self._pieces[0] if len(self._pieces) == 1 else torch.cat(self._pieces, dim=-1)
        out, rest = whole[..., :n], whole[..., n:]
        self._pieces = [rest] if rest.shape[-1] else []
        self._held = rest.shape[-1]
        self.position += out.shape[-1]
        return out

    def _empty(self) -> torch.Tensor:
        return torch.zeros(self.channels, 0)

    def blocks(self, n: int) -> Iterator[torch.Tensor]:
        """All that is left, `n` samples at a time."""
        while (block := self.read(n)).shape[-1]:
            yield block


class FileStream(Stream):
    """A scanned file, holes filled, as float32 `[C, n]` at its own rate; its levels are
    measured on the way (stemcodec.levels, before any downmix hides a dead channel)."""

    def __init__(self, found: Found, meter: bool = False):
        super().__init__()
        self.rate, self.channels, self.length = found.rate, found.channels, found.frames
        self.meter = LevelMeter(found.rate, found.channels) if meter else None
        self._blocks = read_blocks(found)

    def _next(self) -> torch.Tensor | None:
        block = next(self._blocks, None)
        if block is None:
            return None
        if self.meter is not None:
            self.meter.add(block)
        return torch.from_numpy(np.ascontiguousarray(block.T))


class Channels(Stream):
    """`channels` as audio.to_channels makes them (average down, duplicate up), of `[..., C, n]`."""

    def __init__(self, source: Stream, channels: int):
        super().__init__()
        self.source = source
        self.rate, self.channels, self.length = source.rate, channels, source.length

    def _next(self) -> torch.Tensor | None:
        block = self.source.read(1 << 16)
        if not block.shape[-1]:
            return None
        return to_channels(block, self.channels)


def to_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """audio.to_channels for `[..., C, S]`."""
    have = wav.shape[-2]
    if have == channels:
        return wav
    mono = wav if have == 1 else wav.mean(dim=-2, keepdim=True)
    if channels == 1:
        return mono
    if channels == 2:
        return mono.expand(*mono.shape[:-2], 2, -1).clone()
    raise ValueError(f"unsupported channel count {channels}")


class Fit(Stream):
    """Zero-padded (or cut) to `length` samples, as prepare fits stems to the longest."""

    def __init__(self, source: Stream, length: int):
        super().__init__()
        self.source = source
        self.rate, self.channels, self.length = source.rate, source.channels, length
        self._given = 0

    def _next(self) -> torch.Tensor | None:
        left = self.length - self._given
        if left <= 0:
            return None
        block = self.source.read(min(left, 1 << 16))
        if not block.shape[-1]:
            block = torch.zeros(*block.shape[:-1], min(left, 1 << 16))
        self._given += block.shape[-1]
        return block


class Loudness(Stream):
    """Passes `source` on and sums its squares: `silent()` is audio.is_silent of the whole."""

    def __init__(self, source: Stream):
        super().__init__()
        self.source = source
        self.rate, self.channels, self.length = source.rate, source.channels, source.length
        self._squares = 0.0
        self._count = 0

    def _next(self) -> torch.Tensor | None:
        block = self.source.read(1 << 16)
        if not block.shape[-1]:
            return None
        self._squares += float(block.double().pow(2).sum())
        self._count += block.numel()
        return block

    def silent(self, threshold_db: float) -> bool:
        if self._count == 0:
            return True
        rms = (self._squares / self._count) ** 0.5
        return 20.0 * float(np.log10(max(rms, 1e-10))) < threshold_db
