"""Reading scores with music21: where a piece is (`Source`), what music21's corpus holds
(`corpus_works`, from its metadata cache), parsing it, and what the arrangers need from it:
parts and their notes, tempo, title, bars, key and chords.

music21 is imported only when a score is parsed or the corpus listed, so importing stays quick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .arrangement import Note, ScoreError, playable_tempo
from .band import MAJOR, MODES, Bar, Chord
from .instruments import program_of_name


@dataclass(frozen=True)
class Source:
    """One piece: a file and, for multi-tune ABC files, the tune's number (1-based)."""

    path: str
    index: int = 0
    # the recipe whose own piece it is (folk-band | chorales | piano-literature: how it is
    # read), or score | midi for a user input
    kind: str = "score"

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


@dataclass(frozen=True)
class Work:
    """A score of music21's corpus as its metadata cache describes it (nothing parsed);
    `parts` and `notes` are None where the cache does not know the file."""

    path: str  # absolute
    rel: str  # under the corpus root: composer/work[/movement].ext
    parts: int | None
    notes: int | None
    # what two files of one work share in the cache (title, counts, ambitus, key, meter):
    # the corpus holds some works twice; empty where unknown
    fingerprint: tuple = ()


def corpus_works() -> list[Work]:
    """Every file of music21's core corpus, sorted by path, with the part and note counts of
    its metadata cache. An ABC file of several numbered tunes counts them as its parts (in
    the corpus's literature those are the voices of one chanson, Josquin's; folk collections
    are listed tune by tune elsewhere). Without a cache, the files with unknown counts."""
    from music21 import common, corpus
    root = Path(common.getCorpusFilePath())
    whole: dict[str, Work] = {}
    tunes: dict[str, list] = {}
    # bundle[:] is one list; iterating the bundle indexes it entry by entry, O(n^2)
    for entry in corpus.corpora.CoreCorpus().metadataBundle[:]:
        rel, meta = Path(entry.sourcePath).as_posix(), entry.metadata
        if meta is None:
            continue
        if entry.number is not None:
            tunes.setdefault(rel, []).append(meta)
            continue
        fingerprint = tuple(str(x) for x in (
            meta.title or meta.movementName, meta.noteCount, meta.numberOfParts,
            meta.pitchLowest, meta.pitchHighest, meta.keySignatureFirst,
            meta.timeSignatureFirst))
        whole[rel] = Work(str(root / rel), rel, meta.numberOfParts, meta.noteCount, fingerprint)
    for rel, metas in tunes.items():
        if rel not in whole:
            whole[rel] = Work(str(root / rel), rel, sum(m.numberOfParts or 1 for m in metas),
                              sum(m.noteCount or 0 for m in metas))
    if not whole:  # no metadata cache: the files, counts unknown
        for path in corpus.corpora.CoreCorpus().getPaths():
            rel = Path(path).relative_to(root).as_posix()
            whole[rel] = Work(str(path), rel, None, None)
    return sorted(whole.values(), key=lambda w: w.rel)


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


def part_instrument(part) -> tuple[int | None, str, str]:
    """(GM program or None, the part's name, where the program came from) of a score part.

    The score's own MIDI program where it gives one (MusicXML `<midi-program>`: "score"),
    else the program its instrument or part name stands for ("Violoncello" -> 42: "name"),
    else None: kern and ABC files name their parts but give no programs.
    """
    inst = part.getInstrument(returnDefault=True)
    names = [str(n) for n in (part.partName, getattr(inst, "instrumentName", None),
                              getattr(inst, "partName", None),
                              getattr(inst, "instrumentAbbreviation", None),
                              getattr(inst, "partAbbreviation", None)) if n]
    label = names[0] if names else ""
    program = getattr(inst, "midiProgram", None)
    if program is not None and 0 <= program < 128:
        return int(program), label, "score"
    for name in names:
        found = program_of_name(name)
        if found is not None:
            return found, label, "name"
    return None, label, ""


def tempo_of(score, default: float) -> float:
    """The first metronome mark's quarter notes per minute (folded into 60-200), else
    `default`."""
    for mark in score.flatten().getElementsByClass("MetronomeMark"):
        bpm = mark.getQuarterBPM()
        if bpm:
            return playable_tempo(float(bpm))
    return default


def default_tempo(score) -> float:
    """Quarter notes per minute for a score without a tempo mark, from its meter's beat:
    a half note or longer (4/2, 3/2, 2/2: early music's tactus) 72 per half, so quarters at
    144; a quarter or dotted quarter (4/4, 3/4, 6/8) 100; an eighth (2/8, 4/8) 160 per
    eighth, quarters at 80. Renaissance polyphony at quarter = 100 would crawl."""
    found = score.recurse().getElementsByClass("TimeSignature")
    _, beat, _ = meter(found[0] if found else None)
    return 144.0 if beat >= 2 else 100.0 if beat >= 1 else 80.0


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
