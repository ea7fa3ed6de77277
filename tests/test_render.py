"""render: real scores from music21's corpus into exact stems with FluidSynth."""

import json
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from stemcodec.corpus import render
from stemcodec.corpus.arrangement import Arrangement, Track, cut, vary
from stemcodec.corpus.arrangers import folk_band
from stemcodec.corpus.band import Bar, Harmony, bass_notes, infer_chords
from stemcodec.corpus.instruments import slot_of_program
from stemcodec.corpus.recipes import folk_sources
from stemcodec.corpus.render import main
from stemcodec.corpus.scores import load_score

needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                      reason="needs Debian's fluidsynth")
FAST = ["--max-seconds", "8", "--min-seconds", "2", "--sample-rate", "16000"]


def read(path):
    return sf.read(path, dtype="float32")


def rms(x):
    return float(np.sqrt(np.mean(x ** 2)))


def pieces(out):
    return sorted(p for p in out.iterdir() if (p / "meta.json").is_file())


def meta_of(piece):
    return json.loads((piece / "meta.json").read_text())


def write_midi(path, parts, seconds=4.0):
    """parts: (program, name, is_drum, base pitch); a note every half second."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    for program, name, is_drum, base in parts:
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
        inst.notes = [pretty_midi.Note(velocity=90, pitch=base + (k % 4) * (0 if is_drum else 2),
                                       start=k * 0.5, end=k * 0.5 + 0.45)
                      for k in range(int(seconds * 2))]
        midi.instruments.append(inst)
    midi.write(str(path))
    return path


# -- arrangement (no sound) ---------------------------------------------------------------------
def test_slots_follow_gm_families_and_part_names():
    assert slot_of_program(0) == slot_of_program(7) == "piano"
    assert slot_of_program(25) == "guitar" and slot_of_program(33) == "bass"
    assert slot_of_program(40) == slot_of_program(73) == "other"
    assert slot_of_program(10, is_drum=True) == "drums"
    assert slot_of_program(52) == slot_of_program(0, name="Lead Vocal") == "vocals"
    assert slot_of_program(65, name="Alto Sax") == "other"
    assert slot_of_program(-1, name="Soprano") == "vocals"
    assert slot_of_program(-1, name="Piano (right hand)") == "piano"


def test_chords_are_inferred_bar_by_bar_from_melody_and_key():
    bars = [Bar(4.0 * i, 4.0 * (i + 1)) for i in range(4)]
    c, f, g = (60, 64, 67), (65, 69, 72), (67, 71, 74)
    melody = [(4.0 * i + k, 1.0, pitch, 90)
              for i, chord in enumerate([c, f, g, c]) for k, pitch in enumerate(chord + chord[:1])]
    chords = infer_chords(melody, bars, tonic=0, mode="major")
    assert [root for _, root, _ in chords] == [0, 5, 7, 0]
    bass = bass_notes("root", bars, Harmony(chords), 90, np.random.default_rng(0))
    assert [p % 12 for _, _, p, _ in bass] == [0, 5, 7, 0]


@pytest.mark.slow
def test_chord_symbols_win_over_inference():
    tune = next(s for s in folk_sources() if "nottingham" in s.path)
    arr = folk_band(load_score(tune), np.random.default_rng(0))
    assert arr.info["chords"] == "symbols"
    assert sorted(arr.parts) == ["bass", "drums", "guitar", "other", "piano"]
    first_bass = min(arr.parts["bass"][0].notes)
    assert first_bass[2] % 12 == 2  # the tune's first chord symbol is D


def test_variants_transpose_and_cut_ends_at_a_bar_line():
    arr = Arrangement({"piano": [Track([(float(i), 1.0, 60, 80) for i in range(16)])],
                       "drums": [Track([(0.0, 0.5, 36, 100)], is_drum=True)]},
                      tempo=120, bars=[0.0, 4.0, 8.0, 12.0])
    same, changes = vary(arr, 0, np.random.default_rng(0))
    assert same.parts == arr.parts and changes["transpose"] == 0
    varied, changes = vary(arr, 1, np.random.default_rng(3))
    shift = changes["transpose"]
    assert varied.parts["piano"][0].notes[0][2] == 60 + shift
    assert varied.parts["drums"][0].notes[0][2] == 36
    short = cut(arr, max_quarters=10.0, min_quarters=2.0)
    assert short.length() == 8.0


# -- rendering ----------------------------------------------------------------------------------
@pytest.mark.slow
@needs_fluidsynth
def test_chorale_renders_one_exact_stem_per_voice(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["bach/bwv66.6", "--recipe", "chorales", "--variants", "1", "--out", str(out),
                 *FAST]) == 0
    [piece] = pieces(out)
    meta = meta_of(piece)
    assert meta["slots"] == ["bass", "guitar", "other", "piano"]
    assert meta["source"] == "music21:bach/bwv66.6.mxl" and meta["recipe"] == "chorales"
    assert sorted(p.name for p in piece.iterdir()) == [  # each stem beside the MIDI it played
        "bass.mid", "bass.wav", "guitar.mid", "guitar.wav", "meta.json", "mix.wav", "other.mid",
        "other.wav", "piano.mid", "piano.wav"]
    stems = [read(piece / f"{s}.wav")[0] for s in meta["slots"]]
    mix, rate = read(piece / "mix.wav")
    assert rate == 16000 and mix.ndim == 1 and all(s.shape == mix.shape for s in stems)
    assert np.abs(sum(stems) - mix).max() < 1e-6
    assert np.abs(mix).max() <= 10 ** (-1 / 20) + 1e-6
    for stem in stems:  # the four voices sing through the whole (cut) chorale
        for second in range(int(meta["duration"]) - 2):
            chunk = stem[second * rate:(second + 1) * rate]
            assert np.sqrt(np.mean(chunk ** 2)) > 1e-3
    assert "rendered 1 pieces" in capsys.readouterr().out


@pytest.mark.slow
@needs_fluidsynth
def test_folk_tune_gets_the_band_and_seeds_decide_timbres(tmp_path):
    runs = {}
    for name, seed, jobs in (("a", 0, 1), ("b", 0, 2), ("c", 1, 1)):
        runs[name] = tmp_path / name
        assert main(["--recipe", "folk-band", "--limit", "1", "--variants", "2", "--seed",
                     str(seed), "--jobs", str(jobs), "--out", str(runs[name]), *FAST]) == 0
    found = pieces(runs["a"])
    assert len(found) == 2
    jobs = render.make_jobs(folk_sources()[:1], "folk-band", 2, seed=0)
    settings = render.Settings(runs["a"], Path("unused.sf2"), 16000, max_seconds=8,
                               min_seconds=2)
    for piece, job in zip(found, jobs):
        meta = meta_of(piece)
        assert meta["slots"] == ["bass", "drums", "guitar", "other", "piano"]
        stems = {s: read(piece / f"{s}.wav")[0] for s in meta["slots"]}
        assert np.abs(sum(stems.values()) - read(piece / "mix.wav")[0]).max() < 1e-6
        rate, plan = meta["sample_rate"], render.plan_piece(job, settings)
        assert job.piece_id == piece.name and meta["programs"] == {
            slot: pairs[0][1] for slot, pairs in plan.programs.items()}
        for slot, stem in stems.items():  # sound where the part plays, silence before it
            starts = [round(s * 60 / plan.arrangement.tempo * rate)
                      for t in plan.arrangement.parts[slot] for s, _, _, _ in t.notes]
            assert all(rms(stem[i:i + rate // 10]) > 1e-3 for i in starts), slot
            if min(starts) > rate // 10:  # the band waits for the melody's pickup
                assert rms(stem[:min(starts)]) < 1e-5, slot
        # the same seed gives the same audio, whatever --jobs
        for slot in [*meta["slots"], "mix"]:
            other = runs["b"] / piece.name / f"{slot}.wav"
            assert np.array_equal(read(piece / f"{slot}.wav")[0], read(other)[0])
    programs = {r: [meta_of(runs[r] / p.name)["programs"] for p in found] for r in "ac"}
    assert programs["a"] != programs["c"]  # another seed draws other timbres
    v0, v1 = (meta_of(p) for p in found)
    assert (v0["transpose"], v0["tempo_scale"]) == (0, 1.0)
    assert (v1["transpose"], v1["tempo_scale"]) != (0, 1.0)


@pytest.mark.slow
@needs_fluidsynth
def test_skip_renders_the_pieces_after_a_training_corpus(tmp_path, capsys):
    assert main(["--recipe", "folk-band", "--skip", "1", "--limit", "1", "--variants", "1",
                 "--out", str(tmp_path / "held-out"), *FAST]) == 0
    second = render.make_jobs(folk_sources()[1:2], "folk-band", 1, seed=0)[0].piece_id
    first = render.make_jobs(folk_sources()[:1], "folk-band", 1, seed=0)[0].piece_id
    assert [p.name for p in pieces(tmp_path / "held-out")] == [second] and second != first
    assert main(["--recipe", "folk-band", "--skip", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "--skip -1" in capsys.readouterr().err
    assert main(["--recipe", "chorales", "--skip", "100000", "--out", str(tmp_path / "y")]) == 2
    assert "there are only 349 pieces" in capsys.readouterr().err


@pytest.mark.slow
@needs_fluidsynth
def test_midi_keeps_its_programs_unless_reprogrammed(tmp_path):
    song = write_midi(tmp_path / "song.mid", [
        (0, "Piano", False, 60), (40, "Violin", False, 72), (73, "Flute", False, 79),
        (0, "Kit", True, 36), (0, "Lead Vocal", False, 64)])
    kept, drawn = tmp_path / "kept", tmp_path / "drawn"
    assert main([str(song), "--variants", "1", "--pcm16", "--out", str(kept), *FAST]) == 0
    assert main([str(song), "--variants", "1", "--reprogram", "--out", str(drawn), *FAST]) == 0
    [piece] = pieces(kept)
    meta = meta_of(piece)
    assert meta["slots"] == ["drums", "other", "piano", "vocals"]  # violin + flute: one stem
    assert meta["programs"]["other"] == [40, 73] and meta["programs"]["piano"] == 0
    assert meta["programs"]["vocals"] in (52, 53, 54)  # a piano program named "vocal"
    labels = meta["stem_instruments"]  # each stem's instrument, each part's own
    assert [(p["part"], p["program"], p["instrument"], p["from"]) for p in
            labels["other"]["parts"]] == [("Violin", 40, "violin", "midi"),
                                          ("Flute", 73, "flute", "midi")]
    assert (labels["piano"]["program"], labels["piano"]["from"]) == (0, "midi")
    assert (labels["drums"]["drum"], labels["drums"]["family"]) == (True, "drums")
    assert labels["vocals"]["from"] == "default"  # its own program is a piano's
    stems = [read(piece / f"{slot}.wav")[0] for slot in meta["slots"]]
    assert sf.info(piece / "piano.wav").subtype == "PCM_16"
    assert np.array_equal(np.sum(stems, axis=0, dtype=np.float32), read(piece / "mix.wav")[0])
    again = meta_of(pieces(drawn)[0])["programs"]
    assert again["piano"] in range(8) and again["drums"] in (0, 8, 16, 24, 25, 32, 40, 48)
    assert all(p // 8 in (5, 9) for p in ([again["other"]] if isinstance(again["other"], int)
                                          else again["other"]))
    drawn_labels = meta_of(pieces(drawn)[0])["stem_instruments"]
    assert all(p["from"] == "drawn" for s in drawn_labels.values() for p in s["parts"])


@pytest.mark.slow
@needs_fluidsynth
def test_bad_inputs_are_skipped_with_their_reason(tmp_path, capsys):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "broken.mid").write_bytes(b"MThd garbage")
    (bad / "nonsense.xml").write_text("<score-partwise><part>oops")
    write_midi(bad / "empty.mid", [])
    write_midi(bad / "drums_only.mid", [(0, "Kit", True, 36)])
    write_midi(bad / "tiny.mid", [(0, "Piano", False, 60)], seconds=1.0)
    write_midi(bad / "good.mid", [(0, "Piano", False, 60)])
    (tmp_path / "notes.txt").write_text("not music")
    out = tmp_path / "corpus"
    assert main([str(bad), "no/such-work", str(tmp_path / "notes.txt"), "--recipe",
                 "solo-piano", "--out", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("skipped")]
    expect = {"broken.mid": "not a readable MIDI", "nonsense.xml": "cannot parse",
              "empty.mid": "no notes", "drums_only.mid": "only drums",
              "tiny.mid": "too short", "notes.txt": "unsupported file type",
              "no/such-work": "not a file, folder, or music21 corpus name"}
    for name, reason in expect.items():
        hits = [ln for ln in lines if name in ln]
        assert len(hits) == 1 and reason in hits[0], (name, hits)  # once, not per variant
    assert [p.name for p in pieces(out)] == [f"solo-piano_in_good_v{v}" for v in range(3)]
    assert "rendered 3 pieces" in captured.out and "17 skipped" in captured.out


@pytest.mark.slow
@needs_fluidsynth
def test_interrupted_run_leaves_no_piece_and_rerun_finishes_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "corpus"
    args = ["--recipe", "chorales", "--limit", "1", "--variants", "1", "--out", str(out), *FAST]
    real_save = render.save_audio

    def dies_at_the_mix(path, *a, **kw):
        if path.name == "mix.wav":
            raise KeyboardInterrupt
        return real_save(path, *a, **kw)

    monkeypatch.setattr(render, "save_audio", dies_at_the_mix)
    assert main(args) == 130
    assert not [p for p in out.iterdir() if not p.name.startswith(".")]
    monkeypatch.undo()
    (out / ".killed_piece_v0.tmp").mkdir()  # what a killed (not interrupted) run leaves
    assert main(args) == 0
    [piece] = pieces(out)
    assert not (out / ".killed_piece_v0.tmp").exists()
    before = (piece / "mix.wav").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "rendered 0 pieces" in capsys.readouterr().out
    assert (piece / "mix.wav").stat().st_mtime_ns == before
    assert main([*args[:-1], "24000"]) == 2  # another rate into the same corpus
    assert "--overwrite" in capsys.readouterr().err


def test_missing_synth_or_soundfont_names_the_fix(tmp_path, capsys, monkeypatch):
    assert main(["--recipe", "chorales", "--out", str(tmp_path), "--soundfont",
                 str(tmp_path / "none.sf2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--soundfont" in err and "fluid-soundfont-gm" in err
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["--recipe", "chorales", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "fluidsynth" in err and "fluid-soundfont-gm" in err and "--soundfont" in err


def test_list_recipes_counts_pieces(capsys):
    assert main(["--list-recipes"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()
             if not ln.startswith("(")}
    assert set(lines) == {"folk-band", "chorales", "piano-literature", "solo-piano"}
    assert int(lines["folk-band"].split()[1]) > 10000
    assert int(lines["chorales"].split()[1]) > 300
    assert "slots: piano " in lines["solo-piano"]
    assert int(lines["piano-literature"].split()[1]) > 1000
