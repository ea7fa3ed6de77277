"""prepare: stem folders, mixes and bad inputs into a resumable token cache."""

import json
import math

import numpy as np
import pytest
import soundfile as sf

from stemcodec.corpus import prepare as prepare_module
from stemcodec.corpus.cache import TokenCache
from stemcodec.corpus.prepare import main

HOP = 320  # the debug codec: 24 kHz, 75 frames/s, 4 codebooks of 1024


@pytest.fixture
def songs(tmp_path, write_tone):
    root = tmp_path / "songs"
    # a rendered-style stem folder: exact stems plus their mix
    write_tone(root / "piece1" / "drums.wav", 1.0, freq=100)
    write_tone(root / "piece1" / "bass.wav", 1.0, freq=55)
    write_tone(root / "piece1" / "mix.wav", 1.0, freq=80)
    (root / "piece1" / "meta.json").write_text("{}")
    # a stem folder with a silent stem and a stem of an instrument not in --slots
    write_tone(root / "piece2" / "piano.wav", 0.5, freq=440)
    sf.write(root / "piece2" / "guitar.wav", np.zeros((12000, 1), np.float32), 24000)
    # odd but valid files: separated as mixes
    write_tone(root / "odd" / "low_rate.wav", 0.4, rate=8000, subtype="PCM_16")
    write_tone(root / "odd" / "cd_stereo.flac", 0.4, rate=44100, channels=2)
    write_tone(root / "odd" / "surround.wav", 0.3, rate=48000, channels=6)
    clipped = np.clip(np.linspace(-3, 3, 12000, dtype=np.float32), -1, 1)[:, None]
    sf.write(root / "odd" / "clipped.wav", clipped, 24000)
    # bad inputs
    bad = root / "bad"
    bad.mkdir()
    (bad / "zero.wav").write_bytes(b"")
    (bad / "text.wav").write_text("not audio at all\n" * 50)
    sf.write(bad / "header_only.wav", np.zeros((0, 1), np.float32), 24000)
    good = write_tone(bad / "cut_source.wav", 0.5)
    (bad / "truncated.wav").write_bytes(good.read_bytes()[:-2000])
    good.unlink()
    nan = np.full((4800, 1), 0.1, np.float32)
    nan[100] = np.nan
    sf.write(bad / "nan.wav", nan, 24000, subtype="FLOAT")
    write_tone(bad / "tiny.wav", 0.005)  # 120 samples: less than one codec frame
    (bad / "notes.xyz").write_text("?")
    return root


def run(songs, out, *extra):
    return main([str(songs), "--out", str(out), "--codec", "debug", "--separator", "debug",
                 *extra])


def summary(capsys):
    captured = capsys.readouterr()
    return captured.out.strip().splitlines()[-1], captured.err


@pytest.mark.slow
def test_folder_of_songs_stems_and_bad_inputs(songs, tmp_path, capsys):
    out = tmp_path / "cache"
    assert run(songs, out, "--slots", "full") == 0
    line, err = summary(capsys)
    assert line.startswith("prepared 6 songs, 0 already cached, 7 skipped")
    reasons = {
        "zero.wav": "empty file", "text.wav": "not readable as audio",
        "header_only.wav": "no samples", "truncated.wav": "truncated",
        "nan.wav": "NaN", "tiny.wav": "too short", "notes.xyz": "unsupported extension",
    }
    for name, reason in reasons.items():
        lines = [ln for ln in err.splitlines() if ln.startswith("skipped") and name in ln]
        assert len(lines) == 1 and reason in lines[0], (name, lines)

    cache = TokenCache(out)
    assert cache.slots == ["drums", "bass", "other", "vocals", "guitar", "piano"]
    assert cache.codec["num_codebooks"] == 4 and "debug" in cache.codec_id
    by_source = {e.source: e for e in cache.songs.values()}
    assert set(by_source) == {"piece1", "piece2", "odd/low_rate.wav", "odd/cd_stereo.flac",
                              "odd/surround.wav", "odd/clipped.wav"}
    piece1 = by_source["piece1"]
    assert piece1.kind == "stems" and piece1.separator is None
    assert piece1.present == [True, True, False, False, False, False]
    codes = cache.codes(piece1.id)
    assert codes.shape == (6, 4, math.ceil(24000 / HOP))
    assert codes.min() >= 0 and codes.max() < 1024
    assert cache.mix_codes(piece1.id).shape == (1, 4, codes.shape[-1])
    piece2 = by_source["piece2"]
    assert piece2.present == [False, False, False, False, True, True]
    assert piece2.silent == [False, False, False, False, True, False]
    surround = by_source["odd/surround.wav"]
    assert surround.kind == "mix" and surround.separator == "debug"
    assert surround.frames == math.ceil(0.3 * 24000 / HOP)
    # six-stem separator: every slot present
    assert all(surround.present)


@pytest.mark.slow
def test_rerun_redoes_only_unfinished_or_changed_songs(songs, tmp_path, capsys, write_tone):
    out = tmp_path / "cache"
    run(songs, out)
    summary(capsys)
    before = json.loads((out / "manifest.json").read_text())["songs"]
    # a crash after piece1's shard but before its entry: the entry is what marks it done
    (out / "songs" / f"{before[_id(before, 'piece1')]['id']}.json").unlink()
    # a changed file is redone; a touched but unchanged file is not
    write_tone(songs / "piece2" / "piano.wav", 0.5, freq=330)
    clipped = songs / "odd" / "clipped.wav"
    clipped.write_bytes(clipped.read_bytes())
    assert run(songs, out) == 0
    line, _ = summary(capsys)
    assert line.startswith("prepared 2 songs, 4 already cached, 7 skipped")
    after = TokenCache(out).songs
    assert set(after) == set(before)


@pytest.mark.slow
def test_rerun_without_no_mix_adds_the_mixes_a_mix_baseline_needs(songs, tmp_path, capsys):
    """Regression: the cache-hit test ignored a missing mix shard, so after `--no-mix` a
    plain rerun kept every song mix-less and a `mode: mix` dataset silently had none."""
    from stemcodec.corpus.dataset import DataConfig, WindowDataset
    out = tmp_path / "cache"
    assert run(songs, out, "--no-mix") == 0
    summary(capsys)
    assert all(TokenCache(out).mix_codes(s) is None for s in TokenCache(out).songs)
    assert run(songs, out) == 0
    line, _ = summary(capsys)
    assert line.startswith("prepared 6 songs, 0 already cached")
    cache = TokenCache(out)
    assert all(cache.mix_codes(s).shape[-1] == e.frames for s, e in cache.songs.items())
    cfg = DataConfig(window=4, valid_fraction=0.0)
    assert len(WindowDataset(cache, cache.slots, cfg, "train", mode="mix").songs) == 6
    # and the other way round: a --no-mix rerun keeps what is there
    assert run(songs, out, "--no-mix") == 0
    line, _ = summary(capsys)
    assert line.startswith("prepared 0 songs, 6 already cached")
    assert all(TokenCache(out).mix_codes(s) is not None for s in TokenCache(out).songs)


@pytest.mark.slow
def test_interrupted_run_resumes_where_it_stopped(songs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cache"
    real = prepare_module.Preparer.process

    def interrupt_at_third_good_song(self, song, root):
        if song.source.name == "low_rate.wav":  # after cd_stereo.flac and clipped.wav
            raise KeyboardInterrupt
        return real(self, song, root)

    monkeypatch.setattr(prepare_module.Preparer, "process", interrupt_at_third_good_song)
    assert run(songs, out) == 130
    capsys.readouterr()
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(prepare_module.Preparer, "process", real)
    assert run(songs, out) == 0
    line, _ = summary(capsys)
    assert line.startswith("prepared 4 songs, 2 already cached")


@pytest.mark.slow
def test_cache_of_another_codec_is_refused(songs, tmp_path, capsys):
    out = tmp_path / "cache"
    run(songs, out)
    capsys.readouterr()
    info = json.loads((out / "cache.json").read_text())
    info["codec"]["id"] = "encodec_24khz-6kbps-24000hz-0123456789ab"
    (out / "cache.json").write_text(json.dumps(info))
    assert run(songs, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "holds tokens of codec encodec_24khz" in err
    assert len(err.splitlines()) == 1


def test_solo_instrument_folder_needs_no_separation(tmp_path, capsys, write_tone):
    root = tmp_path / "piano_recordings"
    for i in range(3):
        write_tone(root / f"take{i}.flac", 0.5, freq=200 + 100 * i)
    out = tmp_path / "cache"
    assert main([str(root), "--out", str(out), "--codec", "debug", "--instrument", "piano",
                 "--separator", "no-such-model"]) == 0
    cache = TokenCache(out)
    assert cache.slots == ["piano"]
    assert [e.kind for e in cache.songs.values()] == ["single"] * 3
    assert all(cache.codes(s).shape[:2] == (1, 4) for s in cache.songs)


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "c"), "--codec", "debug"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path), "--out", str(tmp_path / "c"), "--codec", "debug",
                 "--slots", "kazoo"]) == 2
    assert "unknown instrument or preset 'kazoo'" in capsys.readouterr().err


def _id(entries, source):
    return next(k for k, e in entries.items() if e["source"] == source)


def test_a_name_that_is_not_utf8_is_one_song_and_files_are_readable_by_others(tmp_path,
                                                                               write_tone):
    """`caf\\xe9.ogg` (Latin-1 bytes, not UTF-8) stopped prepare with a traceback; now it is
    a song like any other, and the cache's files are 0644 (the umask's), not mkstemp's 0600."""
    import os
    import stat
    root = tmp_path / "songs"
    write_tone(root / "plain.wav", 0.5)
    os.rename(write_tone(root / "tmp.wav", 0.5), os.fsencode(root) + b"/caf\xe9.wav")
    old = os.umask(0o022)
    try:
        assert main([str(root), "--out", str(tmp_path / "cache"), "--codec", "debug",
                     "--separator", "debug"]) == 0
    finally:
        os.umask(old)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert len(manifest["songs"]) == 2
    assert any("caf" in s["source"] for s in manifest["songs"].values())
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
