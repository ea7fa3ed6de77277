"""Streaming generation: audio chunks as the tokens are sampled (`StemGenerator.stream`).

    stream = g.stream(slots="vocals-free:4", duration=60.0, seed=0)
    for chunk in stream:          # StreamChunk: a block of every slot, and their mix
        play(chunk.mix)
    stream.output                 # the GenerationOutput that `generate` returns for this seed

Each frame goes into the codec's streaming decoder (`Codec.stream`) as soon as its last
codebook is drawn (the sampler's delay pattern finishes frame t at step t + Q - 1); a chunk
comes out when a block of frames, and the few frames the decoder looks ahead, are final. The
decoded audio is what `generate` decodes, to float rounding: `stream.output` equals
`generate(...)` for the same seed.

Levels. `generate` balances each stem over the whole piece and scales the mix to its peak:
neither is known while the piece is still being made. A stream's chunks are levelled as it
goes instead (`StreamLevels`): each stem gets the gain `balance` gives its first audible
chunk, kept from then on, and the mix's gain only ever goes down, when a chunk would peak
above -1 dBFS. `chunk.decoded` holds the model's own levels, equal to `output.decoded`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..audio import balance, is_silent
from .threads import using

if TYPE_CHECKING:
    from .generator import Plan, StemGenerator
    from .output import GenerationOutput

BLOCK_SECONDS = 0.5  # audio per chunk: time to first audio against decoding's overhead


@dataclass
class StreamChunk:
    """A block of a streamed piece.

    Attributes:
        start: the index of its first sample in the piece.
        mix: [channels, samples] the stems summed, at the stream's levels.
        stems: slot -> [channels, samples] at the stream's levels, adding up to `mix`
            (empty for a mix-mode model).
        decoded: slot -> [channels, samples] as the codec decoded it (the model's levels).
        sample_rate: of every tensor here.
    """

    start: int
    mix: torch.Tensor
    stems: dict[str, torch.Tensor]
    decoded: dict[str, torch.Tensor]
    sample_rate: int

    @property
    def end(self) -> int:
        return self.start + self.mix.shape[-1]


class StreamLevels:
    """The levels a stream plays at, decided chunk by chunk (see the module docstring): a
    stem's gain is fixed by its first audible chunk (silent until then: gain 1), the mix's
    gain goes down whenever a chunk would peak above `headroom_db`, and never up again."""

    def __init__(self, names: tuple[str, ...], mixed: bool, headroom_db: float = -1.0):
        self.mixed = mixed  # one stream of the whole mix: kept at its level, as generate does
        self.gains: dict[str, float | None] = {n: 1.0 if mixed else None for n in names}
        self.limit = 10 ** (headroom_db / 20)
        self.mix_gain = 1.0
        self.changes: list[tuple[int, float]] = []  # (first sample, mix gain) at each change

    def apply(self, decoded: dict[str, torch.Tensor],
              start: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(stems, mix) of one chunk of decoded stems [C, s] starting at sample `start`."""
        for slot, wav in decoded.items():
            if self.gains[slot] is None and not is_silent(wav):
                self.gains[slot] = balance([wav])[0]
        scaled = {slot: wav * (self.gains[slot] or 1.0) for slot, wav in decoded.items()}
        total = torch.stack(list(scaled.values())).sum(dim=0)
        peak = total.abs().max().item() if total.numel() else 0.0
        if peak * self.mix_gain > self.limit:
            self.mix_gain = self.limit / peak
            self.changes.append((start, self.mix_gain))
        stems = {} if self.mixed else {s: w * self.mix_gain for s, w in scaled.items()}
        return stems, total * self.mix_gain

    def meta(self, sample_rate: int) -> dict:
        """The levels as meta.json records them."""
        return {"gains": {s: (1.0 if g is None else g) for s, g in self.gains.items()},
                "mix_gains": [[round(start / sample_rate, 6), gain]
                              for start, gain in self.changes]}


class GenerationStream:
    """An iterator of `StreamChunk`s; `output` is the whole piece once it has run to the end
    (None before). Made by `StemGenerator.stream`.

    Attributes:
        sample_rate, channels, names: of every chunk (names: the slots, or "mix").
        levels: the StreamLevels the chunks were made at.
        timing: seconds, once it has run: first_audio_s (from the call of `stream` to the
            first chunk), sample_s, decode_s and wall_s (the time the consumer kept the
            stream waiting between chunks left out of them all but wall_s).
    """

    def __init__(self, generator: StemGenerator, plan: Plan, seed: int, progress: bool,
                 block: float | None, started: float):
        codec = plan.loaded.codec
        self.sample_rate, self.channels = codec.sample_rate, codec.channels
        self.names = plan.names
        self.block_frames = max(1, round((BLOCK_SECONDS if block is None else block)
                                         * codec.frame_rate))
        self.levels = StreamLevels(plan.names, plan.mixed)
        self.output: GenerationOutput | None = None
        self.timing: dict[str, float] = {}
        self._samples = 0  # samples handed out so far
        self._chunks = self._run(generator, plan, seed, progress, started)

    def __iter__(self) -> Iterator[StreamChunk]:
        return self

    def __next__(self) -> StreamChunk:
        return next(self._chunks)

    def close(self) -> None:
        """Stop generating (a stream left half way)."""
        self._chunks.close()

    def _run(self, generator: StemGenerator, plan: Plan, seed: int, progress: bool,
             started: float) -> Iterator[StreamChunk]:
        codec = plan.loaded.codec
        decoder = codec.stream(self.block_frames)
        frames: list[torch.Tensor] = []
        pieces: list[torch.Tensor] = []
        decode_s = waited_s = 0.0
        first_audio = None

        def decodes():  # one decoder call per sampled frame [1, K, Q], then the flush
            for frame in generator._frames(plan, [seed], progress):
                frames.append(frame)
                yield lambda frame=frame: decoder.push(frame[0, :, :, None])
            yield decoder.flush

        with using(plan.threads):
            for decode in decodes():
                t = time.perf_counter()
                wav = decode().cpu()  # [K, C, s]
                decode_s += time.perf_counter() - t
                if wav.shape[-1]:
                    first_audio = first_audio or time.perf_counter() - started
                    t = time.perf_counter()
                    yield self._chunk(wav, pieces)
                    waited_s += time.perf_counter() - t
        wall = time.perf_counter() - started
        codes = torch.stack(frames, dim=-1)  # [1, K, Q, T]
        waves = torch.cat(pieces, dim=-1)[None]  # [1, K, C, S]
        self.timing = {"first_audio_s": first_audio or wall, "decode_s": decode_s,
                       "sample_s": wall - decode_s - waited_s, "wall_s": wall}
        timing = {"sample_s": self.timing["sample_s"], "decode_s": decode_s,
                  "first_audio_s": self.timing["first_audio_s"]}
        self.output = generator._outputs(plan, [seed], codes, waves, timing)[0]

    def _chunk(self, wav: torch.Tensor, pieces: list[torch.Tensor]) -> StreamChunk:
        start, self._samples = self._samples, self._samples + wav.shape[-1]
        pieces.append(wav)
        decoded = {slot: wav[k] for k, slot in enumerate(self.names)}
        stems, total = self.levels.apply(decoded, start)
        return StreamChunk(start, total, stems, decoded, self.sample_rate)
