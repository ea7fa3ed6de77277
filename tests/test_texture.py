"""corpus.texture: notes per second, polyphony and pitch range from a corpus's <slot>.mid."""

import json

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from stemcodec.corpus.texture import Texture, main, polyphony


def write_piece(folder, notes, slot="piano", drums=()):
    """A piece folder as render writes it: <slot>.wav (silence will do) and <slot>.mid."""
    folder.mkdir(parents=True)
    sf.write(folder / f"{slot}.wav", np.zeros(1600, np.float32), 16000)
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for s, e, p in notes]
    midi.instruments.append(inst)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(velocity=90, pitch=36, start=s, end=s + 0.1) for s in drums]
        midi.instruments.append(kit)
    midi.write(str(folder / f"{slot}.mid"))


def test_a_chord_held_one_second_is_four_notes_per_second_at_polyphony_four():
    t = Texture()
    t.add([(0.0, 1.0, p) for p in (60, 64, 67, 72)])
    assert t.notes_per_second == pytest.approx(4.0)
    assert t.mean_polyphony == pytest.approx(4.0) and t.polyphony_percentile(0.95) == 4
    assert (t.lowest, t.highest, t.spans) == (60, 72, [12])


def test_a_scale_in_one_second_is_four_notes_per_second_at_polyphony_one():
    t = Texture()
    t.add([(k * 0.25, (k + 1) * 0.25, 60 + 2 * k) for k in range(4)])  # each ends as one starts
    assert t.notes_per_second == pytest.approx(4.0)
    assert t.mean_polyphony == pytest.approx(1.0) and t.polyphony_percentile(0.95) == 1


def test_polyphony_is_averaged_over_sounding_time_only():
    # A 0-2 s, B 1-2 s, a rest, C 3-4 s: 2 s at one note, 1 s at two, the rest left out
    notes = [(0.0, 2.0, 60), (1.0, 2.0, 64), (3.0, 4.0, 67)]
    assert polyphony(notes) == pytest.approx({1: 2.0, 2: 1.0})
    t = Texture()
    t.add(notes)
    assert t.mean_polyphony == pytest.approx(4 / 3)
    assert t.notes_per_second == pytest.approx(3 / 4)  # 3 notes in 4 s of music
    assert t.polyphony_percentile(0.95) == 2 and t.polyphony_percentile(0.5) == 1


def test_stems_add_up_by_time_not_by_stem():
    t = Texture()
    t.add([(0.0, 1.0, p) for p in (60, 64, 67, 72)])  # 1 s at 4
    t.add([(k * 1.0, k + 1.0, 48) for k in range(3)])  # 3 s at 1
    assert t.notes_per_second == pytest.approx(7 / 4)
    assert t.mean_polyphony == pytest.approx((4 * 1 + 1 * 3) / 4)
    assert t.figures()["mean_span"] == 6.0  # (12 + 0) / 2


def test_cli_prints_a_table_per_corpus_and_writes_json(tmp_path, capsys):
    chords, lines = tmp_path / "chords", tmp_path / "lines"
    write_piece(chords / "a", [(0.0, 1.0, p) for p in (48, 55, 64, 72)], drums=(0.0, 0.5))
    write_piece(chords / "b", [(0.0, 2.0, p) for p in (50, 57)])
    write_piece(lines / "a", [(k * 0.5, k * 0.5 + 0.5, 60 + k) for k in range(8)])
    out = tmp_path / "texture.json"
    assert main([str(chords), str(lines), "--json", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:5] == ["corpus", "stems", "minutes", "notes/s", "poly"]
    assert len(printed) == 3 and "C3-C5" in printed[1]
    figures = json.loads(out.read_text())
    assert figures[str(chords)]["notes"] == 6  # the drum hits are left out
    assert figures[str(chords)]["notes_per_second"] == pytest.approx(2.0)  # 6 notes in 3 s
    # 1 s at four notes, 2 s at two
    assert figures[str(chords)]["mean_polyphony"] == pytest.approx(8 / 3, abs=1e-3)
    assert figures[str(chords)]["p95_polyphony"] == 4
    assert figures[str(lines)]["notes_per_second"] == pytest.approx(2.0)
    assert figures[str(lines)]["mean_polyphony"] == pytest.approx(1.0)
    assert (figures[str(lines)]["lowest"], figures[str(lines)]["highest"]) == (60, 67)


def test_a_folder_without_pieces_or_midi_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    old = tmp_path / "old" / "piece"
    old.mkdir(parents=True)
    sf.write(old / "piano.wav", np.zeros(1600, np.float32), 16000)  # rendered without MIDI
    assert main([str(tmp_path / "old")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "<slot>.mid" in err
