"""What the instrument classifier is trained to hear through: gain changes, a room, Opus at
6 kbps and (optionally) a codec's reconstructions; used by eval/train_classifier.py.

    random_gain(x)       a level in [-24, +6] dB per row and a ramp of up to +-6 dB across it
    reverb(x, rate)      convolution with exponentially decaying noise (RT60 0.2-1.5 s),
                         mixed with the dry signal (wet share 0.1-0.5): one room per call
    RoundTrips.get(...)  a whole stem through Opus (stemcodec.metrics.opus) or a codec and back,
                         at the classifier's rate, cached on disk (a round trip is slow)

The classifier's log-mel is gain-normalised per second (metrics/classifier.py), so a constant
gain alone changes its input only where the 50 dB floor sits; the ramp (a crescendo, a fade
inside the second) and the gain's meeting with the codecs' noise are what it learns from.
Everything keeps the shape it is given and never changes a caller's tensor.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from stemcodec.audio import load_audio, resample


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def random_gain(x: torch.Tensor, generator: torch.Generator, low_db: float = -24.0,
                high_db: float = 6.0, ramp_db: float = 6.0) -> torch.Tensor:
    """`x [..., S]` scaled by a gain drawn per row (every index of the leading axes) from
    [low_db, high_db] at the start, moving linearly by up to +-ramp_db to the end."""
    rows = x.reshape(-1, x.shape[-1])  # [R, S]
    start = _uniform(rows.shape[0], low_db, high_db, generator)[:, None]  # [R, 1]
    ramp = _uniform(rows.shape[0], -ramp_db, ramp_db, generator)[:, None]
    t = torch.linspace(0.0, 1.0, rows.shape[-1])[None]  # [1, S]
    gains = 10 ** ((start + ramp * t) / 20)  # [R, S]
    return (rows * gains).reshape(x.shape)


def decaying_noise(rate: int, rt60: float, generator: torch.Generator) -> torch.Tensor:
    """An impulse response `[L]` of unit energy: white noise falling 60 dB in `rt60` seconds
    (L = rt60 * rate), its first sample the direct sound."""
    length = max(1, int(rt60 * rate))
    t = torch.arange(length) / rate
    ir = torch.randn(length, generator=generator) * 10 ** (-3.0 * t / rt60)
    ir[0] = 1.0
    return ir / ir.norm()


def convolve(x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """`x [..., S]` convolved with `ir [L]` (FFT), cut to S samples."""
    n = x.shape[-1] + ir.shape[-1] - 1
    size = 1 << (n - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(x.float(), size) * torch.fft.rfft(ir.float(), size), size)
    return y[..., : x.shape[-1]]


def reverb(x: torch.Tensor, rate: int, generator: torch.Generator,
           rt60: tuple[float, float] = (0.2, 1.5),
           wet: tuple[float, float] = (0.1, 0.5)) -> torch.Tensor:
    """`x [..., S]` in one room: (1 - w) * x + w * (x conv decaying noise), RT60 and w drawn
    from their ranges."""
    time = float(_uniform(1, *rt60, generator))
    share = float(_uniform(1, *wet, generator))
    return (1 - share) * x + share * convolve(x, decaying_noise(rate, time, generator))


def _fingerprint(codec) -> str:
    """What tells a codec's reconstructions apart: its id (the encoder and codebooks) and a
    sum over every weight (the decoder too, which the id leaves out)."""
    total = sum(float(p.detach().double().sum()) for p in codec.model.parameters())
    return f"{codec.codec_id}-{total:.9e}"


class RoundTrips:
    """Whole stems through Opus or a codec and back, mono at `rate`, cached in `cache` (None:
    no cache, every call codes again). A cached file is named by a hash of the stem's path, size
    and modification time and of the coder, so an edited stem or another codec is redone."""

    def __init__(self, rate: int, cache: Path | None = None, opus_kbps: float = 6.0,
                 codec=None):
        self.rate, self.cache, self.opus_kbps, self.codec = rate, cache, opus_kbps, codec
        self._coder_id = {"opus": f"opus-{opus_kbps:g}kbps"}
        if codec is not None:
            self._coder_id["codec"] = _fingerprint(codec)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._coder_id)

    def _key(self, kind: str, path: Path) -> str:
        stat = os.stat(path)
        text = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self._coder_id[kind]}|{self.rate}"
        return f"{kind}-{hashlib.sha1(text.encode()).hexdigest()[:20]}"

    def _compute(self, kind: str, path: Path) -> torch.Tensor:
        if kind == "opus":
            from stemcodec.metrics.opus import opus_roundtrip
            wav, rate = load_audio(path, channels=1)
            out = opus_roundtrip(wav, rate, self.opus_kbps)
        else:
            from stemcodec.evaluation.codec_quality import roundtrip
            rate = self.codec.sample_rate
            wav, _ = load_audio(path, rate, self.codec.channels)
            with torch.inference_mode():
                out = roundtrip(self.codec, wav).mean(dim=0, keepdim=True)
        return resample(out, rate, self.rate).clamp(-1.0, 1.0)  # [1, S]

    def get(self, kind: str, path: Path) -> torch.Tensor:
        """The round trip `kind` ("opus", or "codec" when one was given) of the stem at
        `path`: `[1, S]` float32 at `rate`."""
        file = self.cache / f"{self._key(kind, path)}.flac" if self.cache is not None else None
        if file is not None and file.is_file():
            data, _ = sf.read(file, dtype="float32", always_2d=True)
            out = torch.from_numpy(np.ascontiguousarray(data.T))
        else:
            out = self._compute(kind, path)
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                tmp = file.with_name(f".{file.name}.tmp")
                sf.write(tmp, out.numpy().T, self.rate, format="FLAC", subtype="PCM_16")
                tmp.replace(file)  # never a half-written file under the final name
        return out
