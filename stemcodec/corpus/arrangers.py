"""Arrangers: a parsed score onto slots, the way of the recipe it is rendered for.

  folk_band    the tune's melody -> other; chord comping -> piano and guitar; a bass line on
               the chord roots; drums from the meter (patterns drawn per piece, band.py);
               for solo-piano, the melody over a left hand of chords.
  chorale      soprano -> other, alto -> piano, tenor -> guitar, bass -> bass; for solo-piano
               all four voices on the piano.
  piano_piece  every part of a work on the piano (piano-literature: at most six parts; an ABC
               file of several tunes is one work whose tunes are its voices).
"""

from __future__ import annotations

import numpy as np

from .arrangement import Arrangement, Note, ScoreError, Track
from .band import (
    BASS_PATTERNS,
    DRUM_PATTERNS,
    GUITAR_PATTERNS,
    PIANO_PATTERNS,
    Harmony,
    bass_notes,
    comp_notes,
    drum_notes,
    infer_chords,
)
from .recipes import MAX_PARTS
from .scores import (
    bars_of,
    chord_symbols,
    default_tempo,
    key_of,
    melody_of,
    part_notes,
    parts_of,
    tempo_of,
    title_of,
)


def into_range(notes: list[Note], low: int, high: int) -> list[Note]:
    """Shift a whole line by octaves so that most of it lies in [low, high]."""
    def outside(shift: int) -> int:
        return sum(not low <= p + shift <= high for _, _, p, _ in notes)
    best = min(range(-36, 37, 12), key=lambda s: (outside(s), abs(s)))
    return [(s, d, p + best, v) for s, d, p, v in notes]


def folk_band(score, rng: np.random.Generator, solo_piano: bool = False) -> Arrangement:
    """The tune's melody with a band drawn for it (see band.py), or a piano's two hands."""
    melody = melody_of(score)
    length = max(s + d for s, d, _, _ in melody)
    bars = [b for b in bars_of(score, length) if b.start < length - 1e-6]
    chords, chord_source = chord_symbols(score), "symbols"
    if not chords:
        tonic, mode = key_of(score, melody)
        chords, chord_source = infer_chords(melody, bars, tonic, mode), "inferred"
    harmony = Harmony(chords)
    if len(bars) > 1 and bars[0].phase > 0:  # the band comes in after the pickup
        bars = bars[1:]
    compound = bars[0].compound if bars else False
    tempo = tempo_of(score, 150.0 if compound else 108.0)
    title = title_of(score)
    bar_starts = [b.start for b in bars]

    def pick(options: tuple[str, ...]) -> str:
        return str(rng.choice(options))

    if solo_piano:
        right = into_range(melody, 62, 86)
        left = comp_notes(pick(PIANO_PATTERNS), bars, harmony, 48, 58, rng)
        return Arrangement({"piano": [Track(right + left)]}, tempo, title, bar_starts,
                           {"chords": chord_source})
    lead = into_range(melody, 58, 86)
    patterns = {"piano": pick(PIANO_PATTERNS), "guitar": pick(GUITAR_PATTERNS),
                "bass": pick(BASS_PATTERNS), "drums": pick(DRUM_PATTERNS)}
    parts = {
        "other": [Track([(s, d, p, min(127, v + 5)) for s, d, p, v in lead])],
        "piano": [Track(comp_notes(patterns["piano"], bars, harmony, int(rng.integers(53, 59)),
                                   60, rng))],
        "guitar": [Track(comp_notes(patterns["guitar"], bars, harmony,
                                    int(rng.integers(50, 56)), 68, rng))],
        "bass": [Track(bass_notes(patterns["bass"], bars, harmony, 88, rng))],
        "drums": [Track(drum_notes(patterns["drums"], bars, 96, rng), is_drum=True)],
    }
    info = {"patterns": patterns, "chords": chord_source}
    return Arrangement(parts, tempo, title, bar_starts, info)


VOICES = ("soprano", "alto", "tenor", "bass")
CHORALE_SLOTS = {"soprano": "other", "alto": "piano", "tenor": "guitar", "bass": "bass"}


def chorale(score, solo_piano: bool = False) -> Arrangement:
    """Four voices onto four slots (by part name where the parts are named, else in order)."""
    parts = [p for p in parts_of(score) if part_notes(p)]
    named = {}
    for p in parts:  # "Soprano", "S.", "Alto" ...: the first letter names the voice
        initial = (p.partName or "").strip()[:1].lower()
        for voice in VOICES:
            if initial == voice[0]:
                named.setdefault(voice, p)
    chosen = [named[v] for v in VOICES] if len(named) == 4 else parts[:4]
    if len(chosen) < 4:
        raise ScoreError(f"needs four voices, has {len(parts)}")
    arranged: dict[str, list[Track]] = {}
    for voice, part in zip(VOICES, chosen):
        slot = "piano" if solo_piano else CHORALE_SLOTS[voice]
        arranged.setdefault(slot, []).append(Track(part_notes(part)))
    length = max(s + d for tracks in arranged.values() for t in tracks for s, d, _, _ in t.notes)
    bars = [b.start for b in bars_of(score, length)]
    return Arrangement(arranged, tempo_of(score, 84.0), title_of(score), bars)


def piano_piece(score, max_parts: int | None = None) -> Arrangement:
    """Every part of a work on the piano, at the score's tempo or one for its meter
    (scores.default_tempo)."""
    if type(score).__name__ == "Opus":  # voices written as tunes of one ABC file
        score = score.mergeScores()
    parts = [notes for part in parts_of(score) if (notes := part_notes(part))]
    if not parts:
        raise ScoreError("no notes")
    if max_parts is not None and len(parts) > max_parts:
        raise ScoreError(f"{len(parts)} parts, more than {max_parts}")
    notes = [n for part in parts for n in part]
    length = max(s + d for s, d, _, _ in notes)
    bars = [b.start for b in bars_of(score, length)]
    return Arrangement({"piano": [Track(notes)]}, tempo_of(score, default_tempo(score)),
                       title_of(score), bars)


PIANO_RECIPES = ("solo-piano", "piano-literature")  # everything on the piano


def arrange(score, kind: str, recipe: str | None, rng: np.random.Generator) -> Arrangement:
    """Arrange a parsed score read as `kind` (the recipe whose piece it is: folk-band,
    chorales, piano-literature; solo-piano for a user's score) for `recipe` (solo-piano and
    piano-literature put everything on the piano)."""
    solo = recipe in PIANO_RECIPES
    if kind == "folk-band":
        return folk_band(score, rng, solo)
    if kind == "chorales":
        return chorale(score, solo)
    if kind == "piano-literature":
        return piano_piece(score, MAX_PARTS)
    if kind == "solo-piano":
        return piano_piece(score)
    raise KeyError(kind)
