"""General MIDI program families per slot, and which slot a MIDI instrument or score part joins.

Programs are 0-based GM numbers (0 = Acoustic Grand Piano). Drum kits are presets of the
percussion bank (bank 128), chosen by a program change on MIDI channel 10.

Each piece draws one program per slot from the slot's family (seeded), so the corpus
varies timbre within a slot while one piece keeps one timbre per slot.
"""

from __future__ import annotations

import re

import numpy as np

# name of every program a family may draw; all of them exist in FluidR3_GM.sf2
FAMILIES: dict[str, dict[int, str]] = {
    "piano": {
        0: "acoustic grand piano", 1: "bright acoustic piano", 2: "electric grand piano",
        3: "honky-tonk piano", 4: "electric piano 1", 5: "electric piano 2", 6: "harpsichord",
        7: "clavinet",
    },
    "guitar": {
        24: "nylon guitar", 25: "steel guitar", 26: "jazz guitar", 27: "clean electric guitar",
        28: "muted electric guitar", 29: "overdriven guitar", 30: "distortion guitar",
    },
    "bass": {
        32: "acoustic bass", 33: "finger bass", 34: "pick bass", 35: "fretless bass",
        36: "slap bass 1", 37: "slap bass 2", 38: "synth bass 1", 39: "synth bass 2",
    },
    # melody instruments: strings, brass, reeds, pipes, synth leads, organs and mallets
    "other": {
        40: "violin", 41: "viola", 42: "cello", 44: "tremolo strings", 46: "harp",
        48: "string ensemble 1", 49: "string ensemble 2", 50: "synth strings 1",
        56: "trumpet", 57: "trombone", 59: "muted trumpet", 60: "french horn",
        61: "brass section", 62: "synth brass 1", 64: "soprano sax", 65: "alto sax",
        66: "tenor sax", 68: "oboe", 69: "english horn", 71: "clarinet", 72: "piccolo",
        73: "flute", 74: "recorder", 75: "pan flute", 78: "whistle", 79: "ocarina",
        80: "square lead", 81: "sawtooth lead", 82: "calliope lead", 16: "drawbar organ",
        19: "church organ", 21: "accordion", 22: "harmonica", 11: "vibraphone",
        12: "marimba", 110: "fiddle",
    },
    "vocals": {52: "choir aahs", 53: "voice oohs", 54: "synth voice"},
    "drums": {
        0: "standard kit", 8: "room kit", 16: "power kit", 24: "electronic kit",
        25: "TR-808 kit", 32: "jazz kit", 40: "brush kit", 48: "orchestra kit",
    },
}

VOICE_WORDS = ("voice", "vocal", "vox", "sing", "choir", "chorus", "lyric")
VOICE_TYPES = ("soprano", "mezzo", "alto", "tenor", "baritone")  # also names of saxes, flutes...
INSTRUMENT_WORDS = ("sax", "recorder", "flute", "clarinet", "horn", "trombone", "viol",
                    "guitar", "piano", "oboe", "bassoon", "trumpet")


NAME_WORDS = {
    "piano": ("piano", "keyboard", "harpsichord", "clavi"),
    "guitar": ("guitar",),
    "bass": ("bass guitar", "electric bass", "contrabass", "double bass", "string bass"),
}


def slot_of_program(program: int, is_drum: bool = False, name: str = "") -> str:
    """The slot of a GM program (0-based), a drum flag, or a part name.

    drum flag -> drums; 52-54 or a voice-like name -> vocals; 0-7 piano; 24-31 guitar;
    32-39 bass; any other program -> other. A negative program (unknown: a score part with
    no MIDI program) goes by words in the name, else other.
    """
    if is_drum:
        return "drums"
    lowered = name.lower()
    voice_type = any(w in lowered for w in VOICE_TYPES) and not any(
        w in lowered for w in INSTRUMENT_WORDS)
    if program in (52, 53, 54) or voice_type or any(w in lowered for w in VOICE_WORDS):
        return "vocals"
    if program < 0:  # no program given (a score part): go by the name
        for slot, words in NAME_WORDS.items():
            if any(w in lowered for w in words):
                return slot
        return "other"
    if 0 <= program <= 7:
        return "piano"
    if 24 <= program <= 31:
        return "guitar"
    if 32 <= program <= 39:
        return "bass"
    return "other"


def draw_program(slot: str, rng: np.random.Generator) -> int:
    """One program from the slot's family."""
    return int(rng.choice(sorted(FAMILIES[slot])))


def draw_like(program: int, is_drum: bool, rng: np.random.Generator) -> int:
    """A program of the same GM family of eight as `program` (same kind of instrument).

    Drums draw another kit. A family none of whose programs are listed keeps `program`.
    """
    if is_drum:
        return draw_program("drums", rng)
    listed = sorted(p for family in FAMILIES.values() if family is not FAMILIES["drums"]
                    for p in family if p // 8 == program // 8)
    return int(rng.choice(listed)) if listed else program


def program_name(program: int, is_drum: bool = False) -> str:
    """A readable name for meta.json: ours where a family lists the program (the names
    corpora already carry), else the General MIDI name."""
    if is_drum:
        return FAMILIES["drums"].get(program, f"drum kit {program}")
    for slot, family in FAMILIES.items():
        if slot != "drums" and program in family:
            return family[program]
    return GM_NAMES[program] if 0 <= program < 128 else f"program {program}"


def gm_group(program: int, is_drum: bool = False) -> str:
    """The General MIDI family of eight a program belongs to (`strings` for 40-47)."""
    return "drums" if is_drum else GM_GROUPS[min(127, max(0, program)) // 8]


# -- a user's score part: its instrument ------------------------------------------------------
# where a part names no program and nothing better is known, the slot plays this one (a fixed
# choice, so the stem's label says what it is; `string ensemble 1` sounds in every register)
DEFAULT_PROGRAMS = {"piano": 0, "guitar": 24, "bass": 32, "other": 48, "vocals": 52,
                    "drums": 0}

# names music21 reads wrongly or not at all (it takes "bass guitar" for a guitar, "double
# bass" for the bowed contrabass of the strings; a score's double bass plays the bass line)
NAME_PROGRAMS = (
    ("bass guitar", 33), ("electric bass", 33), ("fretless", 35), ("synth bass", 38),
    ("double bass", 32), ("contrabass", 32), ("string bass", 32), ("upright bass", 32),
    ("acoustic bass", 32),
)


def program_of_name(name: str) -> int | None:
    """The GM program (0-based) an instrument or part name stands for, or None.

    Our few NAME_PROGRAMS first, then music21's instrument names (many languages and
    abbreviations: "Violoncello", "Vln. I", "Flauto 2", "Clarinet in Bb").
    """
    lowered = name.strip().lower()
    if not lowered:
        return None
    for words, program in NAME_PROGRAMS:  # whole words: a contrabassoon is no bass
        if re.search(rf"\b{words}\b", lowered):
            return program
    from music21 import instrument
    try:
        found = instrument.fromString(name)
    except Exception:  # InstrumentException for names it does not know, others for odd text
        return None
    program = getattr(found, "midiProgram", None)
    return int(program) if program is not None and 0 <= program < 128 else None


GM_GROUPS = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings",
             "ensemble", "brass", "reed", "pipe", "synth lead", "synth pad", "synth effects",
             "ethnic", "percussive", "sound effects")

GM_NAMES = (
    "acoustic grand piano", "bright acoustic piano", "electric grand piano",
    "honky-tonk piano", "electric piano 1", "electric piano 2", "harpsichord", "clavinet",
    "celesta", "glockenspiel", "music box", "vibraphone", "marimba", "xylophone",
    "tubular bells", "dulcimer",
    "drawbar organ", "percussive organ", "rock organ", "church organ", "reed organ",
    "accordion", "harmonica", "tango accordion",
    "nylon guitar", "steel guitar", "jazz guitar", "clean electric guitar",
    "muted electric guitar", "overdriven guitar", "distortion guitar", "guitar harmonics",
    "acoustic bass", "finger bass", "pick bass", "fretless bass", "slap bass 1",
    "slap bass 2", "synth bass 1", "synth bass 2",
    "violin", "viola", "cello", "contrabass", "tremolo strings", "pizzicato strings",
    "harp", "timpani",
    "string ensemble 1", "string ensemble 2", "synth strings 1", "synth strings 2",
    "choir aahs", "voice oohs", "synth voice", "orchestra hit",
    "trumpet", "trombone", "tuba", "muted trumpet", "french horn", "brass section",
    "synth brass 1", "synth brass 2",
    "soprano sax", "alto sax", "tenor sax", "baritone sax", "oboe", "english horn",
    "bassoon", "clarinet",
    "piccolo", "flute", "recorder", "pan flute", "blown bottle", "shakuhachi", "whistle",
    "ocarina",
    "square lead", "sawtooth lead", "calliope lead", "chiff lead", "charang lead",
    "voice lead", "fifths lead", "bass and lead",
    "new age pad", "warm pad", "polysynth pad", "choir pad", "bowed pad", "metallic pad",
    "halo pad", "sweep pad",
    "rain", "soundtrack", "crystal", "atmosphere", "brightness", "goblins", "echoes",
    "sci-fi",
    "sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle bell", "agogo", "steel drums", "woodblock", "taiko drum", "melodic tom",
    "synth drum", "reverse cymbal",
    "guitar fret noise", "breath noise", "seashore", "bird tweet", "telephone ring",
    "helicopter", "applause", "gunshot",
)
assert len(GM_NAMES) == 128 and len(GM_GROUPS) == 16
