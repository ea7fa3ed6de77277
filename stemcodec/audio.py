"""Audio I/O and small DSP: load any file libsndfile reads, resample, channels, silence, mix.

Waveforms are float32 tensors laid out `[C, S]` (channels, samples).
Files are decoded by soundfile (libsndfile) only: torchaudio.load needs FFmpeg/torchcodec.
ffprobe, when installed, only checks a decoded file for damage (stemcodec.damage).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .damage import check_decoded
from .errors import AudioError
from .files import temporary_beside

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
SILENCE_DB = -60.0


def is_audio_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


@dataclass
class Decoded:
    """A file as decoded: samples `[S, C]` (unreadable stretches filled with silence where
    the decoders locate them), its rate and format, and what the user should hear about."""

    data: np.ndarray
    rate: int
    format: str
    warnings: list[str] = field(default_factory=list)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    channels: int | None = None,
    min_samples: int = 1,
) -> tuple[torch.Tensor, int]:
    """Read an audio file as float32 `[C, S]`, optionally resampled and remixed.

    Raises AudioError with a short reason (the caller names the file) when the file is
    empty, not audio, truncated, holds NaN/inf samples, or is shorter than `min_samples`;
    a stretch that could not be decoded is logged as a warning.
    """
    decoded = read_file(path)
    for text in decoded.warnings:
        logger.warning("warning %s: %s", path, text)
    return conform(decoded, sample_rate, channels, min_samples)


def read_file(path: str | os.PathLike) -> Decoded:
    """Decode a whole file as it is (its rate and channels), checked for damage
    (stemcodec.damage). AudioError with a short reason when it cannot be used."""
    path = Path(path)
    if not is_audio_path(path):
        raise AudioError(f"unsupported extension '{path.suffix or '(none)'}' "
                         f"(expected one of {', '.join(AUDIO_EXTENSIONS)})")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(f"cannot read file ({exc.strerror})") from None
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError("permission denied")
    # bytes: a name that is not UTF-8 reaches libsndfile as the bytes it has on disk
    name = os.fsencode(path)
    try:
        with _decoder_notes() as notes:
            info = sf.info(name)
            # whole, not in blocks: libsndfile 1.2's Vorbis reader, asked for blocks of 2048
            # frames or more, makes up a lost page's frames at the end of the file
            data, rate = sf.read(name, dtype="float32", always_2d=True)
    except PermissionError:
        raise AudioError("permission denied") from None
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise AudioError(_failure(name, _reason(exc, notes))) from None
    if data.shape[0] == 0:
        raise AudioError("no samples (header only or truncated)")
    if not np.isfinite(data).all():
        raise AudioError("contains NaN or infinite samples")
    verdict = check_decoded(path, info.format, rate, info.frames, data.shape[0])
    return Decoded(_filled(data, verdict.fill), rate, info.format, verdict.warnings)


def conform(decoded: Decoded, sample_rate: int | None = None, channels: int | None = None,
            min_samples: int = 1) -> tuple[torch.Tensor, int]:
    """`[C, S]` float32 at `sample_rate` with `channels` (None: as decoded)."""
    wav = torch.from_numpy(np.ascontiguousarray(decoded.data.T))
    rate = decoded.rate
    if channels is not None:
        wav = to_channels(wav, channels)
    if sample_rate is not None and sample_rate != rate:
        wav = resample(wav, rate, sample_rate)
        rate = sample_rate
    if wav.shape[-1] < min_samples:
        raise AudioError(
            f"too short: {wav.shape[-1] / rate:.4f} s, needs at least {min_samples / rate:.4f} s"
        )
    return wav, rate


@contextlib.contextmanager
def _decoder_notes() -> Iterator[list[str]]:
    """Catch what the decoders under libsndfile write straight to file descriptor 2, past
    Python (libmpg123's `Note: Trying to resync...`): a run prints one line per file, and a
    failure can name the decoder's own reason. Yields the lines, filled on exit."""
    notes: list[str] = []
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to catch (a daemon): nothing will be printed anyway
        yield notes
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield notes
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            notes += caught.read().decode("utf-8", "replace").splitlines()


def _reason(exc: Exception, notes: list[str]) -> str:
    """The decoder's own error when it printed one, else libsndfile's, without the
    `Error opening b'...': ` that repeats the name."""
    for line in reversed(notes):
        if "error: " in line:
            return line.split("error: ", 1)[1].split(" - ")[0].strip()[:100]
    text = getattr(exc, "error_string", None) or _short(exc)
    if "does not exist or is not a regular file" in text:
        return "format not recognised"  # what libsndfile says of an MP3 it cannot parse
    text = text.removeprefix("Error : ").strip().rstrip(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _failure(name: bytes, reason: str) -> str:
    """Why a file does not decode; where, when the decoder fails partway (a FLAC or MP3 cut
    off or damaged): read again in small blocks up to the failing one."""
    try:
        with _decoder_notes():
            handle = sf.SoundFile(name)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError):
        return f"not readable as audio ({reason})"
    with handle, _decoder_notes():
        done = 0
        try:
            while len(block := handle.read(1024, dtype="float32")):
                done += len(block)
        except (sf.LibsndfileError, RuntimeError, ValueError, OSError):
            pass
        total, rate = handle.frames, handle.samplerate
    if done == 0:
        return f"not readable as audio ({reason})"
    return (f"corrupt or truncated: decoding fails at {done / rate:.1f} s of "
            f"{total / rate:.1f} s ({reason})")


def _filled(data: np.ndarray, fill: list[tuple[int, int]]) -> np.ndarray:
    """`data` with `frames` of silence inserted before each index of `fill` (ascending)."""
    if not fill:
        return data
    parts, start = [], 0
    for at, frames in fill:
        at = min(at, data.shape[0])
        parts += [data[start:at], np.zeros((frames, data.shape[1]), data.dtype)]
        start = at
    parts.append(data[start:])
    return np.concatenate(parts)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def audio_info(path: str | os.PathLike) -> tuple[int, int, float]:
    """(sample_rate, channels, seconds) of a file without decoding it; AudioError if unreadable."""
    try:
        info = sf.info(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"not readable as audio ({_short(exc)})") from None
    return int(info.samplerate), int(info.channels), float(info.duration)


def resample(wav: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    if orig_rate == new_rate:
        return wav
    return AF.resample(wav, orig_rate, new_rate)


def to_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert `[C, S]` to `channels` (1 or 2): average down, duplicate up.

    More than two channels (5.1 and the like) are averaged to mono first, then duplicated
    for stereo: a neutral downmix that never clips.
    """
    have = wav.shape[0]
    if have == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=0, keepdim=True)
    if channels == 2:
        mono = wav if have == 1 else wav.mean(dim=0, keepdim=True)
        return mono.expand(2, -1).clone()
    raise ValueError(f"unsupported channel count {channels}")


def rms_db(wav: torch.Tensor) -> float:
    """Root-mean-square level in dBFS (-inf-safe: floor at -200 dB)."""
    rms = wav.float().pow(2).mean().sqrt().item()
    return 20.0 * float(np.log10(max(rms, 1e-10)))


def is_silent(wav: torch.Tensor, threshold_db: float = SILENCE_DB) -> bool:
    """True when the whole signal is below `threshold_db` RMS."""
    return wav.numel() == 0 or rms_db(wav) < threshold_db


def frame_rms_db(wav: torch.Tensor, frame: int) -> torch.Tensor:
    """Per-frame RMS in dB of a `[C, S]` signal, frames of `frame` samples (last one padded)."""
    mono = wav.mean(dim=0)
    pad = (-mono.shape[-1]) % frame
    mono = torch.nn.functional.pad(mono, (0, pad))
    rms = mono.view(-1, frame).pow(2).mean(dim=1).sqrt()
    return 20.0 * torch.log10(rms.clamp_min(1e-10))


def mix(stems: list[torch.Tensor], headroom_db: float = -1.0) -> tuple[torch.Tensor, float]:
    """Sum stems `[C, S]` (padded to the longest) and scale the whole so the peak stays under
    `headroom_db`. Returns (mix, gain); the gain is 1.0 when nothing needed scaling."""
    if not stems:
        raise ValueError("nothing to mix")
    length = max(s.shape[-1] for s in stems)
    channels = max(s.shape[0] for s in stems)
    total = torch.zeros(channels, length)
    for stem in stems:
        total[:, : stem.shape[-1]] += to_channels(stem, channels)
    peak = total.abs().max().item()
    limit = 10 ** (headroom_db / 20)
    gain = 1.0 if peak <= limit else limit / peak
    return total * gain, gain


def balance(stems: list[torch.Tensor], target_db: float = -20.0,
            max_boost_db: float = 12.0) -> list[float]:
    """Gains that bring every non-silent stem to `target_db` RMS, so no generated stem drowns
    the others. Quiet stems are raised by at most `max_boost_db` (a near-silent stem stays
    quiet rather than turning its noise up); silent stems keep gain 1."""
    gains = []
    for stem in stems:
        if is_silent(stem):
            gains.append(1.0)
        else:
            gains.append(10 ** (min(target_db - rms_db(stem), max_boost_db) / 20))
    return gains


def save_audio(
    path: str | os.PathLike,
    wav: torch.Tensor,
    sample_rate: int,
    subtype: str | None = None,
) -> Path:
    """Write `[C, S]` atomically: a temporary file in the same folder, then rename.

    `subtype` defaults to 32-bit float for .wav (exact round trip) and the format's
    default otherwise.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = wav.detach().cpu().float().numpy().T
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"cannot write '{path.suffix}' files; use .wav, .flac, .ogg or .mp3")
    if subtype is None and fmt == "WAV":
        subtype = "FLOAT"
    fd, tmp = temporary_beside(path, suffix=f"{path.suffix}.tmp")
    os.close(fd)
    try:
        sf.write(tmp, data, sample_rate, format=fmt, subtype=subtype)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
