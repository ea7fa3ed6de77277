"""Audio I/O and small DSP: load any file libsndfile reads, resample, channels, silence, mix.

Waveforms are float32 tensors laid out `[C, S]` (channels, samples).
Files are decoded by soundfile (libsndfile), block by block (stemcodec.decode; a long MP3 by
ffmpeg, which libsndfile decodes wrongly in blocks): torchaudio.load needs FFmpeg/torchcodec.
ffprobe, when installed, checks a decoded file for damage (stemcodec.damage).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .decode import AUDIO_EXTENSIONS as AUDIO_EXTENSIONS  # where callers have found them
from .decode import is_audio_path as is_audio_path
from .decode import read_blocks, scan, short
from .errors import AudioError
from .files import temporary_beside

logger = logging.getLogger(__name__)

SILENCE_DB = -60.0


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
    (stemcodec.damage). AudioError with a short reason when it cannot be used. The same
    decoding as prepare's block by block (stemcodec.decode), kept whole."""
    found = scan(path, keep=True)
    data = np.concatenate(list(read_blocks(found)))
    return Decoded(data, found.rate, found.format, found.warnings)


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


def audio_info(path: str | os.PathLike) -> tuple[int, int, float]:
    """(sample_rate, channels, seconds) of a file without decoding it; AudioError if unreadable."""
    try:
        info = sf.info(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"not readable as audio ({short(exc)})") from None
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
