"""Leakage: how much one stem copies another.

Both stems become compressed magnitude spectrograms (|STFT|^0.3, 30 Hz-6 kHz, ~12 Hz bins,
20 ms hops), centred twice: each frequency bin over time (what a stem always sounds like is
its timbre, not a copy) and then each frame over frequency (when a stem is loud is its rhythm,
which every part of a piece shares). The two patterns are compared by correlation over all
time-frequency cells, taking the best of a few frames' lag:

    leakage(a, b) = max_{|lag| <= 2 frames} corr(S_a[:, t], S_b[:, t + lag])

A stem and its copy share every note in time and pitch and score 1; a copy mixed under
another part of the same loudness still scores about 0.5-0.9. Independent lines of one piece,
on the same beats and in the same key, score under about 0.15 (drums against anything: under
0.1); parts that double each other (guitar and piano striking the same chords) land between,
as they should: they are partly copies. Symmetric; None when either stem is silent.
"""

from __future__ import annotations

import math

import torch

from ..audio import is_silent
from .spectra import stft_magnitude

MAX_LAG = 2


def _pattern(wav: torch.Tensor, rate: int) -> torch.Tensor:
    n_fft = 1 << max(9, round(math.log2(rate / 12)))  # ~12 Hz bins
    hop = max(1, rate // 50)
    mag = stft_magnitude(wav, n_fft, hop)  # [F, T]
    freqs = torch.arange(mag.shape[0]) * rate / n_fft
    band = mag[(freqs >= 30) & (freqs <= 6000)].pow(0.3)
    band = band - band.mean(dim=1, keepdim=True)  # timbre out
    return band - band.mean(dim=0, keepdim=True)  # rhythm out  [F', T]


def leakage(a: torch.Tensor, b: torch.Tensor, rate: int, max_lag: int = MAX_LAG) -> float | None:
    """Largest lagged correlation of the time-frequency patterns of `a` and `b` (`[C, S]`)."""
    if is_silent(a) or is_silent(b):
        return None
    pa, pb = _pattern(a, rate), _pattern(b, rate)
    n = min(pa.shape[1], pb.shape[1])
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x = pa[:, max(0, lag): n + min(0, lag)]
        y = pb[:, max(0, -lag): n - max(0, lag)]
        m = min(x.shape[1], y.shape[1])
        x, y = x[:, :m].flatten(), y[:, :m].flatten()
        denom = (x.norm() * y.norm()).clamp_min(1e-12)
        best = max(best, float(x @ y / denom))
    return best
