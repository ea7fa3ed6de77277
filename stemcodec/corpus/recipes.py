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

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .arrangement import Arrangement, Note, ScoreError, Track, playable_tempo
from .band import (
    BASS_PATTERNS,
    DRUM_PATTERNS,
    GUITAR_PATTERNS,
    MAJOR,
    MODES,
    PIANO_PATTERNS,
    Bar,
    Chord,
    Harmony,
    bass_notes,
    comp_notes,
    drum_notes,
    infer_chords,
)

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
        marker = "/music21/corpus/"
        if marker in self.path:  # composer/work/movement
            name = self.path.split(marker, 1)[1]
        else:
            name = f"{Path(self.path).parent.name}/{Path(self.path).name}"
        name = re.sub(r"\.(mxl|xml|musicxml|krn|abc|mei|mid|midi)$", "", name, flags=re.I)
        name = name.replace("/", "_")
        return f"{name}_{self.index:04d}" if self.index else name

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
    if meta is None:
        return ""
    return str(meta.title or meta.movementName or "")


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


# -- harmony from the score ------------------------------------------------------------
def key_of(score, melody: list[Note]) -> tuple[int, str]:
    """(tonic pitch class, mode): the key signature's, unless the melody leaves its scale
    (folk collections write A minor tunes under `K:A` with naturals) and the key music21
    finds in the notes fits them better."""
    found = []
    for k in score.recurse().getElementsByClass("KeySignature"):
        key = k if hasattr(k, "tonic") else k.asKey("major")
        mode = str(getattr(key, "mode", "major") or "major").lower()
        found.append((key.tonic.pitchClass, mode if mode in MODES else "major"))
        break
    if found and scale_fit(melody, *found[0]) >= 0.95:
        return found[0]
    try:
        key = score.analyze("key")
        found.append((key.tonic.pitchClass, key.mode if key.mode in MODES else "major"))
    except Exception:  # analysis of odd streams fails in many ways
        pass
    if not found:
        return (melody[-1][2] % 12 if melody else 0), "major"
    tonic, mode = max(found, key=lambda k: scale_fit(melody, *k))  # the signature wins ties
    final = melody[-1][2] % 12 if melody else tonic
    if mode == "major" and final == (tonic + 9) % 12:  # a tune ends on its tonic:
        return final, "minor"  # the relative minor
    if mode == "minor" and final == (tonic + 3) % 12:
        return final, "major"
    return tonic, mode


def scale_fit(melody: list[Note], tonic: int, mode: str) -> float:
    """Share of the melody's duration on the notes of the scale."""
    rot = MODES.get(mode, 0)
    scale = {(tonic + MAJOR[(rot + i) % 7] - MAJOR[rot]) % 12 for i in range(7)}
    total = sum(d for _, d, _, _ in melody) or 1.0
    return sum(d for _, d, p, _ in melody if p % 12 in scale) / total


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
