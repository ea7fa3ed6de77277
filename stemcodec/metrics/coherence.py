"""Cross-stem coherence: do the stems play together?

    onset agreement   drums against another stem: onsets picked from each stem's spectral-flux
                      envelope, matched one to one within `tolerance` (50 ms), F-measure
                      = 2 * matches / (onsets of a + onsets of b)
    chroma agreement  two harmonic stems: 12-bin chroma per second (STFT bins folded onto
                      pitch classes), cosine between the stems, averaged over the seconds
                      where both play

`set_coherence` scores a whole set of stems: drums against each other stem, every pair of
harmonic (non-drum) stems, and the largest leakage of any pair (see `leakage.py`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch

from .leakage import leakage
from .seconds import active_seconds, split_seconds
from .spectra import log_mel, stft_magnitude

FRAME_RATE = 100  # onset envelope frames per second


def onset_envelope(wav: torch.Tensor, rate: int) -> torch.Tensor:
    """Spectral flux `[T]` at 100 frames/s: the positive change of log-mel power summed over
    64 bands, floored 80 dB under the stem's peak so noise in the silences adds nothing."""
    hop = rate // FRAME_RATE
    mel = log_mel(wav, rate, n_fft=2048 if rate > 32000 else 1024, hop=hop, n_mels=64,
                  f_min=30.0)  # [M, T] natural log of power
    mel = mel.clamp_min(mel.max() - math.log(1e8))
    flux = (mel[:, 1:] - mel[:, :-1]).clamp_min(0).sum(dim=0)  # [T - 1]
    return torch.nn.functional.pad(flux, (1, 0))


def pick_onsets(envelope: torch.Tensor, delta: float = 0.1, width: int = 3, wait: int = 5,
                context: int = 10) -> torch.Tensor:
    """Onset times in seconds: frames that are the maximum within `width` frames on either side,
    stand `delta` (of the envelope's peak) above the mean of `context` frames around them, and
    come at least `wait` frames after the previous onset."""
    if envelope.numel() == 0 or envelope.max() <= 0:
        return torch.zeros(0)
    env = envelope / envelope.max()
    x = env[None, None]
    local_max = torch.nn.functional.max_pool1d(x, 2 * width + 1, 1, width)[0, 0]
    local_mean = torch.nn.functional.avg_pool1d(x, 2 * context + 1, 1, context,
                                                count_include_pad=False)[0, 0]
    candidates = ((env >= local_max) & (env >= local_mean + delta)).nonzero().flatten().tolist()
    picked: list[int] = []
    for frame in candidates:
        if not picked or frame - picked[-1] >= wait:
            picked.append(frame)
    return torch.tensor(picked, dtype=torch.float32) / FRAME_RATE


def onset_f_measure(a: torch.Tensor, b: torch.Tensor, tolerance: float = 0.05) -> float | None:
    """F-measure of two onset lists (seconds), each onset matched at most once, greedily in time
    order (as mir_eval's matching for well-separated onsets); None when both are empty."""
    if a.numel() + b.numel() == 0:
        return None
    matches, j = 0, 0
    b_sorted = sorted(b.tolist())
    for t in sorted(a.tolist()):
        while j < len(b_sorted) and b_sorted[j] < t - tolerance:
            j += 1
        if j < len(b_sorted) and abs(b_sorted[j] - t) <= tolerance:
            matches += 1
            j += 1
    return 2 * matches / (a.numel() + b.numel())


def onset_agreement(drums: torch.Tensor, other: torch.Tensor, rate: int,
                    tolerance: float = 0.05) -> float | None:
    """Onset F-measure between a drum stem and another stem (`[C, S]` at `rate`)."""
    return onset_f_measure(pick_onsets(onset_envelope(drums, rate)),
                           pick_onsets(onset_envelope(other, rate)), tolerance)


def chroma(wav: torch.Tensor, rate: int, seconds: float = 1.0, f_min: float = 55.0,
           f_max: float = 4000.0) -> torch.Tensor:
    """Chroma `[12, N]` per `seconds` (C = 0): STFT magnitudes between `f_min` and `f_max`
    (4096-point FFT at 24 kHz) added into the pitch class of their bin, summed per second."""
    n_fft = 1 << max(10, round(math.log2(rate / 6)))  # ~6 Hz bins
    hop = n_fft // 4
    mag = stft_magnitude(wav, n_fft, hop)  # [F, T]
    freqs = torch.arange(mag.shape[0]) * rate / n_fft
    keep = (freqs >= f_min) & (freqs <= f_max)
    pitch_class = (torch.round(12 * torch.log2(freqs[keep] / 440.0)).long() + 9) % 12
    folded = torch.zeros(12, mag.shape[1]).index_add_(0, pitch_class, mag[keep])  # [12, T]
    per = max(1, round(seconds * rate / hop))
    count = max(1, math.ceil(folded.shape[1] / per))
    folded = torch.nn.functional.pad(folded, (0, count * per - folded.shape[1]))
    return folded.reshape(12, count, per).sum(dim=-1)  # [12, N]


def chroma_agreement(a: torch.Tensor, b: torch.Tensor, rate: int) -> float | None:
    """Mean cosine of the per-second chroma of two stems over the seconds where both are
    active; None when there is no such second."""
    both = active_seconds(split_seconds(a, rate)) & _padded_mask(b, rate, a)
    ca, cb = chroma(a, rate), chroma(b, rate)
    n = min(ca.shape[1], cb.shape[1], both.shape[0])
    both = both[:n]
    if not both.any():
        return None
    cos = torch.nn.functional.cosine_similarity(ca[:, :n].T[both], cb[:, :n].T[both], dim=-1)
    return float(cos.mean())


def _padded_mask(wav: torch.Tensor, rate: int, like: torch.Tensor) -> torch.Tensor:
    """Active-second mask of `wav`, cut or padded (False) to the seconds of `like`."""
    mask = active_seconds(split_seconds(wav, rate))
    n = split_seconds(like, rate).shape[0]
    return mask[:n] if mask.shape[0] >= n else torch.cat([mask, torch.zeros(n - mask.shape[0],
                                                                            dtype=torch.bool)])


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def set_coherence(stems: dict[str, torch.Tensor], rate: int,
                  drums: str = "drums") -> dict[str, Any]:
    """Coherence of a set of stems `{slot: [C, S]}`: mean onset agreement of `drums` with the
    other stems, mean chroma agreement over pairs of harmonic stems, the largest leakage of
    any pair, and the figures per pair under "pairs" ("onset": {slot}, "chroma": {"a+b"},
    "leakage": {"a+b"}). Figures that cannot be computed (no drums, silence) are None."""
    others = [s for s in stems if s != drums]
    onset = {s: onset_agreement(stems[drums], stems[s], rate) for s in others} \
        if drums in stems else {}
    chromas = {f"{a}+{b}": chroma_agreement(stems[a], stems[b], rate)
               for a, b in itertools.combinations(others, 2)}
    leaks = {f"{a}+{b}": leakage(stems[a], stems[b], rate)
             for a, b in itertools.combinations(stems, 2)}
    return {"onset_agreement": _mean(list(onset.values())),
            "chroma_agreement": _mean(list(chromas.values())),
            "max_leakage": max((v for v in leaks.values() if v is not None), default=None),
            "pairs": {"onset": onset, "chroma": chromas, "leakage": leaks}}
