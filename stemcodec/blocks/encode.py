"""The codec on a stream, and the shard written as its codes come.

`BlockEncoder` cuts the audio into the chunks Codec.encode cuts (`chunk_frames`, with
`context_frames` of left context, and right context for a non-causal encoder) and encodes
each as soon as its right context has arrived: the same slices of the same samples, so the
same codes as encoding the whole at once. `ShardWriter` writes codes [K, Q, T] into an .npy
whose shape is known up front, in place, so the codes of a long song are never all held.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..files import temporary_beside


class BlockEncoder:
    """Encode `[B, C, samples]` pushed in blocks; yields (first frame, codes [B, Q, t])."""

    def __init__(self, codec, samples: int, volume: torch.Tensor | None = None):
        if codec.unit_rms and volume is None:
            raise ValueError(f"{codec.name} scales each item to unit RMS: give its volume")
        self.codec = codec
        self.hop = codec.hop_length
        self.samples = samples
        self.volume = None if volume is None else volume.to(codec.device)
        total = math.ceil(samples / self.hop)
        right = 0 if codec.causal else codec.context_frames
        self.spans = []  # (first, last, left, right) frames, as Codec._chunks gives them
        for first in range(0, total, codec.chunk_frames):
            last = min(first + codec.chunk_frames, total)
            self.spans.append((first, last, min(codec.context_frames, first),
                               min(right, total - last)))
        self.seconds_spent = 0.0  # in the encoder: the encoding's own speed
        self._buffer: torch.Tensor | None = None  # samples from `_start` on
        self._start = 0
        self._next = 0

    def push(self, block: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Add the next samples `[B, C, n]`; yields the chunks they complete."""
        block = block.to(self.codec.device, torch.float32)
        if self.volume is not None:  # as Codec.encode scales the whole item
            block = block / (self.volume + 1e-8)
        self._buffer = block if self._buffer is None else torch.cat([self._buffer, block], -1)
        yield from self._ready()

    def finish(self) -> Iterator[tuple[int, torch.Tensor]]:
        """The last chunks, once all `samples` were pushed."""
        end = self._start + (0 if self._buffer is None else self._buffer.shape[-1])
        if end != self.samples:
            raise ValueError(f"pushed {end} samples of {self.samples}")
        yield from self._ready()

    def _ready(self) -> Iterator[tuple[int, torch.Tensor]]:
        end = self._start + self._buffer.shape[-1]
        while self._next < len(self.spans):
            first, last, left, right = self.spans[self._next]
            stop = min((last + right) * self.hop, self.samples)  # Codec.encode's slice end
            if end < stop:
                return
            begin = (first - left) * self.hop
            x = self._buffer[..., begin - self._start: stop - self._start]
            t0 = time.perf_counter()
            codes = self.codec.encode_chunk(x, left, last - first)
            self.seconds_spent += time.perf_counter() - t0
            self._next += 1
            if self._next < len(self.spans):  # drop what no later chunk reads
                nfirst, _, nleft, _ = self.spans[self._next]
                keep = (nfirst - nleft) * self.hop
                self._buffer = self._buffer[..., keep - self._start:]
                self._start = keep
            yield first, codes.cpu()


class ShardWriter:
    """codes [K, Q, T] as an .npy (int16, or int32 for codebooks over 32768 entries), written
    in place under a temporary name; rows never written stay zeros (absent slots). `commit()`
    renames it into place; leaving the `with` without it removes it."""

    def __init__(self, path: Path, shape: tuple[int, int, int], cardinality: int):
        self.path, self.shape = path, shape
        self.dtype = np.dtype(np.int16 if cardinality <= 32768 else np.int32)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd, self._tmp = temporary_beside(path)
        with os.fdopen(os.dup(self._fd), "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False, "shape": shape})
            self._offset = handle.tell()
        os.ftruncate(self._fd, self._offset + math.prod(shape) * self.dtype.itemsize)

    def write(self, row: int, first: int, codes: np.ndarray) -> None:
        """codes [Q, t] of row `row` (a slot) at frames [first, first + t)."""
        _, q_count, total = self.shape
        data = np.ascontiguousarray(codes, dtype=self.dtype)
        for q in range(q_count):
            at = self._offset + ((row * q_count + q) * total + first) * self.dtype.itemsize
            os.pwrite(self._fd, data[q].tobytes(), at)

    def commit(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self._tmp, self.path)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            Path(self._tmp).unlink(missing_ok=True)
