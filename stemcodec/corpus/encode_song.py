"""One song through the block pipeline (stemcodec.blocks) into its shards, whatever its length.

Every file is scanned first (stemcodec.decode: usable? how long? where are its holes?), so a
bad file is refused before any work and the shard's shape is known; then the song is read,
resampled, separated and encoded a block at a time, and the codes written into the shards
as they come. Nothing holds the whole song: see README "Memory" for the bound.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..audio import SILENCE_DB
from ..blocks.encode import BlockEncoder, ShardWriter
from ..blocks.resample import Resampled, resampled_length
from ..blocks.separate import Separated, mix_statistics
from ..blocks.spool import Spool
from ..blocks.streams import Channels, FileStream, Fit, Loudness, Stream
from ..decode import Found, scan
from ..errors import AudioError
from .walk import shown

Progress = Callable[[float, float], None]  # (seconds done, seconds in all)


@dataclass
class Encoded:
    """What the entry of an encoded song records, and what it cost."""

    frames: int
    seconds: float
    present: dict[str, bool]
    silent: dict[str, bool]
    notes: list[tuple[Path, str, str]] = field(default_factory=list)  # (file, flag, what)
    separate_time: float = 0.0
    separate_seconds: float = 0.0
    encode_time: float = 0.0
    encode_seconds: float = 0.0


class _Stems:
    """Stem files (a stem folder, or one file in solo mode), and the mix: its file, or the
    sum of the stems. Blocks `[K', C, n]` of the stems in slot order, `[1, C, n]` of the mix."""

    def __init__(self, kind: str, files: dict[str, Path], slots: list[str], codec,
                 with_mix: bool):
        found: dict[str, Found] = {}
        for role, path in files.items():
            if role == "mix":
                continue
            try:
                found[role] = scan(path)
            except AudioError as exc:
                if kind != "stems":  # the file is the song: the line names it already
                    raise
                raise AudioError(f"{shown(path.name)}: {exc}") from None
        if not found:
            raise AudioError(f"no stems for slots {','.join(slots)} in this folder")
        mix_found = None
        if with_mix and kind == "stems" and "mix" in files:
            try:
                mix_found = scan(files["mix"])
            except AudioError as exc:
                raise AudioError(f"mix: {exc}") from None
        self.files = [(files[role], f) for role, f in found.items()]
        self.files += [(files["mix"], mix_found)] if mix_found is not None else []
        self.streams = {role: _conformed(f, codec) for role, f in found.items()}
        self.loudness = {role: Loudness(s) for role, s in self.streams.items()}
        lengths = [s.length for s in self.streams.values()]
        self.mix_stream = _conformed(mix_found, codec) if mix_found is not None else None
        if self.mix_stream is not None:
            lengths.append(self.mix_stream.length)
        self.length = max(lengths)
        self.names = [n for n in slots if n in found]
        self.order = list(found)  # the files' order: the mix of the stems sums in it
        self.fitted = {role: Fit(s, self.length) for role, s in self.loudness.items()}
        self.mix = None
        if self.mix_stream is not None:
            self.mix = Fit(self.mix_stream, self.length)
        self.with_mix = with_mix
        self.kind = kind
        self.seconds_spent = 0.0  # no separation

    def read(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        blocks = {role: s.read(n) for role, s in self.fitted.items()}
        stems = torch.stack([blocks[name] for name in self.names])
        if not self.with_mix or self.kind == "single":
            return stems, None
        if self.mix is not None:
            return stems, self.mix.read(n)[None]
        return stems, sum(blocks[role] for role in self.order)[None]

    def silent(self) -> dict[str, bool]:
        return {role: s.silent(SILENCE_DB) for role, s in self.loudness.items()}

    def meters(self) -> list[tuple[Path, Found, FileStream]]:
        streams = [self.streams[role] for role in self.order]
        streams += [self.mix_stream] if self.mix_stream is not None else []
        return [(path, f, _file_of(s)) for (path, f), s in zip(self.files, streams)]


class _Separated:
    """A mix separated into stems (Demucs, block by block). Blocks as _Stems gives them."""

    def __init__(self, path: Path, slots: list[str], codec, separator, with_mix: bool):
        found = scan(path)
        self.files = [(path, found)]
        self.separator = separator
        self.input = _conformed(found, separator)  # at the separator's rate and channels
        sources = list(separator.sources)
        self.names = [n for n in slots if n in sources]
        self.index = [sources.index(n) for n in self.names]
        self.with_mix = with_mix
        separated_length = self.input.length
        self.length = resampled_length(separated_length, separator.sample_rate,
                                       codec.sample_rate)
        self.codec = codec
        self.separated_seconds = separated_length / separator.sample_rate
        self._squares = torch.zeros(len(self.names), dtype=torch.float64)
        self._count = 0
        self._out: Stream | None = None
        self._sep: Separated | None = None

    def start(self) -> None:
        """Measure the mix (Separator.separate's normalisation needs the whole), then set
        the separation going: decoding twice costs little beside Demucs."""
        found = self.files[0][1]
        mean, std = mix_statistics(_conformed(found, self.separator, meter=False))
        self._sep = Separated(self.separator, self.input, mean, std)
        resampled = Resampled(self._sep, self.codec.sample_rate)
        self._out = Channels(resampled, self.codec.channels)

    @property
    def seconds_spent(self) -> float:
        return self._sep.seconds_spent if self._sep is not None else 0.0

    def read(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._out is None:
            self.start()
        block = self._out.read(n)  # [N + 1, C, n]: the sources, then the mix
        stems = block[self.index]
        self._squares += stems.double().pow(2).sum(dim=(1, 2))
        self._count += stems[0].numel()
        return stems, (block[-1:] if self.with_mix else None)

    def silent(self) -> dict[str, bool]:
        out = {}
        for i, name in enumerate(self.names):
            rms = (float(self._squares[i]) / max(self._count, 1)) ** 0.5
            out[name] = self._count == 0 or 20 * math.log10(max(rms, 1e-10)) < SILENCE_DB
        return out

    def meters(self) -> list[tuple[Path, Found, FileStream]]:
        return [(self.files[0][0], self.files[0][1], _file_of(self.input))]


def _conformed(found: Found, target, meter: bool = True) -> Stream:
    """A file at `target`'s rate and channels (a codec or a separator), as audio.conform
    makes it: channels first, then the rate."""
    stream: Stream = FileStream(found, meter=meter)
    stream = Channels(stream, target.channels)
    return Resampled(stream, target.sample_rate)


def _file_of(stream: Stream) -> FileStream:
    while not isinstance(stream, FileStream):
        stream = stream.source  # type: ignore[attr-defined]
    return stream


def encode_song(kind: str, files: dict[str, Path], shard: Path, mix_shard: Path | None,
                codec, slots: list[str], separator: Callable[[], object] | None,
                progress: Progress | None = None) -> Encoded:
    """Encode one song into `shard` (codes [K, Q, T], a row per slot of `slots`, absent
    ones zero) and `mix_shard` (codes [1, Q, T]; None: no mix). `separator()` gives the
    Demucs separator for a mix (kind "mix"). AudioError for a file that cannot be used."""
    with_mix = mix_shard is not None
    if kind == "mix":
        assert separator is not None
        source: _Stems | _Separated = _Separated(files["mix"], slots, codec, separator(),
                                                 with_mix)
    else:
        source = _Stems(kind, files, slots, codec, with_mix)
    length = source.length
    if length < codec.hop_length:
        raise AudioError(f"too short: shorter than one codec frame "
                         f"({codec.hop_length / codec.sample_rate * 1000:.1f} ms)")
    frames = math.ceil(length / codec.hop_length)
    shape = (len(slots), codec.num_codebooks, frames)
    rows = [slots.index(n) for n in source.names]
    seconds = length / codec.sample_rate
    tell = progress or (lambda done, total: None)
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(ShardWriter(shard, shape, codec.cardinality))
        mix_writer = None
        if mix_shard is not None:
            mix_writer = stack.enter_context(
                ShardWriter(mix_shard, (1, *shape[1:]), codec.cardinality))
        blocks = stack.enter_context(_Blocks(source, length, codec, shard.parent))
        encoder = BlockEncoder(codec, length, blocks.volumes[0])
        # one stem is its own mix: its codes are written twice, not encoded twice
        mix_encoder = (BlockEncoder(codec, length, blocks.volumes[1])
                       if mix_writer is not None and kind != "single" else None)
        twin = mix_writer if kind == "single" else None

        def write(first: int, codes: torch.Tensor) -> None:
            for i, row in enumerate(rows):
                writer.write(row, first, codes[i].numpy())
            if twin is not None:
                twin.write(0, first, codes[0].numpy())

        done = 0
        for stems, mix in blocks:
            for first, codes in encoder.push(stems):
                write(first, codes)
            if mix_encoder is not None:
                for first, codes in mix_encoder.push(mix):
                    mix_writer.write(0, first, codes[0].numpy())
            done += stems.shape[-1]
            tell(done / codec.sample_rate, seconds)
        for first, codes in encoder.finish():
            write(first, codes)
        if mix_encoder is not None:
            for first, codes in mix_encoder.finish():
                mix_writer.write(0, first, codes[0].numpy())
        writer.commit()
        if mix_writer is not None:
            mix_writer.commit()
    silent = source.silent()
    notes = []
    for path, found, stream in source.meters():  # file by file: its holes, then its levels
        notes += [(path, "unreadable", text) for text in found.warnings]
        notes += [(path, flag, text) for flag, text in stream.meter.flags().items()]
    return Encoded(
        frames=frames, seconds=seconds,
        present={n: n in source.names for n in slots},
        silent={n: silent.get(n, False) for n in slots},
        notes=notes,
        separate_time=source.seconds_spent,
        separate_seconds=source.separated_seconds if isinstance(source, _Separated) else 0.0,
        encode_time=encoder.seconds_spent + (mix_encoder.seconds_spent if mix_encoder else 0.0),
        encode_seconds=seconds * (len(source.names) + (mix_encoder is not None)),
    )


class _Blocks:
    """The song's blocks, a codec chunk (`chunk_frames`) at a time. A codec that scales each
    item to unit RMS (encodec_48khz) needs the whole item's level first: the blocks are then
    parked on disk (blocks.spool) while it is measured, and read back."""

    def __init__(self, source: _Stems | _Separated, length: int, codec, folder: Path):
        self.source, self.length = source, length
        self.step = codec.chunk_frames * codec.hop_length
        self.spool: Spool | None = None
        self.volumes: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        if codec.unit_rms:
            self.spool = Spool(str(folder))
            squares: list[torch.Tensor | None] = [None, None]  # stems, mix
            for stems, mix in self._read():
                self.spool.write(stems, mix)
                for i, block in enumerate((stems, mix)):
                    if block is not None:  # as Codec.encode: channels averaged, squared
                        ss = block.mean(dim=1).double().pow(2).sum(dim=-1)
                        squares[i] = ss if squares[i] is None else squares[i] + ss
            self.volumes = tuple(  # type: ignore[assignment]
                None if ss is None else (ss / length).sqrt().float()[:, None, None]
                for ss in squares)

    def _read(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        done = 0
        while done < self.length:
            stems, mix = self.source.read(min(self.step, self.length - done))
            if not stems.shape[-1]:
                raise AudioError(f"gave {done} samples of the {self.length} it should")
            done += stems.shape[-1]
            yield stems, mix

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        return self.spool.blocks() if self.spool is not None else self._read()

    def __enter__(self) -> _Blocks:
        return self

    def __exit__(self, *exc) -> None:
        if self.spool is not None:
            self.spool.close()
