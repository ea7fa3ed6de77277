"""Demucs on a stream: the segments of demucs.apply.apply_model, added up as they come.

apply_model(split=True, overlap=0.25, shifts=0) cuts the mix into segments of the model's
`segment` seconds every 0.75 segment, runs the model on each (the last, shorter one padded
around from the mix), weights each output by a triangle and divides the sum by the summed
weights. Here the same segments are run in the same order on the same samples and summed in
the same order, so the output is the whole-file separation's; a sample is given out once no
later segment reaches it. Memory: one segment of input and of output per model, whatever
the length. Separator.separate's normalisation (mean and std of the mono mix) needs the
whole file: the caller measures it first (`mix_statistics`) and passes it in.
"""

from __future__ import annotations

import time

import torch

from .streams import Stream

STEP = 1 << 16


class Separated(Stream):
    """`source` (at the separator's rate and channels) -> `[N + 1, C, n]`: the separator's N
    sources in its order, then the mix itself (what prepare encodes as the mix)."""

    def __init__(self, separator, source: Stream, mean: torch.Tensor, std: torch.Tensor):
        from demucs.apply import BagOfModels
        super().__init__()
        self.source = source
        self.rate, self.channels, self.length = source.rate, source.channels, source.length
        self.device = next(separator.model.parameters()).device
        self.mean, self.std = mean.to(self.device), std.to(self.device)
        model = separator.model
        if isinstance(model, BagOfModels):
            self.parts = [_Overlap(m, w, self.length) for m, w in zip(model.models, model.weights)]
            self.totals = [sum(w[k] for w in model.weights) for k in range(len(model.sources))]
        else:
            self.parts = [_Overlap(model, None, self.length)]
            self.totals = None
        self.sources = len(model.sources)
        self.seconds_spent = 0.0  # in the models: the separation's own speed
        self._input = torch.zeros(self.channels, 0)  # normalised mix from `_start` on
        self._mix = torch.zeros(self.channels, 0)  # the mix as given, from `_given` on
        self._start = 0
        self._given = 0
        self._ended = False

    def _next(self) -> torch.Tensor | None:
        if self._given >= self.length:
            return None
        while min(p.final for p in self.parts) <= self._given:
            self._feed()
            for part in self.parts:
                t0 = time.perf_counter()
                part.run(self._input, self._start, self._end(), self._ended)
                self.seconds_spent += time.perf_counter() - t0
        upto = min(p.final for p in self.parts)
        outs = [p.take(upto) for p in self.parts]
        if self.totals is None:
            out = outs[0]
        else:  # apply_model on a bag: weighted per source, summed model by model, divided
            out = outs[0] * _weights(self.parts[0].weights, out)
            for part, more in zip(self.parts[1:], outs[1:]):
                out += more * _weights(part.weights, more)
            out /= torch.tensor(self.totals, device=out.device)[:, None, None]
        out = out[0] * self.std + self.mean  # [N, C, n], un-normalised as Separator.separate
        n = out.shape[-1]
        mix, self._mix = self._mix[..., :n], self._mix[..., n:]
        self._given += n
        keep = min(p.needed() for p in self.parts)  # the earliest input a segment still reads
        self._input = self._input[..., keep - self._start:]
        self._start = keep
        return torch.cat([out.cpu(), mix[None]], dim=0)

    def _feed(self) -> None:
        block = self.source.read(STEP)
        if not block.shape[-1]:
            self._ended = True
            return
        self._mix = torch.cat([self._mix, block], dim=-1)
        normalised = (block.to(self.device, torch.float32) - self.mean) / self.std
        self._input = torch.cat([self._input.to(self.device), normalised], dim=-1)

    def _end(self) -> int:
        return self._start + self._input.shape[-1]


def _weights(weights, out: torch.Tensor) -> torch.Tensor:
    return torch.tensor(weights, device=out.device, dtype=out.dtype)[None, :, None, None]


class _Overlap:
    """One model's segments over the whole length, run when their input is there."""

    def __init__(self, model, weights, length: int):
        self.model, self.weights, self.length = model, weights, length
        self.segment = int(model.samplerate * model.segment)
        self.stride = int((1 - 0.25) * self.segment)
        self.offsets = list(range(0, length, self.stride))
        self.next = 0  # index of the next segment to run
        # the triangle of apply_model, as it builds it
        weight = torch.cat([torch.arange(1, self.segment // 2 + 1),
                            torch.arange(self.segment - self.segment // 2, 0, -1)])
        self.weight = weight / weight.max()
        self._out: torch.Tensor | None = None  # summed outputs from `_from` on
        self._sum = torch.zeros(0)
        self._from = 0

    @property
    def final(self) -> int:
        """Output before this is complete: no segment still to run reaches it."""
        return self.offsets[self.next] if self.next < len(self.offsets) else self.length

    def _span(self, offset: int) -> tuple[int, int]:
        """The input a segment at `offset` reads: TensorChunk.padded's window around it."""
        chunk = min(self.length - offset, self.segment)
        valid = self.model.valid_length(chunk) if hasattr(self.model, "valid_length") else chunk
        start = offset - (valid - chunk) // 2
        return start, start + valid

    def needed(self) -> int:
        if self.next >= len(self.offsets):
            return self.length
        return max(0, self._span(self.offsets[self.next])[0])

    def run(self, buffer: torch.Tensor, start: int, end: int, ended: bool) -> None:
        """Run every segment whose input lies in `buffer` (input [start, end))."""
        from demucs.apply import TensorChunk, apply_model
        while self.next < len(self.offsets):
            offset = self.offsets[self.next]
            first, last = self._span(offset)
            if min(last, self.length) > end and not ended:
                return
            if max(first, 0) < start:
                raise AssertionError("separation input dropped too early")
            # the chunk as apply_model cuts it, on a tensor that holds all it reads
            chunk = TensorChunk(buffer[None], offset - start, self.segment)
            out = apply_model(self.model, chunk, shifts=0, split=False, progress=False)
            self._add(offset, out)
            self.next += 1

    def _add(self, offset: int, out: torch.Tensor) -> None:
        n = out.shape[-1]
        if self._out is None:
            self._out = torch.zeros(*out.shape[:-1], 0, device=out.device)
            self._from = 0
        grow = offset + n - (self._from + self._out.shape[-1])
        if grow > 0:
            self._out = torch.nn.functional.pad(self._out, (0, grow))
            self._sum = torch.nn.functional.pad(self._sum.to(out.device), (0, grow))
        at = offset - self._from
        weight = self.weight[:n].to(out.device)
        self._out[..., at:at + n] += weight * out
        self._sum[at:at + n] += weight

    def take(self, upto: int) -> torch.Tensor:
        """The finished output [from, upto), divided by its summed weights, and dropped."""
        n = upto - self._from
        out = self._out[..., :n] / self._sum[:n]
        self._out, self._sum = self._out[..., n:], self._sum[n:]
        self._from = upto
        return out


def mix_statistics(stream: Stream) -> tuple[torch.Tensor, torch.Tensor]:
    """Separator.separate's normalisation of a whole stream (read to its end): the mean and
    std of its mono downmix."""
    from ..separate import normalisation
    total = squares = 0.0
    count = 0
    for block in stream.blocks(STEP):
        ref = block.mean(0).double()
        total += float(ref.sum())
        squares += float(ref.pow(2).sum())
        count += ref.numel()
    return normalisation(total, squares, count)
