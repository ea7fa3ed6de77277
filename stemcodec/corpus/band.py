"""A band around a melody: chords (inferred or given), comping, bass line and drums.

Everything is placed on a grid of `Bar`s taken from the score (pickups and meter changes
included), in quarter notes. A bar has `beats` beats of `beat` quarter notes, each divided
into `division` (2 simple meters, 3 compound: 6/8 is two beats of three eighths):

    6/8   | beat 0          | beat 1          |      4/4  | b0  | b1  | b2  | b3  |
          | s0   s1   s2    | s0   s1   s2    |           |s0 s1|s0 s1|s0 s1|s0 s1|

A pickup bar is the tail of a full bar: it starts `phase` quarter notes into it.
Patterns say which (beat, subdivision) positions play and what (the chord, its root, an
arpeggio tone); one pattern per slot is drawn per piece.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .arrangement import Note

Chord = tuple[float, int, tuple[int, ...]]  # start (quarters), root pitch class, pitch classes

PIANO_PATTERNS = ("block", "sustain", "oompah", "offbeat")
GUITAR_PATTERNS = ("arpeggio", "strum", "boomchick", "picking")
BASS_PATTERNS = ("root", "root-fifth", "beats", "walk")
DRUM_PATTERNS = ("backbeat", "light", "shuffle")


@dataclass(frozen=True)
class Bar:
    start: float
    end: float
    phase: float = 0.0
    beats: int = 4
    beat: float = 1.0  # quarter notes per beat
    division: int = 2  # subdivisions per beat

    @property
    def compound(self) -> bool:
        return self.division == 3

    def time(self, beat: int, sub: int = 0) -> float:
        return self.start - self.phase + beat * self.beat + sub * self.beat / self.division

    def positions(self, subs) -> Iterator[tuple[int, int, float]]:
        """(beat, sub, time) of every beat's `subs` that fall inside the bar."""
        for beat in range(self.beats):
            for sub in subs:
                t = self.time(beat, sub)
                if self.start - 1e-6 <= t < self.end - 1e-6:
                    yield beat, sub, t


# -- harmony ---------------------------------------------------------------------------------
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MODES = {"major": 0, "ionian": 0, "dorian": 1, "phrygian": 2, "lydian": 3, "mixolydian": 4,
         "minor": 5, "aeolian": 5, "locrian": 6}


def diatonic_triads(tonic: int, mode: str) -> list[tuple[int, tuple[int, ...]]]:
    """(root, pitch classes) of the seven triads of the mode (minor adds a major V)."""
    rot = MODES.get(mode, 0)
    steps = [(MAJOR[(rot + i) % 7] - MAJOR[rot]) % 12 for i in range(7)]
    triads = []
    for degree in range(7):
        pcs = tuple((tonic + steps[(degree + k) % 7]) % 12 for k in (0, 2, 4))
        triads.append((pcs[0], pcs))
    if MODES.get(mode) == 5:
        dominant = (tonic + 7) % 12
        triads.append((dominant, (dominant, (dominant + 4) % 12, (dominant + 7) % 12)))
    return triads


def infer_chords(melody: list[Note], bars: list[Bar], tonic: int, mode: str) -> list[Chord]:
    """One chord per bar: the diatonic triad that holds most of the bar's melody (weighted by
    duration, notes on a beat counting double); I, IV, V and the previous chord win near-ties
    and the last bar goes home to I."""
    triads = diatonic_triads(tonic, mode)
    prior = {0: 0.3, 3: 0.2, 4: 0.25, 7: 0.2}
    chords: list[Chord] = []
    previous = 0
    for n, bar in enumerate(bars):
        weight = np.zeros(12)
        for s, d, p, _ in melody:
            overlap = min(s + d, bar.end) - max(s, bar.start)
            if overlap > 0:
                on_beat = abs((s - bar.time(0)) / bar.beat % 1) < 1e-6
                weight[p % 12] += overlap * (2.0 if on_beat else 1.0)
        if weight.any():
            fit = [weight[list(pcs)].sum() / weight.sum() + prior.get(i, 0.0)
                   + (0.1 if i == previous else 0.0)
                   + (0.5 if i == 0 and n == len(bars) - 1 else 0.0)
                   for i, (_, pcs) in enumerate(triads)]
            previous = int(np.argmax(fit))
        chords.append((bar.start, *triads[previous]))
    return chords


class Harmony:
    """The chord sounding at any time (the first chord before it starts)."""

    def __init__(self, chords: list[Chord]):
        self.chords = sorted(chords)
        self.starts = [c[0] for c in self.chords]

    def at(self, t: float) -> Chord:
        return self.chords[max(bisect.bisect_right(self.starts, t + 1e-6) - 1, 0)]


def voiced(pcs: tuple[int, ...], low: int) -> list[int]:
    """The chord's pitch classes placed in the octave from MIDI note `low` up."""
    return sorted(low + (pc - low) % 12 for pc in pcs)


def below(pc: int, low: int) -> int:
    """Pitch class `pc` in the octave under `low`."""
    return low - 12 + (pc - low) % 12


# -- comping (piano, guitar) --------------------------------------------------------------------
def _comp_positions(pattern: str, bar: Bar, harmony: Harmony) -> list[tuple[int, int, float]]:
    if pattern == "sustain":  # struck on the downbeat and where the chord changes
        hits = list(bar.positions([0]))
        return [h for i, h in enumerate(hits)
                if i == 0 or harmony.at(h[2]) != harmony.at(hits[i - 1][2])]
    if pattern in ("arpeggio", "picking"):
        return list(bar.positions(range(bar.division)))
    if pattern == "offbeat":
        return [h for h in bar.positions(range(bar.division)) if h[1] or h[0] == 0]
    if pattern == "strum":
        return list(bar.positions(sorted({0, bar.division - 1})))
    return list(bar.positions([0]))  # block, oompah, boomchick


def comp_notes(pattern: str, bars: list[Bar], harmony: Harmony, low: int, velocity: int,
               rng: np.random.Generator) -> list[Note]:
    """Chords in one of PIANO_PATTERNS or GUITAR_PATTERNS, voiced from MIDI note `low` up:

    block      the chord on every beat          sustain   held until the chord changes
    oompah     root on 1 (and 3), chord between offbeat   root on 1, chords off the beat
    arpeggio   chord tones up, every subdivision strum    down on the beat, up before the next
    boomchick  root on 1, fifth on 3, chords     picking   thumb root/fifth, fingers above
    """
    notes: list[Note] = []
    for bar in bars:
        hits = _comp_positions(pattern, bar, harmony)
        for i, (beat, sub, t) in enumerate(hits):
            room = (hits[i + 1][2] if i + 1 < len(hits) else bar.end) - t
            _, root, pcs = harmony.at(t)
            chord = voiced(pcs, low)
            vel = int(np.clip(velocity + (8 if beat == sub == 0 else 0) + rng.integers(-5, 6),
                              1, 127))
            strong = sub == 0 and (beat == 0 or (bar.beats == 4 and beat == 2))
            if pattern in ("oompah", "boomchick") and strong:
                fifth = 7 if pattern == "boomchick" and beat else 0
                notes.append((t, room * 0.9, below(root, low) + fifth, vel))
            elif pattern == "offbeat" and beat == sub == 0:
                notes.append((t, room * 0.9, below(root, low), vel))
            elif pattern == "arpeggio":
                tones = chord + [chord[0] + 12]
                notes.append((t, room * 0.95, tones[i % len(tones)], vel))
            elif pattern == "picking":
                if sub == 0:
                    notes.append((t, bar.beat * 0.95, below(root, low) + 7 * (beat % 2), vel))
                else:
                    upper = chord[1:] + [chord[0] + 12]
                    notes.append((t, room * 0.9, upper[i % len(upper)], vel - 10))
            elif pattern == "strum":  # strings struck 20 ms of a quarter apart
                order, vel = (chord, vel) if sub == 0 else (chord[::-1], vel - 20)
                notes += [(t + 0.02 * k, room * 0.9 - 0.02 * k, p, vel)
                          for k, p in enumerate(order)]
            else:  # block, sustain, and the chords of oompah / boomchick / offbeat
                notes += [(t, room * (0.98 if pattern == "sustain" else 0.9), p, vel)
                          for p in chord]
    return [n for n in notes if n[1] > 0]


# -- bass and drums -----------------------------------------------------------------------------
def bass_notes(pattern: str, bars: list[Bar], harmony: Harmony, velocity: int,
               rng: np.random.Generator) -> list[Note]:
    """A bass line on the chord roots (C2..B2), one of BASS_PATTERNS:

    root        the root, re-struck where the chord changes on a beat
    root-fifth  root on 1, fifth in the middle of the bar
    beats       root on every beat, fifth on the last (bars of 3+ beats)
    walk        root, third, fifth, octave
    """
    notes: list[Note] = []
    for bar in bars:
        if pattern == "root":
            hits = _comp_positions("sustain", bar, harmony)
        elif pattern == "root-fifth":
            hits = [h for h in bar.positions([0]) if h[0] in (0, bar.beats // 2)]
        else:
            hits = list(bar.positions([0]))
        for i, (beat, _, t) in enumerate(hits):
            room = (hits[i + 1][2] if i + 1 < len(hits) else bar.end) - t
            _, root, pcs = harmony.at(t)
            base = 36 + (root - 36) % 12
            third = voiced(pcs, base)[1] if len(pcs) > 1 else base + 4
            if pattern == "walk":
                pitch = (base, third, base + 7, base + 12)[beat % 4]
            elif (pattern == "root-fifth" and beat) or (
                    pattern == "beats" and bar.beats >= 3 and beat == bar.beats - 1):
                pitch = base + 7
            else:
                pitch = base
            vel = int(np.clip(velocity + (6 if beat == 0 else 0) + rng.integers(-4, 5), 1, 127))
            notes.append((t, room * 0.92, pitch, vel))
    return notes


KICK, SIDE_STICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, RIDE, TAMBOURINE = \
    36, 37, 38, 42, 46, 49, 51, 54


def drum_notes(pattern: str, bars: list[Bar], velocity: int,
               rng: np.random.Generator) -> list[Note]:
    """GM percussion from the meter, one of DRUM_PATTERNS:

    backbeat  kick on 1 (and 3), snare on the off beats, closed hats on every subdivision
    light     kick, side stick, ride on the beats (tambourine between, in compound meters)
    shuffle   as backbeat, with an open hat before the next bar

    Compound meters alternate kick and snare by beat; waltzes put the snare on 2 and 3.
    A crash marks the first full bar (not in `light`).
    """
    notes: list[Note] = []
    first_full = next((i for i, b in enumerate(bars) if b.phase == 0), 0)
    for n, bar in enumerate(bars):
        step = bar.beat / bar.division
        for beat, sub, t in bar.positions(range(bar.division)):
            keys: list[tuple[int, int]] = []
            if sub == 0:
                if bar.compound:
                    kick, back = beat % 2 == 0, beat % 2 == 1
                else:
                    kick = beat == 0 or (bar.beats == 4 and beat == 2)
                    back = beat % 2 == 1 if bar.beats % 2 == 0 else beat > 0
                if kick:
                    keys.append((KICK, velocity))
                if back:
                    keys.append((SIDE_STICK if pattern == "light" else SNARE, velocity - 12))
                if n == first_full and beat == 0 and pattern != "light":
                    keys.append((CRASH, velocity - 10))
            if pattern == "light":
                cymbal = RIDE if sub == 0 else (TAMBOURINE if bar.compound else 0)
            elif pattern == "shuffle" and beat == bar.beats - 1 and sub == bar.division - 1:
                cymbal = OPEN_HAT
            else:
                cymbal = CLOSED_HAT
            if cymbal:
                keys.append((cymbal, velocity - (25 if sub else 15)))
            jitter = int(rng.integers(-6, 7))
            notes += [(t, step * 0.9, key, int(np.clip(v + jitter, 1, 127))) for key, v in keys]
    return notes
