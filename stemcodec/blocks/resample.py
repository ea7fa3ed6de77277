"""torchaudio's resampling (audio.resample) of a stream, block by block, sample for sample.

torchaudio.functional.resample reduces the rates by their gcd to `orig` and `new`, and
computes each run of `new` output samples from `orig` input samples plus `width` on either
side (a sinc of 6 zero crossings: width = ceil(6 * orig / (0.99 * min(orig, new))), zeros
beyond the ends). So a block that starts and ends on a multiple of `orig`, resampled with
`margin` >= width real samples on either side, gives exactly the whole signal's samples for
its span; the margins' own outputs are dropped. Only the total length differs from the
whole-file call for long inputs: torchaudio rounds `ceil(new * S / orig)` in float32 (a
sample short past ~2M output samples), here it is exact.
"""

from __future__ import annotations

import math

import torch

from ..audio import resample
from .streams import Stream

STEP = 1 << 16  # input samples per call, rounded to a multiple of `orig`


def resampled_length(samples: int, orig_rate: int, new_rate: int) -> int:
    """Samples of `samples` resampled from `orig_rate` to `new_rate`: ceil(S * new / orig)."""
    if orig_rate == new_rate:
        return samples
    g = math.gcd(orig_rate, new_rate)
    return -(-samples * (new_rate // g) // (orig_rate // g))


class Resampled(Stream):
    """`source` at `rate`, as audio.resample gives it for the whole of `source`."""

    def __init__(self, source: Stream, rate: int):
        super().__init__()
        self.source = source
        self.rate, self.channels = rate, source.channels
        self.length = resampled_length(source.length, source.rate, rate)
        g = math.gcd(source.rate, rate)
        self.orig, self.new = source.rate // g, rate // g
        width = math.ceil(6 * self.orig / (0.99 * min(self.orig, self.new)))
        self.margin = self.orig * math.ceil(width / self.orig)  # a whole number of steps
        self.step = self.orig * max(1, STEP // self.orig)
        self._buffer: torch.Tensor | None = None  # input from `_start` on
        self._start = 0
        self._done = 0  # input samples whose output was given (a multiple of orig)
        self._given = 0
        self._ended = False

    def _next(self) -> torch.Tensor | None:
        if self.orig == self.new:
            block = self.source.read(STEP)
            return block if block.shape[-1] else None
        if self._given >= self.length:
            return None
        want = self._done + self.step + self.margin  # input that makes `step` final
        while not self._ended and self._end() < want:
            block = self.source.read(STEP)
            if not block.shape[-1]:
                self._ended = True
                break
            self._buffer = block if self._buffer is None else torch.cat([self._buffer, block], -1)
        if self._buffer is None:
            return None
        first = max(0, self._done - self.margin)  # a multiple of orig, as margin and done are
        piece = self._buffer[..., first - self._start: want - self._start]
        skip = (self._done - first) // self.orig * self.new
        last = self._ended and self._end() <= want
        if last:  # zeros to a whole step, as torchaudio pads the end: its length is exact
            piece = torch.nn.functional.pad(piece, (0, -piece.shape[-1] % self.orig))
        out = resample(piece, self.orig, self.new)  # the gcd is 1 now: the same kernel
        if last:
            out = out[..., skip:]
            self._done = self._end()
        else:
            out = out[..., skip: skip + self.step // self.orig * self.new]
            self._done += self.step
        out = out[..., : self.length - self._given]
        self._given += out.shape[-1]
        keep = max(0, self._done - self.margin)  # what the next block's left margin needs
        self._buffer = self._buffer[..., keep - self._start:]
        self._start = keep
        return out

    def _end(self) -> int:
        return self._start + (0 if self._buffer is None else self._buffer.shape[-1])
