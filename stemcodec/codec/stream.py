"""Decoding codes as they arrive (`Codec.stream()`): what streaming generation plays.

    stream = codec.stream(block_frames=19)
    for codes in frames:            # codes [B, Q, t], any t (one frame at a time is fine)
        play(stream.push(codes))    # wav [B, C, s]: the frames that are final so far
    play(stream.flush())            # the rest

Pushes and flush together are `codec.decode` of the whole sequence, to float rounding, however
the codes were cut: audio comes out in blocks on a fixed grid of `block_frames` (whatever the
pushes were), a block once the frames it needs have arrived. Two ways, by decoder:

- Windowed (the iSTFT decoder, a SEANet decoder without LSTM): each block is decoded exactly
  as `decode` decodes a chunk (`Codec.decode_chunk`): `context_frames` of left context and
  `decode_lookahead` frames of right context, the accumulated phase handed on. These decoders
  see a bounded past (shorter than the context), so any block grid gives `decode`'s audio; a
  grid of `chunk_frames` gives it bit for bit.
- Recurrent (EnCodec's causal SEANet decoder with its LSTM: the bundled mini codec, official
  24 kHz): the LSTM sees the whole past, so a block re-read with left context would not match
  `decode`. The stream follows `decode`'s chunks instead and carries the LSTM state within a
  chunk (each chunk's LSTM starting afresh on its left context, as in `decode`); the
  convolutions around the LSTM see a few frames, re-read at each block's start.

A recurrent decoder that is not causal (EnCodec 48 kHz) has no early audio to give: its blocks
are `decode`'s chunks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .wrapper import Codec

# EnCodec's convolutions pad with reflections, and treat an input shorter than their padding
# (a block of a few frames at the very start) otherwise than the whole sequence's: no block is
# shorter than this (107 ms at 75 frames/s).
MIN_BLOCK_FRAMES = 8


class DecodeStream:
    """Codes [B, Q, t] in, audio [B, C, t * hop] out, as soon as it is final (see the module
    docstring). Made by `Codec.stream(block_frames)`; B and Q are fixed by the first push."""

    def __init__(self, codec: Codec, block_frames: int):
        self.codec = codec
        self.engine: _Windowed | _Recurrent
        if _recurrent(codec.model.decoder) and codec.decode_lookahead == 0:
            self.engine = _Recurrent(codec)
            self.chunk = codec.chunk_frames  # the LSTM restarts where decode's chunks do
        else:
            self.engine = _Windowed(codec)
            if _recurrent(codec.model.decoder):  # not causal: only whole chunks are exact
                block_frames = codec.chunk_frames
            self.chunk = max(MIN_BLOCK_FRAMES, int(block_frames))
        self.block = min(self.chunk, max(MIN_BLOCK_FRAMES, int(block_frames)))
        self.received = 0  # frames pushed
        self.decoded = 0  # frames whose audio has been returned
        self._codes: torch.Tensor | None = None  # frames [_base, received) still needed
        self._base = 0
        self._flushed = False

    @property
    def lookahead(self) -> int:
        """Frames after a block that must have arrived before it is decoded."""
        return self.codec.decode_lookahead

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Add codes [B, Q, t]; returns the audio [B, C, s] of the blocks now complete (s may
        be 0), a multiple of hop_length samples."""
        if self._flushed:
            raise ValueError("this stream was flushed; make a new one with Codec.stream()")
        codes = self.codec.check_codes(codes)
        if self._codes is None:
            self._codes = codes
        elif codes.shape[:2] != self._codes.shape[:2]:
            raise ValueError(f"codes [B, Q] = {list(codes.shape[:2])}, but this stream "
                             f"decodes {list(self._codes.shape[:2])}")
        else:
            self._codes = torch.cat([self._codes, codes], dim=-1)
        self.received += codes.shape[-1]
        return self._emit(final=False)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """The audio of every frame not returned yet (the last ones without right context,
        as `decode` ends); the stream takes no more codes after it."""
        out = self._emit(final=True)
        self._flushed = True
        return out

    def _emit(self, final: bool) -> torch.Tensor:
        codec = self.codec
        rows = 0 if self._codes is None else self._codes.shape[0]
        pieces = [torch.zeros(rows, codec.channels, 0, device=codec.device)]
        while True:
            a = self.decoded
            first = a - a % self.chunk  # the decode chunk the next block lies in
            b = min(a + self.block, first + self.chunk)
            if final:
                b = min(b, self.received)
                if b <= a:
                    break
            elif b + self.lookahead > self.received:
                break
            right = min(self.lookahead, self.received - b)
            wav = self.engine.block(self._frames, a, b, right, first)
            pieces.append(wav * codec.REFERENCE_RMS if codec.unit_rms else wav)
            self.decoded = b
        keep = max(0, self.decoded - self.engine.history)  # the context later blocks read
        if self._codes is not None and keep > self._base:
            self._codes = self._codes[..., keep - self._base:]
            self._base = keep
        return torch.cat(pieces, dim=-1)

    def _frames(self, start: int, end: int) -> torch.Tensor:
        """Codes of the global frames [start, end)."""
        return self._codes[..., start - self._base: end - self._base]


class _Windowed:
    """Each block decoded as `Codec.decode` decodes a chunk, the running phase handed on."""

    def __init__(self, codec: Codec):
        self.codec = codec
        self.history = codec.context_frames
        self.before: torch.Tensor | None = None

    def block(self, frames, a: int, b: int, right: int, first: int) -> torch.Tensor:
        left = min(self.codec.context_frames, a)
        wav, self.before = self.codec.decode_chunk(frames(a - left, b + right), a, b, left,
                                                   self.before)
        return wav


class _Recurrent:
    """A causal SEANet decoder (convolutions, LSTM, upsampling convolutions) run block by
    block within each of `decode`'s chunks, its LSTM state carried from block to block."""

    def __init__(self, codec: Codec):
        self.codec = codec
        layers = list(codec.model.decoder.model)
        at = next(i for i, m in enumerate(layers) if _is_lstm(m))
        self.prefix = nn.Sequential(*layers[:at])  # frame rate
        self.lstm = layers[at]
        self.suffix = nn.Sequential(*layers[at + 1:])  # frame rate up to samples
        self.prefix_frames = _receptive_samples(self.prefix)  # hop 1 at the frame rate
        # +1: the suffix's last samples of a frame reach a little into the frame before
        self.suffix_frames = math.ceil(_receptive_samples(self.suffix) / codec.hop_length) + 1
        self.history = max(codec.context_frames, self.prefix_frames)
        self.first: int | None = None  # the decode chunk whose LSTM state is held
        self.start = 0  # where that chunk's window (its left context included) starts
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.tail: torch.Tensor | None = None  # LSTM outputs of the last frames, up to `done`
        self.done = 0

    def block(self, frames, a: int, b: int, right: int, first: int) -> torch.Tensor:
        if first != self.first:  # a new chunk: decode starts its LSTM afresh on its context
            self.first, self.start = first, first - min(self.codec.context_frames, first)
            self.state, self.tail, self.done = None, None, self.start
        # the context and the first block in one pass: a padding at the window's start
        # reflects the frames after it, as in decode's pass over the whole chunk
        self._advance(frames, b)
        since = max(self.start, a - self.suffix_frames)
        out = self.suffix(self.tail[..., since - (self.done - self.tail.shape[-1]):])
        self.tail = self.tail[..., -self.suffix_frames:]  # what the next block's suffix re-reads
        return out[..., out.shape[-1] - (b - a) * self.codec.hop_length:]

    def _advance(self, frames, end: int) -> None:
        """Run the LSTM over frames [done, end), keeping its state and its last outputs."""
        a = self.done
        since = max(self.start, a - self.prefix_frames)  # re-read what the convolutions see
        emb = self.codec.model.quantizer.decode(frames(since, end).transpose(0, 1))
        x = self.prefix(emb)[..., a - since:].permute(2, 0, 1)  # [t, B, D]
        y, self.state = self.lstm.lstm(x, self.state)
        if self.lstm.skip:
            y = y + x
        y = y.permute(1, 2, 0)  # [B, D, t]
        self.tail = y if self.tail is None else torch.cat([self.tail, y], dim=-1)
        self.done = end


def _is_lstm(module: nn.Module) -> bool:
    return isinstance(getattr(module, "lstm", None), nn.LSTM)


def _recurrent(decoder: nn.Module) -> bool:
    """EnCodec's SEANet decoder with its LSTM (an `SLSTM` in `decoder.model`)."""
    layers = getattr(decoder, "model", None)
    return isinstance(layers, nn.Sequential) and any(_is_lstm(m) for m in layers)


def _receptive_samples(layers: nn.Module) -> int:
    """How many past input samples, counted at the output's rate, an output sample of these
    causal layers depends on: an upper bound, from their convolutions in order."""
    reach = 0
    for m in layers.modules():
        if isinstance(m, nn.ConvTranspose1d):
            reach = reach * m.stride[0] + m.kernel_size[0] - 1
        elif isinstance(m, nn.Conv1d):
            reach += (m.kernel_size[0] - 1) * m.dilation[0]
    return reach
