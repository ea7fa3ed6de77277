"""Instrument objects: the General MIDI programs and drum kits a slot's instrument can be.

A slot is a family (its stream: drums, bass, guitar, piano, other, vocals); its *object* is
the instrument playing in it for the whole piece (a nylon guitar, an electric piano). Object
ids are what the model embeds, names are what users type (`--instrument guitar=nylon-guitar`)
and what the token cache stores:

    id 0          unknown / none (separated songs, dropped labels): a learnt "none" row
    id 1 .. 128   GM programs 0 .. 127, kebab case: acoustic-grand-piano, nylon-guitar,
                  electric-piano-1 ... (corpus/instruments.py's GM_NAMES with dashes)
    id 129 ..     the GM/GS drum kits: standard-kit, room-kit, power-kit, electronic-kit,
                  tr-808-kit, jazz-kit, brush-kit, orchestra-kit, sfx-kit

The ids are fixed: new objects may only be appended (a checkpoint's embedding rows follow
them; ModelConfig.num_objects records how many it has).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .corpus.instruments import GM_NAMES, slot_of_program
from .errors import UserError

UNKNOWN = "unknown"  # the name of id 0
UNKNOWN_ID = 0

# GS drum-kit presets (bank 128) and their names; the first eight are what recipes draw
DRUM_KITS: dict[int, str] = {0: "standard kit", 8: "room kit", 16: "power kit",
                             24: "electronic kit", 25: "TR-808 kit", 32: "jazz kit",
                             40: "brush kit", 48: "orchestra kit", 56: "SFX kit"}


def kebab(name: str) -> str:
    """`electric piano 1` -> `electric-piano-1`, `TR-808 kit` -> `tr-808-kit`."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# (name, readable label, family) of ids 1, 2, ...
_ENTRIES: tuple[tuple[str, str, str], ...] = (
    *((kebab(n), n, slot_of_program(p)) for p, n in enumerate(GM_NAMES)),
    *((kebab(n), n, "drums") for n in DRUM_KITS.values()),
)
NAMES: tuple[str, ...] = (UNKNOWN, *(e[0] for e in _ENTRIES))  # index = object id
NUM_OBJECTS = len(NAMES)  # rows of the model's object embedding, "unknown" included
_IDS = {name: i for i, name in enumerate(NAMES)}
_LABELS = ("unknown", *(e[1] for e in _ENTRIES))
_FAMILIES = ("", *(e[2] for e in _ENTRIES))
_KIT_IDS = {program: 1 + len(GM_NAMES) + i for i, program in enumerate(DRUM_KITS)}
assert len(set(NAMES)) == NUM_OBJECTS


def object_id(name: str) -> int:
    """The id of a name (`unknown` and names of no object: 0)."""
    return _IDS.get(name, UNKNOWN_ID)


def object_name(index: int) -> str:
    return NAMES[index] if 0 <= index < NUM_OBJECTS else UNKNOWN


def object_label(name: str) -> str:
    """What a picture calls it: `nylon guitar`, `TR-808 kit`."""
    return _LABELS[object_id(name)]


def object_family(name: str) -> str | None:
    """The slot family an object plays in (`flute` -> other, `finger-bass` -> bass); None
    for `unknown` and names of no object."""
    return _FAMILIES[object_id(name)] or None


def program_object(program: int, drum: bool = False) -> str:
    """The object of a GM program (0-based) or, with `drum`, of a drum-kit preset; a kit
    that is not one of DRUM_KITS (and a program out of range) is `unknown`."""
    if drum:
        return NAMES[_KIT_IDS[program]] if program in _KIT_IDS else UNKNOWN
    return NAMES[1 + program] if 0 <= program < len(GM_NAMES) else UNKNOWN


def stem_objects(meta: Mapping, slots) -> dict[str, str]:
    """{slot: object name} from a rendered piece's meta.json (`stem_instruments`, the label
    of each stem); `unknown` for slots it does not label (and for a meta without the key)."""
    labels = meta.get("stem_instruments") if isinstance(meta, Mapping) else None
    out = {}
    for slot in slots:
        entry = labels.get(slot) if isinstance(labels, Mapping) else None
        name = UNKNOWN
        if isinstance(entry, Mapping) and isinstance(entry.get("program"), int):
            name = program_object(entry["program"], bool(entry.get("drum")))
        out[slot] = name
    return out


def by_family(families=None) -> dict[str, list[str]]:
    """{family: object names in id order}, for `--list-instruments` (all six families, or
    those of `families`)."""
    out: dict[str, list[str]] = {}
    for name, family in zip(NAMES[1:], _FAMILIES[1:]):
        if families is None or family in families:
            out.setdefault(family, []).append(name)
    order = ("drums", "bass", "guitar", "piano", "other", "vocals")
    return {f: out[f] for f in sorted(out, key=lambda f: order.index(f) if f in order else 99)}


def check_object(slot: str, name: str, option: str = "--instrument") -> str:
    """`name` if it is an object of `slot`'s family (any object for a slot that is no
    family); UserError in one line otherwise: an unknown name lists the family's valid
    ones, an object of another family says which family it belongs to."""
    family = object_family(name)
    families = by_family()
    valid = families.get(slot) or NAMES[1:]
    if family is None:
        raise UserError(f"{option} {slot}={name}: unknown instrument '{name}'; "
                        f"{slot + ' ' if slot in families else ''}instruments: "
                        f"{', '.join(valid)} (all: --list-instruments)")
    if slot in families and family != slot:
        raise UserError(f"{option} {slot}={name}: {name} is an instrument of the {family} "
                        f"family, not {slot}; {slot} instruments: {', '.join(valid)}")
    return name
