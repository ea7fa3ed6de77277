"""render: real scores from music21's corpus into exact stems with FluidSynth."""

import json

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from stemcodec.corpus.render import main

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("fluidsynth") is None, reason="needs Debian's fluidsynth")

ARGS = ["--max-seconds", "8", "--sample-rate", "16000"]


def read(path):
    data, rate = sf.read(path, dtype="float32")
    return data, rate


def pieces(out):
    return sorted(p for p in out.iterdir() if (p / "meta.json").is_file())


def test_chorale_renders_one_exact_stem_per_voice(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["bach/bwv66.6", "--recipe", "chorales", "--out", str(out), *ARGS]) == 0
    [piece] = pieces(out)
    meta = json.loads((piece / "meta.json").read_text())
    assert sorted(meta["slots"]) == ["bass", "guitar", "other", "piano"]
    assert sorted(p.name for p in piece.glob("*.wav")) == [
        "bass.wav", "guitar.wav", "mix.wav", "other.wav", "piano.wav"]
    stems = [read(piece / f"{s}.wav")[0] for s in meta["slots"]]
    mix, rate = read(piece / "mix.wav")
    assert rate == 16000 and mix.ndim == 1
    assert np.abs(sum(stems) - mix).max() < 1e-5
    assert np.abs(mix).max() <= 10 ** (-1 / 20) + 1e-6
    for stem in stems:  # every voice sings through the first seconds
        for second in range(4):
            chunk = stem[second * rate:(second + 1) * rate]
            assert np.sqrt(np.mean(chunk ** 2)) > 1e-3
    assert "rendered 1 pieces" in capsys.readouterr().out


def test_folk_tune_gets_the_five_band_slots_and_seeds_decide_programs(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / name
        assert main(["--recipe", "folk-band", "--limit", "1", "--variants", "2", "--seed",
                     str(seed), "--out", str(out), *ARGS]) == 0
        runs[name] = out
    found = pieces(runs["a"])
    assert len(found) == 2
    for piece in found:
        meta = json.loads((piece / "meta.json").read_text())
        assert sorted(meta["slots"]) == ["bass", "drums", "guitar", "other", "piano"]
        for slot in meta["slots"]:
            data, _ = read(piece / f"{slot}.wav")
            assert np.sqrt(np.mean(data ** 2)) > 1e-3, slot
    piece = found[0].name
    same_a, same_b = read(runs["a"] / piece / "mix.wav")[0], read(runs["b"] / piece / "mix.wav")[0]
    assert np.array_equal(same_a, same_b)
    programs = [json.loads((runs[r] / p.name / "meta.json").read_text())["programs"]
                for r in ("a", "c") for p in found]
    assert programs[:2] != programs[2:]  # another seed draws other timbres
    v0, v1 = (json.loads((p / "meta.json").read_text()) for p in found)
    assert (v0["transpose"], v0["tempo_scale"]) == (0, 1.0)
    assert (v1["transpose"], v1["tempo_scale"]) != (0, 1.0)


def test_bad_inputs_are_skipped_with_their_reason(tmp_path, capsys):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "broken.mid").write_bytes(b"MThd garbage")
    (bad / "nonsense.xml").write_text("<score-partwise><part>oops")
    empty = pretty_midi.PrettyMIDI()
    empty.instruments.append(pretty_midi.Instrument(program=0))
    empty.write(str(bad / "empty.mid"))
    drums = pretty_midi.PrettyMIDI()
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    kit.notes = [pretty_midi.Note(velocity=100, pitch=36, start=i * 0.5, end=i * 0.5 + 0.1)
                 for i in range(16)]
    drums.instruments.append(kit)
    drums.write(str(bad / "drums_only.mid"))
    good = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=90, pitch=60 + i % 7, start=i * 0.5,
                                    end=i * 0.5 + 0.4) for i in range(12)]
    good.instruments.append(piano)
    good.write(str(bad / "good.mid"))
    out = tmp_path / "corpus"
    assert main([str(bad), "no/such-work", "--recipe", "solo-piano", "--out", str(out),
                 *ARGS]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("skipped")]
    expect = {"broken.mid": "not a readable MIDI", "nonsense.xml": "cannot parse",
              "empty.mid": "no notes", "drums_only.mid": "only drums",
              "no/such-work": "not a file, folder, or music21 corpus name"}
    for name, reason in expect.items():
        hits = [ln for ln in lines if name in ln]
        assert len(hits) == 1 and reason in hits[0], (name, hits)
    assert [p.name for p in pieces(out)] == ["in_good_v0"]


def test_rerun_skips_finished_pieces_and_clears_unfinished_ones(tmp_path, capsys):
    out = tmp_path / "corpus"
    args = ["--recipe", "chorales", "--limit", "1", "--out", str(out), *ARGS]
    assert main(args) == 0
    capsys.readouterr()
    (out / ".half_piece_v0.tmp").mkdir()  # what a killed run leaves behind
    before = (pieces(out)[0] / "mix.wav").stat().st_mtime_ns
    assert main(args) == 0
    assert "rendered 0 pieces" in capsys.readouterr().out
    assert not (out / ".half_piece_v0.tmp").exists()
    assert (pieces(out)[0] / "mix.wav").stat().st_mtime_ns == before


def test_missing_soundfont_names_the_fix(tmp_path, capsys):
    assert main(["--recipe", "chorales", "--out", str(tmp_path), "--soundfont",
                 str(tmp_path / "none.sf2")]) == 2
    assert "--soundfont" in capsys.readouterr().err


def test_notes_cut_at_max_seconds_still_end(tmp_path, capsys):
    """An organ note starting right at the cut used to lose its note-off and ring for ever."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=104)
    organ = pretty_midi.Instrument(program=19)  # church organ: sustains while held
    organ.notes = [pretty_midi.Note(velocity=90, pitch=60, start=0.0, end=3.0),
                   pretty_midi.Note(velocity=90, pitch=64, start=2.0, end=9.0),
                   pretty_midi.Note(velocity=90, pitch=67, start=3.9995, end=6.0)]
    midi.instruments.append(organ)
    midi.write(str(tmp_path / "organ.mid"))
    out = tmp_path / "corpus"
    assert main([str(tmp_path / "organ.mid"), "--out", str(out), "--max-seconds", "4",
                 "--sample-rate", "16000"]) == 0
    [piece] = pieces(out)
    assert json.loads((piece / "meta.json").read_text())["duration"] <= 5.0
