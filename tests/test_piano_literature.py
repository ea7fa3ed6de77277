"""piano-literature: the art music of music21's corpus on the piano, and solo-piano's turns."""

import json
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from stemcodec.corpus import recipes
from stemcodec.corpus.arrangement import ScoreError
from stemcodec.corpus.arrangers import arrange, piano_piece
from stemcodec.corpus.layout import piece_key
from stemcodec.corpus.recipes import (
    KEYBOARD_WORKS,
    MAX_PARTS,
    literature,
    piano_literature_sources,
    solo_piano_sources,
)
from stemcodec.corpus.render import main, make_jobs
from stemcodec.corpus.scores import Source, load_score

needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                      reason="needs Debian's fluidsynth")
FAST = ["--max-seconds", "6", "--min-seconds", "2", "--sample-rate", "16000"]


def rel(source: Source) -> str:
    return source.path.split("/music21/corpus/", 1)[1]


def composer(source: Source) -> str:
    return rel(source).split("/", 1)[0]


def score_in(meter: str | None, tempo: float | None = None, parts: int = 2):
    """A small score of `parts` parts, each a bar of quarter notes."""
    from music21 import meter as m21meter
    from music21 import note, stream
    from music21 import tempo as m21tempo
    score = stream.Score()
    for k in range(parts):
        part = stream.Part()
        measure = stream.Measure(number=1)
        if meter:
            measure.append(m21meter.TimeSignature(meter))
        if tempo and k == 0:
            measure.insert(0, m21tempo.MetronomeMark(number=tempo))
        for i in range(4):
            measure.append(note.Note(60 + 3 * k + i, quarterLength=1.0))
        part.append(measure)
        score.insert(0, part)
    return score


# -- which works, in which order (no sound) ----------------------------------------------------
def test_keyboard_works_come_first_then_composers_take_turns():
    sources = piano_literature_sources()
    assert len(sources) > 1000 and all(s.kind == "piano-literature" for s in sources)
    assert [rel(s) for s in sources[:len(KEYBOARD_WORKS)]] == list(KEYBOARD_WORKS)
    first = sources[:60]
    assert len({composer(s) for s in first}) >= 20  # not 60 Palestrina masses
    wanted = {"bach", "beethoven", "mozart", "haydn", "schubert", "schumann_robert",
              "schumann_clara", "joplin", "chopin", "palestrina", "monteverdi"}
    assert wanted <= {composer(s) for s in first}


def test_the_order_is_fixed_and_each_work_is_listed_once():
    sources = piano_literature_sources()
    literature.cache_clear()
    assert piano_literature_sources() == sources  # seeded, not drawn anew
    keys = [piece_key(s.name) for s in sources]
    assert len(set(keys)) == len(keys)
    names = {rel(s) for s in sources}
    # the corpus holds these twice (kern and MusicXML; one song under two names)
    assert "beethoven/opus18no1/movement3.mxl" in names
    assert "beethoven/opus18no1/movement3.krn" not in names
    assert ("schumann_robert/dichterliebe_no2.xml" in names) != (
        "schumann_robert/opus48no2.mxl" in names)


def test_works_too_big_or_too_thin_for_two_hands_are_left_out_and_counted():
    sources, left_out = literature()
    names = {rel(s) for s in sources}
    assert "beethoven/opus132.mxl" not in names  # a whole quartet, 19000 notes
    assert "liliuokalani/aloha_oe.mxl" not in names  # 7 parts
    assert not any(n.endswith(".rntxt") for n in names)  # analyses
    assert not any(n.split("/")[0] in recipes.NOT_LITERATURE for n in names)
    assert left_out[f"more than {MAX_PARTS} parts"] > 10
    assert left_out["analyses, not scores"] > 10 and left_out["the same work twice"] > 0


def test_solo_piano_takes_turns_literature_first():
    solo, lit = solo_piano_sources(), piano_literature_sources()
    assert [s.kind for s in solo[:8]] == ["piano-literature", "folk-band"] * 4
    assert list(solo[0:400:2]) == list(lit[:200])
    train = solo[:200]  # what `--limit 200` renders
    assert sum(s.kind == "piano-literature" for s in train) == 100


def test_held_out_pieces_are_never_training_pieces():
    solo = solo_piano_sources()
    train, held = solo[:200], solo[200:][:8]  # --limit 200 and --skip 200 --limit 8
    keys = {piece_key(j.piece_id) for j in make_jobs(train, "solo-piano", 1, seed=0)}
    held_keys = {piece_key(j.piece_id) for j in make_jobs(held, "solo-piano", 1, seed=0)}
    assert len(held_keys) == 8 and not keys & held_keys
    assert {s.kind for s in held} == {"piano-literature", "folk-band"}


# -- arranging -------------------------------------------------------------------------------
@pytest.mark.parametrize("meter, tempo", [("4/2", 144.0), ("3/2", 144.0), ("4/4", 100.0),
                                          ("6/8", 100.0), ("4/8", 80.0), (None, 100.0)])
def test_a_score_without_tempo_plays_at_its_meters_pace(meter, tempo):
    assert piano_piece(score_in(meter)).tempo == tempo


def test_a_tempo_mark_wins_over_the_default():
    assert piano_piece(score_in("4/2", tempo=90)).tempo == 90.0


def test_every_part_goes_on_the_piano_up_to_six():
    rng = np.random.default_rng(0)
    arr = arrange(score_in("4/4", parts=MAX_PARTS), "piano-literature", "solo-piano", rng)
    assert arr.slots() == ["piano"] and len(arr.parts["piano"][0].notes) == 4 * MAX_PARTS
    with pytest.raises(ScoreError, match="7 parts"):
        arrange(score_in("4/4", parts=7), "piano-literature", "piano-literature", rng)


def test_a_chanson_written_as_abc_tunes_plays_its_voices_together():
    source = next(s for s in piano_literature_sources() if "josquin/milleRegrets" in s.path)
    arr = piano_piece(load_score(source))
    assert arr.length() == pytest.approx(312.0)  # the voices side by side, not one after another
    assert arr.tempo == 144.0  # 2/2 without a tempo mark


# -- rendering (fluidsynth) --------------------------------------------------------------------
@needs_fluidsynth
def test_a_literature_piece_renders_one_piano_stem_with_its_midi(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["--recipe", "piano-literature", "--skip", "1", "--limit", "1",
                 "--variants", "1", "--out", str(out), *FAST]) == 0
    [piece] = [p for p in out.iterdir() if (p / "meta.json").is_file()]
    assert piece.name == "piano-literature_chopin_mazurka06-2_v0"
    meta = json.loads((piece / "meta.json").read_text())
    assert meta["slots"] == ["piano"] and 0 <= meta["programs"]["piano"] <= 7
    assert sorted(p.name for p in piece.iterdir()) == ["meta.json", "mix.wav", "piano.mid",
                                                       "piano.wav"]
    midi = pretty_midi.PrettyMIDI(str(piece / "piano.mid"))
    notes = [n for inst in midi.instruments for n in inst.notes]
    assert len(notes) > 20 and max(n.end for n in notes) <= meta["duration"]


@needs_fluidsynth
def test_a_tempo_less_score_renders_at_the_default_tempo(tmp_path):
    out = tmp_path / "corpus"
    assert main(["palestrina/Agnus_01", "--recipe", "piano-literature", "--variants", "1",
                 "--out", str(out), *FAST]) == 0
    [meta_path] = list(Path(out).glob("*/meta.json"))
    meta = json.loads(meta_path.read_text())
    assert meta["tempo"] == 144.0 and meta["slots"] == ["piano"]  # 4/2, no tempo mark
