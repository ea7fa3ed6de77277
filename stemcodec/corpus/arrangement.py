"""What each slot plays: an `Arrangement` of tracks, in quarter notes, before any sound.

    Arrangement
      parts:  slot -> [Track, ...]      several tracks of one slot merge into one stem
      tempo:  quarter notes per minute   (one tempo; MIDI files are converted at their first
                                          tempo, so their later tempo changes survive as timing)
      bars:   start of every bar         (where a piece may be cut)
      info:   how it was arranged        (patterns, chord source: copied to meta.json)

    Track
      notes:    [(start, duration, pitch, velocity)]   start/duration in quarter notes
      program:  the source's own GM program, or None (drawn from the slot's family, or the
                slot's default program for a user's part of unknown instrument)
      is_drum:  GM percussion keys on MIDI channel 10
      controls: [(time, controller, value)]  bends: [(time, value)]   (MIDI files only)
      name:     the part's or MIDI track's name (user inputs), for meta.json
      origin:   where `program` came from: midi (the file's program), score (the score's
                instrument), name (the instrument or part name); render adds default and drawn

Variants (`vary`) transpose, scale tempo and velocity; `cut` shortens a piece at a bar line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

Note = tuple[float, float, int, int]  # start, duration (quarter notes), pitch, velocity


class ScoreError(ValueError):
    """A piece that cannot be rendered (unparsable, no notes, no pitched part...)."""


@dataclass
class Track:
    notes: list[Note]
    program: int | None = None
    is_drum: bool = False
    controls: list[tuple[float, int, int]] = field(default_factory=list)
    bends: list[tuple[float, int]] = field(default_factory=list)
    name: str = ""
    origin: str = ""


@dataclass
class Arrangement:
    parts: dict[str, list[Track]]
    tempo: float = 100.0
    title: str = ""
    bars: list[float] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # how it was arranged, for meta.json

    def slots(self) -> list[str]:
        """Slots with at least one note, in a stable order."""
        return sorted(s for s, tracks in self.parts.items() if any(t.notes for t in tracks))

    def length(self) -> float:
        """End of the last note, in quarter notes."""
        ends = [s + d for tracks in self.parts.values() for t in tracks for s, d, _, _ in t.notes]
        return max(ends, default=0.0)


def playable_tempo(tempo: float, low: float = 60.0, high: float = 200.0) -> float:
    """Fold a tempo by octaves into [low, high]: ABC tunes often count eighths or halves."""
    while tempo > high:
        tempo /= 2
    while tempo < low:
        tempo *= 2
    return tempo


def vary(arr: Arrangement, variant: int, rng: np.random.Generator) -> tuple[Arrangement, dict]:
    """Variant 0 plays the score as written; others transpose (-5..+6 semitones, drums
    excepted) and scale tempo (0.85-1.2) and velocity (0.75-1.1)."""
    transpose = int(rng.integers(-5, 7)) if variant else 0
    tempo_scale = float(rng.uniform(0.85, 1.2)) if variant else 1.0
    velocity_scale = float(rng.uniform(0.75, 1.1)) if variant else 1.0
    parts = {}
    for slot, tracks in arr.parts.items():
        parts[slot] = []
        for track in tracks:
            shift = 0 if track.is_drum else transpose
            notes = [(s, d, p + shift, int(min(127, max(1, round(v * velocity_scale)))))
                     for s, d, p, v in track.notes if 0 <= p + shift <= 127]
            parts[slot].append(replace(track, notes=notes))
    varied = replace(arr, parts=parts, tempo=arr.tempo * tempo_scale)
    return varied, {"transpose": transpose, "tempo_scale": round(tempo_scale, 4),
                    "velocity_scale": round(velocity_scale, 4)}


def cut(arr: Arrangement, max_quarters: float, min_quarters: float) -> Arrangement:
    """Drop what starts after `max_quarters`, cutting at the last bar line before it when
    that still leaves `min_quarters`; notes that cross the cut end there."""
    end = max_quarters
    if arr.length() <= end:
        return arr
    bar_lines = [b for b in arr.bars if min_quarters <= b <= max_quarters]
    if bar_lines:
        end = max(bar_lines)
    parts = {}
    for slot, tracks in arr.parts.items():
        parts[slot] = []
        for track in tracks:
            notes = [(s, min(d, end - s), p, v) for s, d, p, v in track.notes if s < end - 1e-6]
            controls = [c for c in track.controls if c[0] < end]
            if not track.is_drum:
                controls.append((end, 64, 0))  # lift a held sustain pedal at the cut
            bends = [b for b in track.bends if b[0] < end]
            parts[slot].append(replace(track, notes=notes, controls=controls, bends=bends))
    return replace(arr, parts=parts, bars=[b for b in arr.bars if b < end])
