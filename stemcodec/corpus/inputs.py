"""User inputs: MIDI files, scores music21 reads, folders of them, music21 corpus names.

With no recipe, every MIDI instrument or score part joins a slot by its GM program or name
(instruments.slot_of_program); several parts of one slot merge into its stem, each keeping
its own program (and, from MIDI files, its controllers and pitch bends). A score part's program
is the score's own, else the one its instrument or part name stands for (kern and ABC files
name parts but give no programs: "Violoncello" is a cello); render gives a part of unknown
instrument its slot's default program. With a recipe the piece is arranged the recipe's way:
`solo-piano` and `piano-literature` put every pitched part on the piano, `folk-band` builds a
band around the top line of the first part, `chorales` wants four voices.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .arrangement import Arrangement, ScoreError, Track, playable_tempo
from .arrangers import PIANO_RECIPES, arrange
from .instruments import slot_of_program
from .scores import (
    Source,
    bars_of,
    load_score,
    part_instrument,
    part_notes,
    parts_of,
    tempo_of,
    title_of,
)

SCORE_EXTENSIONS = {".xml", ".musicxml", ".mxl", ".krn", ".abc", ".mei", ".mid", ".midi"}
MIDI_EXTENSIONS = {".mid", ".midi"}
KEPT_CONTROLLERS = set(range(1, 120)) - {32}  # all but bank select and channel-mode messages


def find_inputs(items: list[str], report: Callable[[str, str], None]) -> list[Source]:
    """Sources for the INPUT arguments, in the order given (folders sorted); multi-tune ABC
    files give one source per tune. Unusable arguments are reported and left out."""
    sources: list[Source] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in SCORE_EXTENSIONS
                           and not any(part.startswith(".") for part in p.parts))
        elif path.is_file():
            if path.suffix.lower() not in SCORE_EXTENSIONS:
                report(item, f"unsupported file type '{path.suffix or '(none)'}' (MIDI, "
                             "MusicXML, kern, ABC or MEI)")
                continue
            files = [path]
        else:
            files = _corpus_work(item)
            if not files:
                report(item, "not a file, folder, or music21 corpus name")
                continue
        for f in files:
            sources.extend(_sources_of(f))
    return sources


def _corpus_work(name: str) -> list[Path]:
    from music21 import corpus
    try:
        found = corpus.getWork(name)
    except Exception:  # music21 raises CorpusException and others for unknown names
        return []
    found = found if isinstance(found, list) else [found]
    return sorted(Path(str(p)) for p in found if p)


def _sources_of(path: Path) -> list[Source]:
    ext = path.suffix.lower()
    if ext in MIDI_EXTENSIONS:
        return [Source(str(path), 0, "midi")]
    if ext == ".abc":
        text = path.read_text(encoding="utf-8", errors="replace")
        count = len(re.findall(r"^X:", text, flags=re.M))
        if count > 1:
            return [Source(str(path), i, "score") for i in range(1, count + 1)]
    return [Source(str(path), 0, "score")]


def arrange_input(source: Source, recipe: str | None, rng: np.random.Generator) -> Arrangement:
    """Read one user input and arrange it (see the module docstring)."""
    if source.kind == "midi":
        midi = read_midi(source.path)
        if not any(i.notes for i in midi.instruments):
            raise ScoreError("no notes")
        if recipe is not None and not any(i.notes for i in midi.instruments if not i.is_drum):
            raise ScoreError("only drums, and the recipe needs pitched parts")
        if recipe in (None, *PIANO_RECIPES):
            return midi_arrangement(midi, Path(source.path).stem, solo_piano=recipe is not None)
    score = load_score(source)
    if recipe is not None:  # read the way the recipe reads its own pieces
        return arrange(score, recipe, recipe, rng)
    return score_arrangement(score)


def read_midi(path: str):
    import pretty_midi
    try:
        return pretty_midi.PrettyMIDI(path)
    except Exception as exc:  # mido and pretty_midi raise many kinds for a broken file
        raise ScoreError(f"not a readable MIDI file ({type(exc).__name__})") from None


def midi_arrangement(midi, title: str, solo_piano: bool = False) -> Arrangement:
    """A MIDI file's instruments onto slots by GM family; timing exact (seconds are turned
    into quarter notes at the first tempo, and rendered back at that tempo)."""
    _, tempi = midi.get_tempo_changes()
    tempo = float(tempi[0]) if len(tempi) else 120.0
    qps = tempo / 60.0  # quarter notes per second
    parts: dict[str, list[Track]] = {}
    for inst in midi.instruments:
        if not inst.notes or (solo_piano and inst.is_drum):
            continue
        slot = "piano" if solo_piano else slot_of_program(inst.program, inst.is_drum, inst.name)
        track = Track(
            notes=[(n.start * qps, (n.end - n.start) * qps, n.pitch, n.velocity)
                   for n in inst.notes if n.end > n.start],
            program=None if solo_piano else inst.program,
            is_drum=inst.is_drum,
            controls=[(c.time * qps, c.number, c.value) for c in inst.control_changes
                      if c.number in KEPT_CONTROLLERS],
            bends=[(b.time * qps, b.pitch) for b in inst.pitch_bends],
            name=inst.name.strip(),
            origin="" if solo_piano else "midi",
        )
        parts.setdefault(slot, []).append(track)
    if not parts:
        raise ScoreError("no notes")
    bars = [float(t) * qps for t in midi.get_downbeats()]
    return Arrangement(parts, playable_tempo(tempo, 20.0, 400.0), title, bars)


def score_arrangement(score) -> Arrangement:
    """A score's parts onto slots by their instrument's GM program or name; each part keeps
    that program (scores.part_instrument)."""
    parts: dict[str, list[Track]] = {}
    for part in parts_of(score):
        notes = part_notes(part)
        if not notes:
            continue
        inst = part.getInstrument(returnDefault=True)
        words = f"{inst.instrumentName or ''} {part.partName or ''}"
        program, name, origin = part_instrument(part)
        slot = slot_of_program(program if program is not None else -1, False, words)
        parts.setdefault(slot, []).append(Track(notes, program, name=name, origin=origin))
    if not parts:
        raise ScoreError("no notes")
    length = max(s + d for tracks in parts.values() for t in tracks for s, d, _, _ in t.notes)
    return Arrangement(parts, tempo_of(score, 100.0), title_of(score),
                       [b.start for b in bars_of(score, length)])
