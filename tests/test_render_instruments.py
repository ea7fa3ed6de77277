"""render: a user's score keeps its instruments, and meta.json says which (issue 16, part 6)."""

import json
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from music21 import corpus, instrument, note, stream

from stemcodec.corpus import render
from stemcodec.corpus.arrangement import Arrangement, Track
from stemcodec.corpus.inputs import score_arrangement
from stemcodec.corpus.instruments import (
    DEFAULT_PROGRAMS,
    FAMILIES,
    gm_group,
    program_name,
    program_of_name,
)
from stemcodec.corpus.render import main
from stemcodec.corpus.scores import Source, part_instrument

needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                      reason="needs Debian's fluidsynth")
FAST = ["--max-seconds", "8", "--min-seconds", "2", "--sample-rate", "16000", "--variants", "1"]
STRINGS = {40: "violin", 41: "viola", 42: "cello"}


def quartet_movement(ext: str) -> Path:
    """Beethoven's string quartet op. 18 no. 1, movement 2, from music21's corpus."""
    return Path(str(corpus.getWork(f"beethoven/opus18no1/movement2.{ext}")))


def kern_excerpt(out: Path, measures: int = 8) -> Path:
    """The kern file's first measures: names its parts (*Icello, *Ivioln), gives no program."""
    lines = quartet_movement("krn").read_text().splitlines()
    end = next(i for i, ln in enumerate(lines) if ln.startswith(f"={measures + 1}\t"))
    spines = lines[end].count("\t") + 1
    out.write_text("\n".join(lines[:end] + ["\t".join(["*-"] * spines)]) + "\n")
    return out


def musicxml_excerpt(out: Path, measures: int = 8) -> Path:
    """The MusicXML file's first measures: its parts carry <midi-program> (Finale's)."""
    with zipfile.ZipFile(quartet_movement("mxl")) as z:
        name = next(n for n in z.namelist() if not n.startswith("META-INF"))
        root = ET.fromstring(z.read(name))
    for part in root.iter("part"):
        for m in part.findall("measure"):
            if int(re.sub(r"\D", "", m.get("number", "0")) or 0) > measures:
                part.remove(m)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out


def meta_of(out: Path) -> list[dict]:
    return [json.loads((p / "meta.json").read_text()) for p in sorted(out.iterdir())
            if (p / "meta.json").is_file()]


def score_of(*parts: tuple[object, str | None]) -> stream.Score:
    """A score of (music21 instrument or None, part name) parts, a bar of notes each."""
    score = stream.Score()
    for k, (inst, name) in enumerate(parts):
        part = stream.Part()
        if name is not None:
            part.partName = name
        if inst is not None:
            part.insert(0, inst)
        part.append([note.Note(60 + k, quarterLength=1.0) for _ in range(4)])
        score.insert(0, part)
    return score


# -- which instrument a part has (no sound) ------------------------------------------------------
def test_score_parts_keep_their_program_else_their_instrument_name():
    score = score_of((instrument.Viola(), "Viola"),            # MusicXML: an instrument object
                     (None, "Violoncello"),                     # kern: only a name
                     (None, "Bass Guitar"),                     # music21 reads a guitar here
                     (None, "Contrabassoon"),                   # a bassoon, no bass
                     (None, "Melody"))                          # nothing known
    found = [part_instrument(p) for p in score.parts]
    assert found == [(41, "Viola", "score"), (42, "Violoncello", "name"),
                     (33, "Bass Guitar", "name"), (70, "Contrabassoon", "name"),
                     (None, "Melody", "")]
    arr = score_arrangement(score)
    assert {s: [(t.program, t.name) for t in ts] for s, ts in arr.parts.items()} == {
        "other": [(41, "Viola"), (42, "Violoncello"), (70, "Contrabassoon"), (None, "Melody")],
        "bass": [(33, "Bass Guitar")]}
    assert program_of_name("Vln. II") == 40 and program_of_name("Flauto 2") == 73
    assert program_of_name("") is None and program_of_name("P1") is None
    assert program_name(43) == "contrabass" and program_name(82) == "calliope lead"
    assert gm_group(41) == "strings" and gm_group(0, is_drum=True) == "drums"


def test_unknown_instruments_play_the_slot_default_and_say_so():
    arr = Arrangement({
        "other": [Track([(0.0, 4.0, 60, 90)], None, name="Melody"),
                  Track([(0.0, 1.0, 72, 90)], 73, name="Flute", origin="name")],
        "vocals": [Track([(0.0, 2.0, 64, 90)], 0, name="Lead Vocal", origin="midi")]})
    chosen = render.choose_programs(arr, None, False, np.random.default_rng(0))
    assert {s: [(t.origin, p) for t, p in pairs] for s, pairs in chosen.items()} == {
        "other": [("default", DEFAULT_PROGRAMS["other"]), ("name", 73)],
        "vocals": [("default", 52)]}  # a piano program on a part named a voice
    labels = render.stem_instruments(chosen)
    assert labels["other"]["program"] == DEFAULT_PROGRAMS["other"]  # it sounds longest
    assert labels["other"]["from"] == "default"
    assert labels["other"]["parts"][1] == {"part": "Flute", "program": 73,
                                           "instrument": "flute", "from": "name"}
    # --reprogram: today's draws (the slot's program for the unknown, a flute-family one)
    drawn = render.choose_programs(arr, None, True, np.random.default_rng(0))
    assert all(t.origin == "drawn" for pairs in drawn.values() for t, _ in pairs)
    assert all(p in FAMILIES[s] for s, pairs in drawn.items() for _, p in pairs)


# -- the quartet, rendered ------------------------------------------------------------------------
@pytest.mark.slow
@needs_fluidsynth
def test_beethoven_quartet_renders_on_its_strings(tmp_path):
    """Before: the kern movement rendered as one `other` stem on a calliope lead or a harp."""
    krn, xml = kern_excerpt(tmp_path / "op18no1_2.krn"), musicxml_excerpt(tmp_path / "op18.xml")
    out = tmp_path / "corpus"
    assert main([str(krn), str(xml), "--out", str(out), *FAST]) == 0
    metas = {Path(m["source"]).suffix: m for m in meta_of(out)}
    assert sorted(metas) == [".krn", ".xml"]
    for ext, origin in ((".krn", "name"), (".xml", "score")):
        meta = metas[ext]
        assert meta["slots"] == ["other"]  # four strings: one family, one stem
        label = meta["stem_instruments"]["other"]
        assert (label["program"], label["instrument"], label["family"]) == (40, "violin",
                                                                            "strings")
        parts = label["parts"]
        assert [p["program"] for p in parts] == [40, 40, 41, 42], meta["source"]
        assert all(STRINGS[p["program"]] == p["instrument"] and p["from"] == origin
                   for p in parts)
        assert meta["programs"]["other"] == [40, 41, 42]  # the older keys, as they were
        assert meta["instruments"]["other"] == ["violin", "viola", "cello"]
    assert [p["part"] for p in metas[".xml"]["stem_instruments"]["other"]["parts"]] == [
        "Violin I", "Violin II", "Viola", "Cello"]
    assert [p["part"] for p in metas[".krn"]["stem_instruments"]["other"]["parts"]] == [
        "Violin", "Violin", "Viola", "Violoncello"]


def test_reprogram_draws_the_quartets_programs_again(tmp_path):
    settings = render.Settings(tmp_path, Path("unused.sf2"), 16000, max_seconds=8,
                               min_seconds=2, reprogram=True)
    source = Source(str(kern_excerpt(tmp_path / "q.krn")))
    heard = set()
    for seed in range(6):
        [job] = render.make_jobs([source], None, 1, seed)
        [(slot, pairs)] = render.plan_piece(job, settings).programs.items()
        assert slot == "other" and all(t.origin == "drawn" for t, _ in pairs)
        assert len({p for _, p in pairs}) == 1  # one draw for the slot's family of strings
        heard.add(pairs[0][1])
    assert len(heard) > 1 and heard <= {p for p in FAMILIES["other"] if p // 8 == 5}


@needs_fluidsynth
def test_unreadable_score_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "quartet.musicxml"
    bad.write_text("<score-partwise><part-list><score-part id='P1'>")
    assert main([str(bad), "--out", str(tmp_path / "out"), *FAST]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in re.split(r"[\r\n]+", err) if "quartet.musicxml" in ln]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"skipped {bad}: cannot parse score")
