"""Built-in recipes: scores that ship with music21, arranged onto slots.

  folk-band   a folk tune (Essen, O'Neill, Ryan's Mammoth, Aird's airs, Northumbrian and fife
              tunes, Nottingham, two lead sheets): melody -> other; chord comping -> piano and
              guitar; a bass line on the chord roots; drums from the meter. Chords come from
              the tune's chord symbols, else one per bar inferred from the melody and the key.
              Comping, bass and drum patterns are drawn per piece from a few per meter.
  chorales    a Bach four-part chorale (Riemenschneider's 371, 349 distinct files): soprano
              -> other, alto -> piano, tenor -> guitar, bass -> bass (four distinct slots).
  solo-piano  piano alone: the corpus's piano works, the chorales' four voices, and folk
              tunes with a left hand (melody, chords, bass), interleaved.

A recipe lists its pieces as `Source`s without parsing them (`--list-recipes` is quick);
`load_score` parses one piece when it is rendered. Arrangement happens in `arrange`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .arrangement import Arrangement, Note, ScoreError, Track, playable_tempo

FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk",
                    "nottingham-dataset", "leadSheet")
# keyboard works in music21's corpus (checked by their parts): solo-piano's own repertoire
PIANO_WORKS = ("joplin/maple_leaf_rag.mxl", "chopin/mazurka06-2.krn",
               "mozart/k545/movement1_exposition.mxl", "schumann_clara/polonaise_op1n1.mxl",
               "schumann_clara/polonaise_op1n2.mxl", "schumann_clara/polonaise_op1n3.mxl",
               "schumann_clara/polonaise_op1n4.mxl", "cpebach/h186.mxl")


@dataclass(frozen=True)
class Source:
    """One piece: a file and, for multi-tune ABC files, the tune's number (1-based)."""

    path: str
    index: int = 0
    kind: str = "score"  # folk | chorale | piano | score | midi: how it is arranged

    @property
    def name(self) -> str:
        """Readable and unique within a recipe: `<folder>_<file>[_<tune>]`."""
        stem = re.sub(r"\.(mxl|xml|musicxml|krn|abc|mid|midi)$", "", Path(self.path).name)
        parent = Path(self.path).parent.name
        return f"{parent}_{stem}_{self.index:04d}" if self.index else f"{parent}_{stem}"

    def __str__(self) -> str:
        marker = "/music21/corpus/"
        text = "music21:" + self.path.split(marker, 1)[1] if marker in self.path else self.path
        return f"{text}#{self.index}" if self.index else text


# -- the pieces of each recipe ----------------------------------------------------------------
def _corpus_root() -> Path:
    from music21 import common
    return Path(common.getCorpusFilePath())


@lru_cache(maxsize=1)
def folk_sources() -> tuple[Source, ...]:
    """Every tune of the folk collections, the collections interleaved (so the first N cover
    all of them); tunes are counted by their `X:` lines, nothing is parsed."""
    root = _corpus_root()
    per_collection = []
    for collection in FOLK_COLLECTIONS:
        tunes = []
        for path in sorted((root / collection).glob("*")):
            if path.suffix == ".abc":
                text = path.read_text(encoding="utf-8", errors="replace")
                count = len(re.findall(r"^X:", text, flags=re.M))
                tunes.extend(Source(str(path), i, "folk") for i in range(1, count + 1))
            elif path.suffix in (".mxl", ".xml", ".musicxml"):
                tunes.append(Source(str(path), 0, "folk"))
        per_collection.append(tunes)
    return tuple(_interleave(per_collection))


@lru_cache(maxsize=1)
def chorale_sources() -> tuple[Source, ...]:
    """Riemenschneider's 371 chorales in order, each file once."""
    from music21.corpus import chorales
    folder = _corpus_root() / "bach"
    names = {p.name for p in folder.iterdir()}
    found: dict[str, Source] = {}
    for _, info in sorted(chorales.ChoraleListRKBWV().byRiemenschneider.items()):
        for ext in (".mxl", ".xml", ".krn"):
            name = f"bwv{info['bwv']}{ext}"
            if name in names:
                found.setdefault(name, Source(str(folder / name), 0, "chorale"))
                break
    return tuple(found.values())


def piano_sources() -> tuple[Source, ...]:
    root = _corpus_root()
    return tuple(Source(str(root / p), 0, "piano") for p in PIANO_WORKS if (root / p).is_file())


def solo_piano_sources() -> tuple[Source, ...]:
    return tuple(_interleave([list(piano_sources()), list(chorale_sources()),
                              list(folk_sources())]))


def _interleave(lists: list[list[Source]]) -> Iterator[Source]:
    for i in range(max((len(x) for x in lists), default=0)):
        for items in lists:
            if i < len(items):
                yield items[i]


@dataclass(frozen=True)
class Recipe:
    slots: tuple[str, ...]
    text: str
    sources: Callable[[], tuple[Source, ...]]


RECIPES: dict[str, Recipe] = {
    "folk-band": Recipe(("drums", "bass", "guitar", "piano", "other"),
                        "folk tunes with a generated band", folk_sources),
    "chorales": Recipe(("bass", "guitar", "piano", "other"),
                       "Bach chorales: soprano other, alto piano, tenor guitar, bass bass",
                       chorale_sources),
    "solo-piano": Recipe(("piano",), "piano works, chorales and folk tunes on the piano alone",
                         solo_piano_sources),
}


def load_score(source: Source):
    """Parse one piece with music21 (of a multi-tune ABC file, only the tune asked for)."""
    from music21 import converter
    try:
        if source.index:
            text = Path(source.path).read_text(encoding="utf-8", errors="replace")
            head, *tunes = re.split(r"^(?=X:)", text, flags=re.M)
            if source.index > len(tunes):
                raise ScoreError(f"has no tune number {source.index}")
            return converter.parse(head + tunes[source.index - 1], format="abc")
        return converter.parse(source.path)
    except ScoreError:
        raise
    except Exception as exc:  # music21 raises many kinds; any of them means unparsable
        first = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else ""
        raise ScoreError(f"cannot parse score ({type(exc).__name__}{': ' + first if first else ''})"
                         ) from None


# -- reading a score ----------------------------------------------------------------------------
def parts_of(score) -> list:
    parts = list(getattr(score, "parts", []))
    return parts or [score]


def part_notes(stream) -> list[Note]:
    """Pitched notes of a music21 stream (chords give all their pitches), ties merged,
    grace notes dropped."""
    notes = []
    for el in stream.flatten().stripTies().notes:
        if el.duration.quarterLength <= 0 or type(el).__name__ == "ChordSymbol":
            continue
        velocity = int(el.volume.velocity or 90)
        for pitch in el.pitches:
            notes.append((float(el.offset), float(el.duration.quarterLength), int(pitch.midi),
                          velocity))
    return notes


def tempo_of(score, default: float) -> float:
    for mark in score.flatten().getElementsByClass("MetronomeMark"):
        bpm = mark.getQuarterBPM()
        if bpm:
            return playable_tempo(float(bpm))
    return default


def title_of(score) -> str:
    meta = getattr(score, "metadata", None)
    return str(meta.title) if meta is not None and meta.title else ""


@dataclass(frozen=True)
class Bar:
    """One bar: where it starts and ends, and its meter. A pickup bar starts `phase`
    quarter notes into its nominal bar."""

    start: float
    end: float
    phase: float = 0.0
    beats: int = 4
    beat: float = 1.0  # quarter notes per beat
    division: int = 2  # subdivisions per beat: 2 simple, 3 compound

    @property
    def compound(self) -> bool:
        return self.division == 3


def meter(ts) -> tuple[int, float, int]:
    """(beats, quarter notes per beat, division) of a music21 TimeSignature."""
    if ts is None:
        return 4, 1.0, 2
    num, den = ts.numerator, ts.denominator
    unit = 4.0 / den
    if den >= 8 and num in (3, 6, 9, 12):
        return max(1, num // 3), 3 * unit, 3
    if num == 1:  # 1/4 and the like: count it as one beat
        return 1, unit, 2
    return num, unit, 2


def bars_of(score, length: float) -> list[Bar]:
    """Bars of the first part (measure offsets, pickups, meter changes); a 4/4 grid when the
    score has no measures."""
    part = parts_of(score)[0]
    measures = list(part.getElementsByClass("Measure"))
    bars: list[Bar] = []
    ts = None
    for m in measures:
        ts = m.timeSignature or ts
        beats, beat, division = meter(ts)
        start, dur = float(m.offset), float(m.duration.quarterLength)
        if dur <= 0:
            continue
        full = beats * beat
        phase = max(0.0, full - dur) if not bars and dur < full else 0.0
        bars.append(Bar(start, start + dur, phase, beats, beat, division))
    if not bars:
        first = part.flatten().getElementsByClass("TimeSignature")
        beats, beat, division = meter(first[0] if first else None)
        t = 0.0
        while t < length:
            bars.append(Bar(t, t + beats * beat, 0.0, beats, beat, division))
            t += beats * beat
    return bars


# -- harmony --------------------------------------------------------------------------------
Chord = tuple[float, int, tuple[int, ...]]  # start (quarters), root pitch class, pitch classes
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MODES = {"major": 0, "ionian": 0, "dorian": 1, "phrygian": 2, "lydian": 3, "mixolydian": 4,
         "minor": 5, "aeolian": 5, "locrian": 6}


def key_of(score, melody: list[Note]) -> tuple[int, str]:
    """(tonic pitch class, mode) from the key signature, else estimated from the notes."""
    for k in score.recurse().getElementsByClass("KeySignature"):
        key = k if hasattr(k, "tonic") else k.asKey("major")
        mode = str(getattr(key, "mode", "major") or "major").lower()
        return key.tonic.pitchClass, mode if mode in MODES else "major"
    try:
        key = score.analyze("key")
        return key.tonic.pitchClass, key.mode if key.mode in MODES else "major"
    except Exception:  # analysis of odd streams fails in many ways; guess from the last note
        return (melody[-1][2] % 12 if melody else 0), "major"


def diatonic_triads(tonic: int, mode: str) -> list[tuple[int, tuple[int, ...]]]:
    """(root, pitch classes) of the seven triads of the mode (minor adds a major V)."""
    rot = MODES.get(mode, 0)
    steps = [(MAJOR[(rot + i) % 7] - MAJOR[rot]) % 12 for i in range(7)]
    triads = []
    for degree in range(7):
        pcs = tuple((tonic + steps[(degree + k) % 7]) % 12 for k in (0, 2, 4))
        triads.append((pcs[0], pcs))
    if mode in ("minor", "aeolian"):
        dominant = (tonic + 7) % 12
        triads.append((dominant, (dominant, (dominant + 4) % 12, (dominant + 7) % 12)))
    return triads


def infer_chords(melody: list[Note], bars: list[Bar], tonic: int, mode: str) -> list[Chord]:
    """One chord per bar: the diatonic triad that holds most of the bar's melody (weighted by
    duration, downbeats counting double); I, IV, V and the previous chord win near-ties and
    the last bar goes home to I."""
    triads = diatonic_triads(tonic, mode)
    prior = {0: 0.3, 3: 0.2, 4: 0.25, 7: 0.2}
    chords: list[Chord] = []
    previous = 0
    for n, bar in enumerate(bars):
        weight = np.zeros(12)
        for s, d, p, _ in melody:
            overlap = min(s + d, bar.end) - max(s, bar.start)
            if overlap > 0:
                on_beat = abs(((s - bar.start + bar.phase) / bar.beat) % 1) < 1e-6
                weight[p % 12] += overlap * (2.0 if on_beat else 1.0)
        if not weight.any():
            best = previous
        else:
            scale = weight.sum()
            score = [sum(weight[pc] for pc in pcs) / scale + prior.get(i, 0.0)
                     + (0.1 if i == previous else 0.0)
                     + (0.5 if i == 0 and n == len(bars) - 1 else 0.0)
                     for i, (_, pcs) in enumerate(triads)]
            best = int(np.argmax(score))
        chords.append((bar.start, triads[best][0], triads[best][1]))
        previous = best
    return chords


def chord_symbols(score) -> list[Chord]:
    out = []
    for cs in score.flatten().getElementsByClass("ChordSymbol"):
        try:
            pcs = tuple(sorted({p.pitchClass for p in cs.pitches}))
            root = cs.root().pitchClass
        except Exception:  # "N.C." and unknown figures
            continue
        if pcs:
            out.append((float(cs.offset), root, pcs))
    return sorted(out)


class Harmony:
    """The chord sounding at any time."""

    def __init__(self, chords: list[Chord]):
        self.chords = chords
        self.starts = [c[0] for c in chords]

    def at(self, t: float) -> Chord:
        i = bisect.bisect_right(self.starts, t + 1e-6) - 1
        return self.chords[max(i, 0)]


# -- accompaniment patterns ---------------------------------------------------------------------
def voiced(pcs: tuple[int, ...], low: int) -> list[int]:
    """The chord's pitch classes placed in the octave from MIDI note `low` up."""
    return sorted(low + ((pc - low) % 12) for pc in pcs)


def _hits(bar: Bar, subs: list[tuple[int, int]]) -> Iterator[tuple[float, float]]:
    """(time, room) of the (beat, subdivision) positions that fall inside the bar."""
    step = bar.beat / bar.division
    for beat, sub in subs:
        t = bar.start - bar.phase + beat * bar.beat + sub * step
        if bar.start - 1e-6 <= t < bar.end - 1e-6:
            yield t, bar.end - t


def _every(bar: Bar, subs_of_beat) -> list[tuple[int, int]]:
    return [(b, s) for b in range(bar.beats) for s in subs_of_beat]


def comp_notes(pattern: str, bars: list[Bar], harmony: Harmony, low: int, velocity: int,
               rng: np.random.Generator) -> list[Note]:
    """Chords for piano or guitar in one of PIANO_PATTERNS / GUITAR_PATTERNS."""
    notes: list[Note] = []
    for bar in bars:
        step = bar.beat / bar.division
        if pattern == "sustain":  # one chord a bar, re-struck at chord changes
            positions = [(0, 0)] + [(b, 0) for b in range(1, bar.beats)
                                    if harmony.at(bar.start - bar.phase + b * bar.beat)[0]
                                    != harmony.at(bar.start - bar.phase + (b - 1) * bar.beat)[0]]
        elif pattern in ("block", "strum"):
            positions = _every(bar, [0])
        elif pattern in ("oompah", "boomchick"):
            positions = _every(bar, [0])
        elif pattern == "offbeat":
            positions = [(0, 0)] + _every(bar, range(1, bar.division))
        else:  # arpeggio, picking: every subdivision
            positions = _every(bar, range(bar.division))
        for i, (t, room) in enumerate(_hits(bar, positions)):
            _, root, pcs = harmony.at(t)
            chord = voiced(pcs, low)
            accent = 8 if abs((t - bar.start + bar.phase) % (bar.beats * bar.beat)) < 1e-6 else 0
            vel = int(np.clip(velocity + accent + rng.integers(-5, 6), 1, 127))
            downbeat = abs(((t - bar.start + bar.phase) / bar.beat) % 1) < 1e-6
            beat_index = int(round((t - bar.start + bar.phase) / bar.beat))
            if pattern == "sustain":
                nxt = [b for b, _ in positions if b * bar.beat > t - bar.start + bar.phase + 1e-6]
                length = min(room, (nxt[0] * bar.beat - (t - bar.start + bar.phase)) if nxt
                             else room)
                notes += [(t, length * 0.98, p, vel) for p in chord]
            elif pattern in ("oompah", "boomchick") and (beat_index == 0 or (
                    bar.beats == 4 and beat_index == 2)):
                bass = low - 12 + (root - low) % 12
                notes.append((t, min(room, bar.beat) * 0.9, bass, vel))
            elif pattern == "offbeat" and downbeat and beat_index == 0:
                notes.append((t, min(room, step) * 0.9, low - 12 + (root - low) % 12, vel))
            elif pattern == "arpeggio":
                tones = chord + [chord[0] + 12]
                notes.append((t, min(room, step) * 0.95, tones[i % len(tones)], vel))
            elif pattern == "picking":
                if downbeat:  # thumb alternates root and fifth
                    bass = low - 12 + (root - low) % 12
                    notes.append((t, min(room, bar.beat) * 0.95,
                                  bass + (7 if beat_index % 2 else 0), vel))
                else:
                    upper = chord[1:] + [chord[0] + 12]
                    notes.append((t, min(room, step) * 0.9, upper[i % len(upper)], vel - 10))
            elif pattern == "strum":  # down on the beat, a lighter up-stroke before the next
                for k, p in enumerate(chord):
                    notes.append((t + 0.02 * k, min(room, bar.beat) * 0.9 - 0.02 * k, p, vel))
                up = t + step * (bar.division - 1)
                if up < bar.end - 1e-6:
                    for k, p in enumerate(reversed(chord)):
                        notes.append((up + 0.02 * k, step * 0.8, p, vel - 20))
            else:  # block, the chord beats of oompah / boomchick / offbeat
                length = step if pattern == "offbeat" else bar.beat
                notes += [(t, min(room, length) * 0.9, p, vel) for p in chord]
    return [n for n in notes if n[1] > 0]


def bass_notes(pattern: str, bars: list[Bar], harmony: Harmony, velocity: int,
               rng: np.random.Generator) -> list[Note]:
    """A bass line on the chord roots: root | root-fifth | beats | walk."""
    notes: list[Note] = []
    for bar in bars:
        if pattern == "root":
            positions = [(0, 0)] + [(b, 0) for b in range(1, bar.beats) if harmony.at(
                bar.start - bar.phase + b * bar.beat) != harmony.at(
                bar.start - bar.phase + (b - 1) * bar.beat)]
        elif pattern == "root-fifth":
            positions = [(0, 0)] + ([(bar.beats // 2, 0)] if bar.beats >= 2 else [])
        else:  # beats, walk
            positions = _every(bar, [0])
        hits = list(_hits(bar, positions))
        for i, (t, room) in enumerate(hits):
            _, root, pcs = harmony.at(t)
            base = 36 + (root - 36) % 12  # C2..B2
            beat_index = int(round((t - bar.start + bar.phase) / bar.beat))
            if pattern == "root-fifth" and beat_index:
                pitch = base + 7
            elif pattern == "walk":
                third = voiced(pcs, base)[1] if len(pcs) > 1 else base + 4
                pitch = [base, third, base + 7, base + 12][beat_index % 4]
            elif pattern == "beats" and beat_index == bar.beats - 1 and bar.beats >= 3:
                pitch = base + 7
            else:
                pitch = base
            length = (hits[i + 1][0] - t) if i + 1 < len(hits) else room
            vel = int(np.clip(velocity + (6 if beat_index == 0 else 0) + rng.integers(-4, 5),
                              1, 127))
            notes.append((t, length * 0.92, pitch, vel))
    return notes


KICK, SIDE_STICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, RIDE, TAMBOURINE = \
    36, 37, 38, 42, 46, 49, 51, 54


def drum_notes(pattern: str, bars: list[Bar], velocity: int,
               rng: np.random.Generator) -> list[Note]:
    """Kick, snare and cymbals from the meter: backbeat | light | shuffle."""
    notes: list[Note] = []
    first_full = next((i for i, b in enumerate(bars) if b.phase == 0), 0)
    for n, bar in enumerate(bars):
        step = bar.beat / bar.division
        for beat in range(bar.beats):
            for sub in range(bar.division):
                t = bar.start - bar.phase + beat * bar.beat + sub * step
                if not bar.start - 1e-6 <= t < bar.end - 1e-6:
                    continue
                jitter = int(rng.integers(-6, 7))
                hits = []
                if sub == 0:
                    kick = beat == 0 or (bar.beats == 4 and beat == 2)
                    back = (beat % 2 == 1) if bar.beats % 2 == 0 else beat > 0
                    if bar.compound:
                        kick, back = beat % 2 == 0, beat % 2 == 1
                    if kick:
                        hits.append((KICK, velocity))
                    if back:
                        hits.append((SIDE_STICK if pattern == "light" else SNARE, velocity - 12))
                    if n == first_full and beat == 0 and pattern != "light":
                        hits.append((CRASH, velocity - 10))
                cymbal = {"backbeat": CLOSED_HAT, "light": RIDE, "shuffle": CLOSED_HAT}[pattern]
                if pattern == "light" and sub:
                    cymbal = TAMBOURINE if bar.compound else 0
                if pattern == "shuffle" and sub == bar.division - 1 and beat == bar.beats - 1:
                    cymbal = OPEN_HAT
                if cymbal:
                    hits.append((cymbal, velocity - (25 if sub else 15)))
                notes += [(t, step * 0.9, key, int(np.clip(v + jitter, 1, 127)))
                          for key, v in hits]
    return notes


PIANO_PATTERNS = ("block", "sustain", "oompah", "offbeat")
GUITAR_PATTERNS = ("arpeggio", "strum", "boomchick", "picking")
BASS_PATTERNS = ("root", "root-fifth", "beats", "walk")
DRUM_PATTERNS = ("backbeat", "light", "shuffle")


# -- recipes -------------------------------------------------------------------------------
def melody_of(score) -> list[Note]:
    """The top line of the first part with notes (double stops keep their top note)."""
    for part in parts_of(score):
        notes = part_notes(part)
        if notes:
            top: dict[float, Note] = {}
            for n in notes:
                if n[0] not in top or n[2] > top[n[0]][2]:
                    top[n[0]] = n
            return sorted(top.values())
    raise ScoreError("no notes")


def into_range(notes: list[Note], low: int, high: int) -> list[Note]:
    """Shift a whole line by octaves so that most of it lies in [low, high]."""
    def outside(shift: int) -> int:
        return sum(not low <= p + shift <= high for _, _, p, _ in notes)
    best = min(range(-36, 37, 12), key=lambda s: (outside(s), abs(s)))
    return [(s, d, p + best, v) for s, d, p, v in notes]


def folk_band(score, rng: np.random.Generator, solo_piano: bool = False) -> Arrangement:
    melody = melody_of(score)
    length = max(s + d for s, d, _, _ in melody)
    bars = [b for b in bars_of(score, length) if b.start < length - 1e-6]
    chords, chord_source = chord_symbols(score), "symbols"
    if not chords:
        tonic, mode = key_of(score, melody)
        chords, chord_source = infer_chords(melody, bars, tonic, mode), "inferred"
    harmony = Harmony(chords)
    compound = bars[0].compound if bars else False
    tempo = tempo_of(score, 150.0 if compound else 108.0)
    title = title_of(score)
    bar_starts = [b.start for b in bars]
    pick = lambda options: str(rng.choice(options))  # noqa: E731
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


def piano_piece(score) -> Arrangement:
    """Every part of a keyboard work on the piano."""
    notes = [n for part in parts_of(score) for n in part_notes(part)]
    if not notes:
        raise ScoreError("no notes")
    length = max(s + d for s, d, _, _ in notes)
    bars = [b.start for b in bars_of(score, length)]
    return Arrangement({"piano": [Track(notes)]}, tempo_of(score, 100.0), title_of(score), bars)


def arrange(kind: str, score, recipe: str | None, rng: np.random.Generator) -> Arrangement:
    """Arrange a parsed score by its kind for a recipe."""
    solo = recipe == "solo-piano"
    if kind == "folk":
        return folk_band(score, rng, solo)
    if kind == "chorale":
        return chorale(score, solo)
    if kind == "piano":
        return piano_piece(score)
    raise KeyError(kind)
