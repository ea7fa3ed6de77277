"""The recipe catalogue: which scores of music21's corpus each recipe renders, onto which slots.

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
a source's `kind` is the recipe it belongs to, so solo-piano's chorales are read as chorales.
scores.load_score parses one piece when it is rendered; arrangers.arrange puts it on slots.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .scores import Source

FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk",
                    "nottingham-dataset", "leadSheet")
# keyboard works in music21's corpus (checked by their parts): solo-piano's own repertoire
PIANO_WORKS = ("joplin/maple_leaf_rag.mxl", "chopin/mazurka06-2.krn",
               "mozart/k545/movement1_exposition.mxl", "schumann_clara/polonaise_op1n1.mxl",
               "schumann_clara/polonaise_op1n2.mxl", "schumann_clara/polonaise_op1n3.mxl",
               "schumann_clara/polonaise_op1n4.mxl", "cpebach/h186.mxl")


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


def piano_sources() -> tuple[Source, ...]:
    root = _corpus_root()
    return tuple(Source(str(root / p), 0, "solo-piano") for p in PIANO_WORKS if (root / p).is_file())


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
