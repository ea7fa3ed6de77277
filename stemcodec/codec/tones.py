"""Synthetic harmonic tones mixed into a codec's training segments (`data.tone_fraction`).

A rendered General MIDI corpus has a few hundred timbres on a 12-tone grid; tones with any
fundamental (log-uniform 30 Hz - 2 kHz), any spectral tilt and some vibrato teach the codec to
carry a pitch as such, not the pitches and timbres of one SoundFont.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def harmonic_note(rng: np.random.Generator, length: int, rate: int) -> np.ndarray:
    """One note of `length` samples: a random fundamental, harmonics up to Nyquist with a
    random tilt (some odd-only, a fifth a pure sine), vibrato on a third of them, attack and
    decay."""
    f0 = math.exp(rng.uniform(math.log(30.0), math.log(2000.0)))
    t = np.arange(length) / rate
    # an array either way: cumsum of a scalar 0.0 was one sample, and the note a constant (DC)
    vibrato = rng.uniform(0.0, 0.01) * np.sin(2 * np.pi * rng.uniform(3, 7) * t) \
        if rng.random() < 0.33 else np.zeros(length)
    phase = 2 * np.pi * f0 * np.cumsum(1 + vibrato) / rate
    tilt, odd = rng.uniform(0.0, 2.5), rng.random() < 0.25
    # a fifth are pure sines: music seldom holds one, and a codec that learnt only
    # instruments gives a sine the harmonics (or the octave) of the nearest instrument
    top = 1 if rng.random() < 0.2 else int(rate / 2 / (f0 * 1.02))
    out = np.zeros(length)
    for n in range(1, top + 1):
        if odd and n % 2 == 0:
            continue
        out += rng.uniform(0.5, 1.0) / n ** tilt * np.sin(n * phase + rng.uniform(0, 2 * np.pi))
    attack = max(1, int(rng.uniform(0.002, 0.05) * rate))
    env = np.minimum(1.0, np.arange(length) / attack)
    if rng.random() < 0.5:  # a decaying note (plucked, struck) rather than a held one
        env *= np.exp(-t * rng.uniform(0.5, 6.0))
    out *= env
    return out / (np.abs(out).max() + 1e-9)


def random_tones(rng: np.random.Generator, length: int, rate: int) -> torch.Tensor:
    """A segment `[1, length]` of 1-4 consecutive notes, sometimes two at once, peak 0.05-0.6."""
    out = np.zeros(length)
    cuts = np.sort(rng.integers(0, length, int(rng.integers(0, 4))))
    for first, last in zip([0, *cuts], [*cuts, length]):
        if last - first < rate // 50:
            continue
        voices = 2 if rng.random() < 0.25 else 1
        for _ in range(voices):
            out[first:last] += harmonic_note(rng, last - first, rate) / voices
    out *= rng.uniform(0.05, 0.6) / (np.abs(out).max() + 1e-9)
    return torch.from_numpy(out.astype(np.float32))[None]
