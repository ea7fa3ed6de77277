"""Arrangements from scores: which notes each slot plays, in quarter notes.

An `Arrangement` maps a slot name to its notes `(start, duration, pitch, velocity)` (start and
duration in quarter notes; drums use GM percussion keys). Recipes build arrangements from
music21's bundled corpus:

  folk-band   a folk tune: melody -> other, chord comping -> piano and guitar, a bass line
              from the chord roots, drums from the meter (chords from the tune's chord
              symbols, else inferred bar by bar from the melody and key)
  chorales    a Bach four-part chorale: soprano -> other, alto -> piano, tenor -> guitar,
              bass -> bass
  solo-piano  chorales and folk tunes (melody plus comping), every part on the piano
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

Note = tuple[float, float, int, int]  # start (quarters), duration (quarters), pitch, velocity
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")


class ScoreError(ValueError):
    """A score that cannot be arranged (unparsable, no notes, no pitched part)."""


@dataclass
class Arrangement:
    parts: dict[str, list[Note]]
    tempo: float = 100.0  # quarter notes per minute, as written (variants scale it)
    title: str = ""
    drum_slots: set[str] = field(default_factory=lambda: {"drums"})


@dataclass(frozen=True)
class Source:
    """One piece of a recipe: a file and, for multi-tune ABC files, the tune's index."""

    path: str
    index: int = 0

    @property
    def name(self) -> str:
        stem = Path(self.path).stem
        parent = Path(self.path).parent.name
        return f"{parent}_{stem}_{self.index:03d}" if self.index else f"{parent}_{stem}"


# -- the corpus ----------------------------------------------------------------------------
def folk_sources() -> list[Source]:
    """Every tune of the folk collections, in a stable order (one text scan, no parsing)."""
    from music21 import corpus
    sources = []
    for path in sorted(str(p) for p in corpus.getPaths(fileExtensions=["abc"])):
        if not any(f"/{c}/" in path for c in FOLK_COLLECTIONS):
            continue
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        count = len(re.findall(r"^X:", text, flags=re.M))
        sources.extend(Source(path, i) for i in range(1, count + 1))
    return sources


def chorale_sources() -> list[Source]:
    from music21 import corpus
    return [Source(str(p)) for p in sorted(corpus.getComposer("bach"))
            if re.search(r"bwv\d+\.\d+\.mxl$", str(p))]


def load_tune(source: Source):
    """Parse one tune (ABC files hold many; only the one asked for is parsed)."""
    from music21 import converter
    try:
        if source.index:
            text = Path(source.path).read_text(encoding="utf-8", errors="replace")
            head, *tunes = re.split(r"^(?=X:)", text, flags=re.M)
            return converter.parse(head + tunes[source.index - 1], format="abc")
        return converter.parse(source.path)
    except Exception as exc:  # music21 raises many kinds; any of them means unparsable
        raise ScoreError(f"cannot parse score ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:100] if str(exc) else ''})") from None


# -- reading notes ----------------------------------------------------------------------------
def part_notes(stream) -> list[Note]:
    """Pitched notes of a music21 stream (chords give all their pitches), ties merged."""
    notes = []
    for el in stream.flatten().stripTies().notes:
        if el.duration.quarterLength <= 0:
            continue
        velocity = int(el.volume.velocity or 90)
        for pitch in el.pitches:
            notes.append((float(el.offset), float(el.duration.quarterLength), int(pitch.midi),
                          velocity))
    return notes


def tempo_of(score, default: float = 100.0) -> float:
    marks = score.flatten().getElementsByClass("MetronomeMark")
    for mark in marks:
        if mark.getQuarterBPM():
            return float(mark.getQuarterBPM())
    return default


def bar_length(score) -> tuple[float, int]:
    """(quarters per bar, beats per bar), falling back to 4/4 for odd or missing meters."""
    sigs = score.flatten().getElementsByClass("TimeSignature")
    if sigs:
        ts = sigs[0]
        q = float(ts.barDuration.quarterLength)
        if 1.5 <= q <= 6.0:
            beats = ts.numerator if ts.denominator == 4 or ts.numerator not in (6, 9, 12) \
                else ts.numerator // 3
            return q, max(1, beats)
    return 4.0, 4


# -- chords -----------------------------------------------------------------------------------
MAJOR_STEPS = [0, 2, 4, 5, 7, 9, 11]
MINOR_STEPS = [0, 2, 3, 5, 7, 8, 10]


def diatonic_triads(tonic: int, mode: str) -> list[tuple[int, list[int]]]:
    """(root pitch class, chord pitch classes) of the seven diatonic triads."""
    steps = MINOR_STEPS if mode == "minor" else MAJOR_STEPS
    if mode == "minor":
        steps = steps[:6] + [11]  # harmonic minor: a major V
    triads = []
    for degree in range(7):
        pcs = [(tonic + steps[(degree + k) % 7]) % 12 for k in (0, 2, 4)]
        triads.append((pcs[0], pcs))
    return triads


def infer_chords(melody: list[Note], bar: float, length: float, tonic: int,
                 mode: str) -> list[tuple[float, int, list[int]]]:
    """One chord per bar: the diatonic triad holding most of the bar's melody (by duration)."""
    triads = diatonic_triads(tonic, mode)
    prior = {0: 0.3, 3: 0.2, 4: 0.25}  # I, IV, V win ties
    chords = []
    start = 0.0
    while start < length:
        weight = [0.0] * 12
        for s, d, p, _ in melody:
            overlap = min(s + d, start + bar) - max(s, start)
            if overlap > 0:
                weight[p % 12] += overlap
        best = max(range(7), key=lambda i: sum(weight[pc] for pc in triads[i][1])
                   + prior.get(i, 0.0))
        chords.append((start, triads[best][0], triads[best][1]))
        start += bar
    return chords


def chord_symbols(score) -> list[tuple[float, int, list[int]]]:
    out = []
    for cs in score.flatten().getElementsByClass("ChordSymbol"):
        pcs = sorted({p.pitchClass for p in cs.pitches})
        if pcs:
            out.append((float(cs.offset), cs.root().pitchClass, pcs))
    return out


# -- accompaniment ----------------------------------------------------------------------------
def voiced(pcs: list[int], low: int) -> list[int]:
    """The chord's pitch classes placed at or just above MIDI note `low`."""
    return sorted(low + ((pc - low) % 12) for pc in pcs)


def comping(chords, length: float, bar: float, beats: int, low: int, pattern: str,
            velocity: int) -> list[Note]:
    beat = bar / beats
    notes: list[Note] = []
    for i, (start, _root, pcs) in enumerate(chords):
        end = min(chords[i + 1][0] if i + 1 < len(chords) else length, length)
        t = start
        while t < end - 1e-6:
            if pattern == "block":  # on every beat
                for p in voiced(pcs, low):
                    notes.append((t, beat * 0.9, p, velocity))
                t += beat
            else:  # arpeggio in eighths
                pitches = voiced(pcs, low) + [voiced(pcs, low)[0] + 12]
                step = int(round((t - start) / (beat / 2)))
                notes.append((t, beat / 2 * 0.95, pitches[step % len(pitches)], velocity))
                t += beat / 2
    return notes


def bass_line(chords, length: float, bar: float, beats: int, velocity: int) -> list[Note]:
    notes: list[Note] = []
    for i, (start, root, _pcs) in enumerate(chords):
        end = min(chords[i + 1][0] if i + 1 < len(chords) else length, length)
        low = 36 + (root - 36) % 12
        fifth = low + 7
        notes.append((start, min(bar / 2, end - start) * 0.95, low, velocity))
        if end - start > bar / 2 + 1e-6 and beats >= 2:
            notes.append((start + bar / 2, (end - start - bar / 2) * 0.95, fifth, velocity - 10))
    return notes


def drum_part(length: float, bar: float, beats: int, velocity: int) -> list[Note]:
    """Kick on the downbeat (and mid-bar in even meters), snare on the backbeats, hats."""
    KICK, SNARE, HAT = 36, 38, 42
    beat = bar / beats
    notes: list[Note] = []
    t = 0.0
    while t < length - 1e-6:
        for b in range(beats):
            at = t + b * beat
            if at >= length:
                break
            if b == 0 or (beats == 4 and b == 2):
                notes.append((at, 0.25, KICK, velocity))
            elif beats in (2, 4) or b == beats - 1:
                notes.append((at, 0.25, SNARE, velocity - 15))
            for h in (0.0, beat / 2):
                if at + h < length:
                    notes.append((at + h, 0.2, HAT, velocity - 30))
        t += bar
    return notes


# -- recipes ----------------------------------------------------------------------------------
def key_of(score) -> tuple[int, str]:
    keys = score.flatten().getElementsByClass("KeySignature")
    if keys:
        key = keys[0].asKey() if hasattr(keys[0], "asKey") else keys[0]
        mode = getattr(key, "mode", "major")
        return key.tonic.pitchClass, "minor" if mode == "minor" else "major"
    return 0, "major"


def folk_band(score, solo_piano: bool = False) -> Arrangement:
    parts = score.parts if hasattr(score, "parts") and len(score.parts) else [score]
    melody = part_notes(parts[0])
    if not melody:
        raise ScoreError("no notes")
    melody = _monophonic(melody)
    length = max(s + d for s, d, _, _ in melody)
    bar, beats = bar_length(score)
    chords = chord_symbols(score)
    if not chords:
        tonic, mode = key_of(score)
        chords = infer_chords(melody, bar, length, tonic, mode)
    mel = [(s, d, _into(p, 60, 84), v) for s, d, p, v in melody]
    title = score.metadata.title if score.metadata and score.metadata.title else ""
    if solo_piano:
        accomp = comping(chords, length, bar, beats, 48, "block", 60)
        return Arrangement({"piano": mel + accomp}, tempo_of(score, 110.0), title)
    return Arrangement({
        "other": mel,
        "piano": comping(chords, length, bar, beats, 55, "block", 62),
        "guitar": comping(chords, length, bar, beats, 52, "arpeggio", 70),
        "bass": bass_line(chords, length, bar, beats, 85),
        "drums": drum_part(length, bar, beats, 100),
    }, tempo_of(score, 110.0), title)


def chorale(score, solo_piano: bool = False) -> Arrangement:
    parts = [p for p in score.parts if part_notes(p)]
    if len(parts) < 4:
        raise ScoreError(f"needs four voices, has {len(parts)}")
    slots = ["piano"] * 4 if solo_piano else ["other", "piano", "guitar", "bass"]
    arranged: dict[str, list[Note]] = {}
    for slot, part in zip(slots, parts[:4]):
        arranged.setdefault(slot, []).extend(part_notes(part))
    title = score.metadata.title if score.metadata and score.metadata.title else ""
    return Arrangement(arranged, tempo_of(score, 80.0), title)


def _into(pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def _monophonic(notes: list[Note]) -> list[Note]:
    """Keep the top note where a melody has chords (double stops in fiddle tunes)."""
    top: dict[float, Note] = {}
    for n in notes:
        if n[0] not in top or n[2] > top[n[0]][2]:
            top[n[0]] = n
    return sorted(top.values())


RECIPES = {
    "folk-band": ("drums, bass, guitar, piano, other", "folk tunes with a generated band"),
    "chorales": ("other, piano, guitar, bass", "Bach four-part chorales, one voice per slot"),
    "solo-piano": ("piano", "chorales and folk tunes on the piano alone"),
}


def recipe_sources(name: str) -> Iterator[tuple[str, Source]]:
    """(kind, source) of a recipe in order; kind says how to arrange the source."""
    if name == "folk-band":
        for s in folk_sources():
            yield "folk", s
    elif name == "chorales":
        for s in chorale_sources():
            yield "chorale", s
    elif name == "solo-piano":
        chorales, folk = chorale_sources(), folk_sources()
        for i in range(max(len(chorales), len(folk))):  # interleaved: both kinds early
            if i < len(chorales):
                yield "chorale", chorales[i]
            if i < len(folk):
                yield "folk", folk[i]
    else:
        raise KeyError(name)


def arrange(kind: str, score, recipe: str | None) -> Arrangement:
    solo = recipe == "solo-piano"
    if kind == "folk":
        return folk_band(score, solo)
    if kind == "chorale":
        return chorale(score, solo)
    raise KeyError(kind)
