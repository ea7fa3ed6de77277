"""Leakage: how much one stem copies another.

A copy shares a stem's fine structure: the same harmonic peaks, at the same pitches, moving
at the same moments. Parts of one piece that merely play on the same beats or in the same
register (a bass line and a kick drum, both low and both struck on every beat) share only
coarse structure: loudness over time and a smooth spectral shape. So each stem becomes a
pattern that keeps the first and throws the second away:

1. a compressed magnitude spectrogram, |STFT|^0.3 (~12 Hz bins, 20 ms hops);
2. its spectral envelope out: each frame minus its moving average over ~300 Hz of frequency
   (computed on the whole spectrum, then cut to 30 Hz-6 kHz). What is left is the peaks and
   valleys of the harmonics; a drum's smooth, noisy spectrum leaves little, and the frame's
   overall loudness (its rhythm, which every part of a piece shares) goes with it;
3. centred per frequency bin over time (what a stem always sounds like is its timbre, not a
   copy), then per frame over frequency.

The two patterns are compared by correlation over all time-frequency cells, taking the best
of a few frames' lag:

    leakage(a, b) = max_{|lag| <= 2 frames} corr(P_a[:, t], P_b[:, t + lag])

Typical values (12-s FluidSynth renders at 24 kHz): a stem and its copy score 1; the piano's
melody mixed at 0.7 under a bass line about 0.6; the same melody on violin or flute as on
piano 0.5-0.6, an octave apart about 0.4 (every other harmonic shared), two octaves apart
about 0.15; parts that double each other (guitar and strings on the same chords) 0.4-0.5.
Independent lines score about 0: melody against bass line, chords against bass line, pitched
parts against drums all under 0.05, bass line against kick and snare on its beats about 0.07.
Drums share little fine structure even with a copy of themselves mixed under a bass line
(about 0.35). Symmetric; None when either stem is silent, shorter than about a third of a
second (too few frames to correlate), or has almost nothing between 30 Hz and 6 kHz.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..audio import is_silent
from .spectra import stft_magnitude

MAX_LAG = 2
MIN_FRAMES = 16  # ~0.3 s at 50 frames/s: fewer cells would make the correlation noise
ENVELOPE_HZ = 300.0  # width of the moving average taken as a frame's spectral envelope


def _pattern(wav: torch.Tensor, rate: int) -> torch.Tensor:
    n_fft = 1 << max(9, round(math.log2(rate / 12)))  # ~12 Hz bins
    hop = max(1, rate // 50)
    spec = stft_magnitude(wav, n_fft, hop).pow(0.3)  # [F, T]
    width = 2 * max(1, round(ENVELOPE_HZ * n_fft / rate / 2)) + 1  # odd, in bins
    frames = F.pad(spec.T[:, None], (width // 2, width // 2), mode="replicate")  # [T, 1, F+]
    envelope = F.avg_pool1d(frames, width, stride=1)[:, 0].T  # [F, T]
    freqs = torch.arange(spec.shape[0]) * rate / n_fft
    band = (spec - envelope)[(freqs >= 30) & (freqs <= 6000)]  # envelope (and loudness) out
    band = band - band.mean(dim=1, keepdim=True)  # timbre out
    return band - band.mean(dim=0, keepdim=True)  # [F', T]


def leakage(a: torch.Tensor, b: torch.Tensor, rate: int, max_lag: int = MAX_LAG) -> float | None:
    """Largest lagged correlation of the time-frequency patterns of `a` and `b` (`[C, S]`)."""
    if is_silent(a) or is_silent(b):
        return None
    length = min(a.shape[-1], b.shape[-1])  # one span for both, before centring
    pa, pb = _pattern(a[..., :length], rate), _pattern(b[..., :length], rate)
    n = min(pa.shape[1], pb.shape[1])
    if n < MIN_FRAMES + 2 * max_lag or min(pa.norm(), pb.norm()) < 1e-6 * math.sqrt(pa.numel()):
        return None
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x = pa[:, max(0, lag): n + min(0, lag)]
        y = pb[:, max(0, -lag): n - max(0, lag)]
        m = min(x.shape[1], y.shape[1])
        x, y = x[:, :m].flatten(), y[:, :m].flatten()
        denom = (x.norm() * y.norm()).clamp_min(1e-12)
        best = max(best, float(x @ y / denom))
    return best
