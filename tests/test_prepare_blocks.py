"""prepare in blocks: the tokens in the cache are the tokens of the whole-file path (the file
decoded whole, resampled whole, separated whole, encoded by Codec.encode), exactly, with
every block boundary (decoder, resampler, separator, codec chunks) falling inside the song."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import stemcodec.codec
from stemcodec.audio import conform, read_file, resample, to_channels
from stemcodec.blocks import resample as resample_module
from stemcodec.blocks import separate as separate_module
from stemcodec.codec import load_codec
from stemcodec.corpus.encode_song import encode_song
from stemcodec.corpus.prepare import main

SLOTS = ["drums", "bass", "other", "vocals", "guitar", "piano"]


def small_chunks(codec):
    codec.chunk_frames, codec.context_frames = 75, 10  # a codec chunk a second, not 20
    return codec


@pytest.fixture
def blocks_everywhere(monkeypatch):
    """Codec chunks of a second and odd resampler and separator steps, so a few seconds of
    audio cross every kind of block boundary many times."""
    real = stemcodec.codec.load_codec
    monkeypatch.setattr(stemcodec.codec, "load_codec",
                        lambda *a, **k: small_chunks(real(*a, **k)))
    monkeypatch.setattr(resample_module, "STEP", 7001)
    monkeypatch.setattr(separate_module, "STEP", 5003)


def song_file(path, seconds, rate, channels, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.05 * rng.standard_normal(len(t))
         for c in range(channels)]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack(x, axis=1).astype(np.float32), rate)
    return path


def cached(out):
    [entry] = json.loads((out / "manifest.json").read_text())["songs"].values()
    return entry, np.load(out / entry["shard"]), np.load(out / entry["mix_shard"])


def fit(wav, length):
    return torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))[..., :length]


def test_solo_files_in_blocks_have_the_whole_file_tokens(tmp_path, blocks_everywhere):
    path = song_file(tmp_path / "songs" / "take.flac", 4.3, 44100, 2)
    out = tmp_path / "cache"
    assert main([str(path.parent), "--out", str(out), "--codec", "debug",
                 "--instrument", "piano"]) == 0
    entry, codes, mix = cached(out)
    codec = small_chunks(load_codec("debug"))
    wav, _ = conform(read_file(path), codec.sample_rate, codec.channels)
    whole = codec.encode(wav[None]).numpy()
    assert codes.shape == whole.shape and entry["frames"] == whole.shape[-1]
    assert np.array_equal(codes, whole) and np.array_equal(mix, whole)


def test_a_stem_folder_in_blocks_has_the_whole_file_tokens(tmp_path, blocks_everywhere):
    """Stems at other rates and lengths, fitted to the longest; the mix is their sum."""
    folder = tmp_path / "songs" / "piece"
    song_file(folder / "drums.wav", 2.0, 24000, 1, seed=1)
    song_file(folder / "bass.flac", 3.1, 44100, 2, seed=2)
    song_file(folder / "piano.ogg", 2.7, 48000, 1, seed=3)
    out = tmp_path / "cache"
    assert main([str(folder.parent), "--out", str(out), "--codec", "debug"]) == 0
    entry, codes, mix = cached(out)
    codec = small_chunks(load_codec("debug"))
    stems = {name: conform(read_file(next(folder.glob(f"{name}.*"))), codec.sample_rate,
                           codec.channels)[0] for name in ("bass", "drums", "piano")}
    length = max(w.shape[-1] for w in stems.values())
    names = [n for n in SLOTS if n in stems]
    whole = codec.encode(torch.stack([fit(stems[n], length) for n in names])).numpy()
    whole_mix = codec.encode(sum(fit(w, length) for w in stems.values())[None]).numpy()
    assert entry["present"] == [n in stems for n in SLOTS]
    assert np.array_equal(codes[[SLOTS.index(n) for n in names]], whole)
    assert not codes[[SLOTS.index(n) for n in SLOTS if n not in stems]].any()
    assert np.array_equal(mix, whole_mix)


@pytest.mark.slow
def test_a_separated_song_in_blocks_has_the_whole_file_tokens(tmp_path, blocks_everywhere):
    """An OGG at 48 kHz through the debug separator (44.1 kHz, 2 s segments) into the 24 kHz
    codec: the same tokens, for every stem and the mix, as separating the whole file."""
    from stemcodec.separate import load_separator
    torch.set_num_threads(1)
    path = song_file(tmp_path / "songs" / "song.ogg", 5.3, 48000, 2)
    out = tmp_path / "cache"
    assert main([str(path.parent), "--out", str(out), "--codec", "debug",
                 "--separator", "debug"]) == 0
    entry, codes, mix = cached(out)
    codec, sep = small_chunks(load_codec("debug")), load_separator("debug")
    wav, _ = conform(read_file(path), sep.sample_rate, sep.channels)
    sources = sep.separate(wav)

    def at_codec(w):
        return to_channels(resample(w, sep.sample_rate, codec.sample_rate), codec.channels)

    whole = codec.encode(torch.stack([at_codec(sources[n]) for n in SLOTS])).numpy()
    assert codes.shape == whole.shape and all(entry["present"])
    assert np.array_equal(codes, whole)
    assert np.array_equal(mix, codec.encode(at_codec(wav)[None]).numpy())


def test_progress_inside_a_song_counts_its_seconds(tmp_path):
    path = song_file(tmp_path / "take.wav", 3.5, 24000, 1)
    told = []
    codec = small_chunks(load_codec("debug"))
    done = encode_song("single", {"piano": path}, tmp_path / "a.npy", tmp_path / "a.mix.npy",
                       codec, ["piano"], None, lambda s, total: told.append((s, total)))
    assert len(told) == 4  # a codec chunk (here a second) at a time
    assert [t for _, t in told] == [3.5] * 4 and [s for s, _ in told] == sorted(
        s for s, _ in told)
    assert told[-1][0] == pytest.approx(3.5) and done.seconds == pytest.approx(3.5)


def test_a_codec_that_needs_each_stems_level_first_gets_it_from_the_spool(tmp_path,
                                                                          monkeypatch):
    """encodec_48khz scales each item to unit RMS as a whole before encoding: the stems are
    parked on disk while measured, then encoded; the spool is gone after."""
    real = stemcodec.codec.load_codec

    def unit_rms(*a, **k):
        codec = small_chunks(real(*a, **k))
        codec.unit_rms = True
        return codec

    monkeypatch.setattr(stemcodec.codec, "load_codec", unit_rms)
    folder = tmp_path / "songs" / "piece"
    song_file(folder / "drums.wav", 2.5, 24000, 1, seed=1)
    song_file(folder / "bass.wav", 2.5, 24000, 1, seed=2)
    out = tmp_path / "cache"
    assert main([str(folder.parent), "--out", str(out), "--codec", "debug"]) == 0
    entry, codes, mix = cached(out)
    codec = unit_rms("debug")
    stems = {n: conform(read_file(folder / f"{n}.wav"), 24000, 1)[0] for n in ("bass", "drums")}
    whole = codec.encode(torch.stack([stems["drums"], stems["bass"]])).numpy()
    # the level is summed in float64 here, in float32 by Codec.encode: a code may differ
    # where a value sits on a codebook boundary (none does in this song)
    assert np.array_equal(codes[:2], whole)
    assert np.array_equal(mix, codec.encode((stems["bass"] + stems["drums"])[None]).numpy())
    assert sorted(p.name for p in (out / "songs").iterdir()) == sorted(
        [entry["shard"].split("/")[1], entry["mix_shard"].split("/")[1], f"{entry['id']}.json"])
