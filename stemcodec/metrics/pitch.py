"""Does a codec keep the notes? Figures a listener would notice, where mel distances do not.

    tone_test               the share of test tones that come back at their pitch (3 %)
    tone_signal, tone_peak  sines and sawtooths at fixed pitches; the strongest spectral peak of
                            the reconstruction, and whether it lies within 3 % of the pitch
    buzz_prominence         the largest over rates (a decoder's upsampling rates, e.g. 600 Hz)
                            of the dB by which the spectrum at their multiples stands over its
                            neighbourhood (buzz_by_rate: each rate's figure)
    chroma_correlation      Pearson correlation of the constant-Q chroma of two signals
    cqt_distance            mean |dB difference| of constant-Q spectra (36 bins per octave from
                            32.7 Hz, C1, over 8 octaves), floored 80 dB under the reference's peak

Signals are `[C, S]` or `[S]` tensors at `rate`, scored on the mono downmix; an estimate is
cut or zero-padded to the reference's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import librosa
import numpy as np
import torch

from .spectra import mono

TONE_FREQUENCIES = (55.0, 82.0, 110.0, 147.0, 220.0, 330.0, 440.0, 659.0, 880.0, 1319.0)
TONE_KINDS = ("sine", "sawtooth")
CQT = {"fmin": 32.70, "n_bins": 288, "bins_per_octave": 36, "hop_length": 512}


def tone_signal(kind: str, frequency: float, seconds: float = 2.0, rate: int = 24000,
              amplitude: float = 0.3) -> torch.Tensor:
    """`[1, S]`: a sine, or a band-limited sawtooth (harmonics 1/n up to Nyquist), peak
    `amplitude`."""
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    if kind == "sine":
        wav = torch.sin(2 * math.pi * frequency * t)
    elif kind == "sawtooth":
        n = torch.arange(1, int(rate / 2 / frequency) + 1, dtype=torch.float64)
        wav = (torch.sin(2 * math.pi * frequency * t[:, None] * n) / n).sum(dim=1)
    else:
        raise ValueError(f"tone kind {kind!r}; valid: {', '.join(TONE_KINDS)}")
    return (amplitude * wav / wav.abs().max()).float()[None]


def tone_peak(wav: torch.Tensor, rate: int, skip_seconds: float = 0.25,
              lowest: float = 20.0) -> float:
    """Frequency (Hz) of the strongest peak of the magnitude spectrum above `lowest` (what is
    below is not heard as a pitch), onset and end left out (`skip_seconds` each side), Hann
    window, zero-padded to 2^18 points (0.09 Hz at 24 kHz), the peak refined by parabolic
    interpolation of the log magnitude."""
    x = mono(wav).double()
    skip = int(skip_seconds * rate)
    if x.shape[-1] > 4 * skip:
        x = x[skip:-skip]
    x = x - x.mean()
    n = max(1 << 18, 1 << math.ceil(math.log2(x.shape[-1])))
    spec = torch.fft.rfft(x * torch.hann_window(x.shape[-1], dtype=torch.float64), n=n).abs()
    spec[: int(lowest * n / rate) + 1] = 0.0
    k = int(spec.argmax())
    if 0 < k < spec.shape[0] - 1:
        a, b, c = (spec[k - 1: k + 2] + 1e-20).log().tolist()
        denominator = a - 2 * b + c
        k = k + (0.5 * (a - c) / denominator if denominator != 0 else 0.0)
    return float(k * rate / n)


def within(peak: float, frequency: float, tolerance: float = 0.03) -> bool:
    return abs(peak - frequency) <= tolerance * frequency


def buzz_by_rate(wav: torch.Tensor, rate: int, rates: Sequence[float],
                 max_frequency: float = 8000.0, n_fft: int = 16384,
                 neighbourhood_hz: float = 30.0) -> list[float]:
    """For each r in `rates`, the mean over its multiples k x r (up to `max_frequency`) of the
    dB by which the average power spectrum at k x r stands over its neighbourhood
    (+-`neighbourhood_hz`, the peak's 7 bins left out). Both sides use the same statistic, the
    largest of 3 neighbouring bins (k x r falls between bins), so a spectrum without a comb at
    a rate scores about 0 dB whatever its texture; a decoder's buzz stands out by tens of dB.
    The spectrum is computed once for all the rates."""
    x = mono(wav).double()
    if x.shape[-1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    frames = x.unfold(0, n_fft, n_fft // 2) * torch.hann_window(n_fft, dtype=torch.float64)
    power = torch.fft.rfft(frames, dim=-1).abs().square().mean(dim=0) + 1e-20  # [F]
    db = torch.nn.functional.max_pool1d((10 * power.log10())[None], 3, 1, 1)[0]
    resolution = rate / n_fft
    half = int(neighbourhood_hz / resolution)
    out = []
    for r in rates:
        per_rate, k = [], 1
        while k * r <= min(max_frequency, rate / 2 - neighbourhood_hz):
            centre = int(round(k * r / resolution))
            around = torch.cat([db[centre - half: centre - 3], db[centre + 4: centre + half + 1]])
            per_rate.append(float(db[centre]) - float(around.median()))
            k += 1
        out.append(float(np.mean(per_rate)) if per_rate else 0.0)
    return out


def buzz_prominence(wav: torch.Tensor, rate: int, rates: Sequence[float], **kwargs) -> float:
    """The buzz figure: the largest of `buzz_by_rate` (0 dB without rates)."""
    return max(buzz_by_rate(wav, rate, rates, **kwargs), default=0.0)


def _pair(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    ref, est = mono(reference), mono(estimate)
    est = est[: ref.shape[-1]] if est.shape[-1] >= ref.shape[-1] else \
        torch.nn.functional.pad(est, (0, ref.shape[-1] - est.shape[-1]))
    return ref.numpy().astype(np.float32), est.numpy().astype(np.float32)


def _cqt_db(x: np.ndarray, rate: int) -> np.ndarray:
    return librosa.amplitude_to_db(np.abs(librosa.cqt(x, sr=rate, **CQT)), ref=1.0, top_db=None)


def cqt_distance(reference: torch.Tensor, estimate: torch.Tensor, rate: int) -> float:
    """Mean absolute dB difference of the constant-Q spectra, both floored 80 dB under the
    reference's loudest bin (so inaudible detail does not count)."""
    ref, est = _pair(reference, estimate)
    a, b = _cqt_db(ref, rate), _cqt_db(est, rate)
    floor = a.max() - 80.0
    return float(np.abs(np.maximum(a, floor) - np.maximum(b, floor)).mean())


def chroma_correlation(reference: torch.Tensor, estimate: torch.Tensor, rate: int) -> float:
    """Pearson correlation of the constant-Q chroma `[12, frames]` of the two signals, over
    the frames where the reference sounds (within 60 dB of its loudest frame)."""
    ref, est = _pair(reference, estimate)
    kwargs = {"sr": rate, "hop_length": CQT["hop_length"], "fmin": CQT["fmin"],
              "n_octaves": 7, "bins_per_octave": 36}
    a = librosa.feature.chroma_cqt(y=ref, **kwargs)
    b = librosa.feature.chroma_cqt(y=est, **kwargs)
    energy = librosa.feature.rms(y=ref, hop_length=CQT["hop_length"])[0][: a.shape[1]]
    sounding = energy > energy.max() * 10 ** (-60 / 20)
    a, b = a[:, sounding].ravel(), b[:, sounding].ravel()
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def tone_test(roundtrip: Callable[[torch.Tensor], torch.Tensor], rate: int,
              frequencies: Sequence[float] = TONE_FREQUENCIES,
              kinds: Sequence[str] = TONE_KINDS, tolerance: float = 0.03,
              outputs: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Every test tone (`[1, S]`) through `roundtrip` (`[C, S] -> [C, S]`): the share whose
    strongest peak lies within `tolerance` of the pitch, the worst relative error, and the
    peak of each tone (`"sine 440": 439.8`). `outputs`, when given, receives each round trip
    by the same names (to be looked at: plots.tone_spectra_picture)."""
    peaks: dict[str, float] = {}
    for kind in kinds:
        for frequency in frequencies:
            out = roundtrip(tone_signal(kind, frequency, rate=rate))
            peaks[f"{kind} {frequency:g}"] = tone_peak(out, rate)
            if outputs is not None:
                outputs[f"{kind} {frequency:g}"] = out
    errors = [abs(peaks[f"{k} {f:g}"] - f) / f for k in kinds for f in frequencies]
    return {"at_pitch": sum(e <= tolerance for e in errors) / len(errors),
            "tones": len(errors), "worst_error": max(errors), "peaks": peaks}
