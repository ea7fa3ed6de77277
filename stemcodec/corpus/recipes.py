"""The recipe catalogue: which scores of music21's corpus each recipe renders, onto which slots.

  folk-band         a folk tune (Essen, O'Neill, Ryan's Mammoth, Aird's airs, Northumbrian and
                    fife tunes, Nottingham, two lead sheets): melody -> other; chord comping ->
                    piano and guitar; a bass line on the chord roots; drums from the meter.
                    Chords come from the tune's chord symbols, else one per bar inferred from
                    the melody and the key. Comping, bass and drum patterns are drawn per piece
                    from a few per meter.
  chorales          a Bach four-part chorale (Riemenschneider's 371, 349 distinct files):
                    soprano -> other, alto -> piano, tenor -> guitar, bass -> bass.
  piano-literature  the corpus's art music on the piano, every part of a work together: its
                    keyboard works first, then works of at most six parts (quartets, madrigals,
                    masses, chorales, songs), the composers taking turns.
  solo-piano        piano alone: piano-literature and folk tunes with a left hand (melody,
                    chords, bass), taking turns, literature first.

A recipe lists its pieces as `Source`s without parsing them (`--list-recipes` is quick; the
literature is chosen by the part and note counts of music21's metadata cache); a source's
`kind` is the recipe it belongs to, so solo-piano's literature is read as literature.
scores.load_score parses one piece when it is rendered; arrangers.arrange puts it on slots.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from .scores import Source, Work, corpus_works

logger = logging.getLogger(__name__)
T = TypeVar("T")

FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk",
                    "nottingham-dataset", "leadSheet")
# keyboard works in music21's corpus (checked by their parts): the literature's first pieces
KEYBOARD_WORKS = ("joplin/maple_leaf_rag.mxl", "chopin/mazurka06-2.krn",
                  "mozart/k545/movement1_exposition.mxl", "schumann_clara/polonaise_op1n1.mxl",
                  "schumann_clara/polonaise_op1n2.mxl", "schumann_clara/polonaise_op1n3.mxl",
                  "schumann_clara/polonaise_op1n4.mxl", "cpebach/h186.mxl", "bach/bwv846.mxl",
                  "schoenberg/opus19/movement2.mxl", "schoenberg/opus19/movement6.mxl")
# folders of the corpus that are no literature: the folk collections, music21's test files
NOT_LITERATURE = (*FOLK_COLLECTIONS, "demos", "theoryExercises")
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn", ".abc")  # in the order one is kept
MIN_PARTS, MAX_PARTS = 2, 6  # a single line is no piano texture; more parts than hands can
MIN_NOTES, MAX_NOTES = 40, 8000  # fragments; whole quartets in one file (only 30 s is played)
ORDER_SEED = "piano-literature"  # the order of works within a composer, and of composers


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
                tunes.extend(Source(str(path), i, "folk-band") for i in range(1, count + 1))
            elif path.suffix in (".mxl", ".xml", ".musicxml"):
                tunes.append(Source(str(path), 0, "folk-band"))
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
                found.setdefault(name, Source(str(folder / name), 0, "chorales"))
                break
    return tuple(found.values())


@lru_cache(maxsize=1)
def literature() -> tuple[tuple[Source, ...], dict[str, int]]:
    """The piano-literature pieces and, per reason, the works of the corpus left out.

    Keyboard works first; then the other works, one composer (corpus folder) after another
    in turns, each composer's works in a seeded order: the first N pieces hear many
    composers. A work kept in two formats (kern and MusicXML) or in two files the metadata
    cannot tell apart (title, note and part counts, ambitus, key, meter) is kept once, so no
    work is both trained on and held out.
    """
    kept: dict[str, list[Work]] = {}
    keyboard: list[Work] = []
    left_out: dict[str, int] = {}
    seen: set = set()

    def leave(reason: str) -> None:
        left_out[reason] = left_out.get(reason, 0) + 1

    def rank(work: Work) -> tuple:  # a work's files: MusicXML before kern
        suffix = "." + work.rel.rsplit(".", 1)[-1]
        order = SCORE_SUFFIXES.index(suffix) if suffix in SCORE_SUFFIXES else len(SCORE_SUFFIXES)
        return work.rel.rsplit(".", 1)[0], order

    for work in sorted(corpus_works(), key=rank):
        folder, stem = work.rel.split("/", 1)[0], work.rel.rsplit(".", 1)[0]
        if folder in NOT_LITERATURE or "/" not in work.rel:
            continue
        if not work.rel.endswith(SCORE_SUFFIXES):
            leave("analyses, not scores")
            continue
        same = (folder, *work.fingerprint) if work.fingerprint else None
        if stem in seen or same in seen or stem.endswith(("_old", "_bak")):
            leave("the same work twice")
            continue
        seen.update({stem, same} - {None})
        if work.rel in KEYBOARD_WORKS:
            keyboard.append(work)
        elif work.parts is not None and work.parts < MIN_PARTS:
            leave(f"fewer than {MIN_PARTS} parts")
        elif work.parts is not None and work.parts > MAX_PARTS:
            leave(f"more than {MAX_PARTS} parts")
        elif work.notes is not None and work.notes < MIN_NOTES:
            leave(f"under {MIN_NOTES} notes")
        elif work.notes is not None and work.notes > MAX_NOTES:
            leave(f"over {MAX_NOTES} notes")
        else:
            kept.setdefault(folder, []).append(work)
    keyboard.sort(key=lambda w: KEYBOARD_WORKS.index(w.rel))
    composers = sorted(kept, key=_shuffled)
    turns = [sorted(kept[c], key=lambda w: _shuffled(w.rel)) for c in composers]
    works = keyboard + list(_interleave(turns))
    logger.debug("piano-literature: %d works of %d composers; left out %s", len(works),
                 len({w.rel.split("/")[0] for w in works}), left_out)
    return tuple(Source(w.path, 0, "piano-literature") for w in works), left_out


def piano_literature_sources() -> tuple[Source, ...]:
    return literature()[0]


def solo_piano_sources() -> tuple[Source, ...]:
    """Literature and folk tunes in turns, literature first."""
    return tuple(_interleave([list(piano_literature_sources()), list(folk_sources())]))


def _shuffled(name: str) -> str:
    """A seeded, stable order: a work's place does not move when the corpus gains others."""
    return hashlib.sha1(f"{ORDER_SEED}:{name}".encode()).hexdigest()


def _interleave(lists: list[list[T]]) -> Iterator[T]:
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
    "piano-literature": Recipe(("piano",), "the corpus's keyboard works, quartets, madrigals, "
                               "masses, chorales and songs on the piano", piano_literature_sources),
    "solo-piano": Recipe(("piano",), "piano literature and folk tunes on the piano alone",
                         solo_piano_sources),
}
