"""Where a stream's chunks go (`generate --stream`): a WAV stream on a pipe, and an output
folder whose wav files grow chunk by chunk."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import IO, TYPE_CHECKING

import soundfile as sf
import torch

from ..errors import UserError
from .output import STREAMING_MARK, check_replaceable

if TYPE_CHECKING:
    from .output import GenerationOutput
    from .streaming import StreamChunk, StreamLevels

# A stream's length is not known when its header goes out: the largest a RIFF header can
# say, which players read as "until the end of the input" (aplay, ffplay, libsndfile).
UNKNOWN_DATA_BYTES = 0xFFFFFFFF - 36


def wav_header(sample_rate: int, channels: int, data_bytes: int = UNKNOWN_DATA_BYTES) -> bytes:
    """The 44-byte header of a PCM16 WAV file with `data_bytes` of samples."""
    block = 2 * channels
    return (b"RIFF" + struct.pack("<I", min(0xFFFFFFFF, data_bytes + 36)) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate,
                                    sample_rate * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


def pcm16(wav: torch.Tensor) -> bytes:
    """[C, S] float in [-1, 1] -> interleaved little-endian 16-bit samples."""
    scaled = (wav.detach().cpu().float().clamp(-1.0, 1.0) * 32767.0).round()
    return scaled.to(torch.int16).T.contiguous().numpy().astype("<i2").tobytes()


class WavPipe:
    """PCM16 WAV of unknown length on a binary stream (standard output for a player), each
    chunk flushed as it is written so the player hears it at once."""

    def __init__(self, out: IO[bytes], sample_rate: int, channels: int):
        self.out = out
        self.out.write(wav_header(sample_rate, channels))
        self.out.flush()

    def write(self, wav: torch.Tensor) -> None:
        self.out.write(pcm16(wav))
        self.out.flush()


class StreamFolder:
    """An output folder written while a piece is generated: mix.wav and one wav per stem
    (32-bit float, as `GenerationOutput.save` writes them) grow chunk by chunk; stems.png and
    meta.json come at the end. Until then the folder holds a `.streaming` mark, so an
    interrupted stream's folder can be told from other files and replaced by the next run."""

    def __init__(self, folder: str | Path, stems: list[str], sample_rate: int, channels: int):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"{self.folder} is a file; give an output folder")
        check_replaceable(self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        (self.folder / STREAMING_MARK).touch()
        self.files = {name: sf.SoundFile(self.folder / f"{name}.wav", "w", sample_rate,
                                         channels, subtype="FLOAT", format="WAV")
                      for name in ["mix", *stems]}

    def write(self, chunk: StreamChunk) -> None:
        for name, wav in (("mix", chunk.mix), *chunk.stems.items()):
            self.files[name].write(wav.detach().cpu().float().numpy().T)

    def close(self) -> None:
        """Close the wav files (their headers then say how long they are)."""
        for f in self.files.values():
            f.close()

    def finish(self, output: GenerationOutput, levels: StreamLevels) -> Path:
        """Close the wav files and add stems.png and meta.json (the levels are the stream's,
        not `output`'s); the folder is then a complete generation."""
        from ..plots import stems_picture
        from .objects import lane_labels
        self.close()
        stems_picture(output.decoded, output.sample_rate, self.folder / "stems.png",
                      title=str(self.folder), labels=lane_labels(output.meta))
        meta = {**output.meta, **levels.meta(output.sample_rate), "levels": "stream"}
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        (self.folder / STREAMING_MARK).unlink()
        return self.folder

