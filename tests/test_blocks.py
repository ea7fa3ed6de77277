"""The block pipeline (stemcodec.blocks, stemcodec.decode) gives what the whole-file path
gives: each stage, fed in odd-sized blocks, against the same call on the whole."""

import shutil
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
import torch

from stemcodec import decode
from stemcodec.audio import read_file, resample
from stemcodec.blocks import resample as resample_module
from stemcodec.blocks import separate as separate_module
from stemcodec.blocks.encode import BlockEncoder, ShardWriter
from stemcodec.blocks.resample import Resampled
from stemcodec.blocks.separate import Separated, mix_statistics
from stemcodec.blocks.streams import Stream
from stemcodec.codec import DEBUG_CONFIG, Codec, build_codec, load_codec
from stemcodec.levels import LevelMeter, level_flags

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


class Given(Stream):
    """A tensor `[..., C, S]` handed out in pieces of `piece` samples."""

    def __init__(self, wav: torch.Tensor, rate: int, piece: int):
        super().__init__()
        self.wav, self.rate, self.piece = wav, rate, piece
        self.channels, self.length = wav.shape[-2], wav.shape[-1]
        self._at = 0

    def _next(self):
        if self._at >= self.length:
            return None
        self._at += self.piece
        return self.wav[..., self._at - self.piece: self._at]


def noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.1


@pytest.mark.parametrize("rates", [(44100, 24000), (8000, 44100), (48000, 44100),
                                   (22050, 24000)])
def test_resampling_in_blocks_is_sample_for_sample_the_whole_files(rates, monkeypatch):
    orig, new = rates
    monkeypatch.setattr(resample_module, "STEP", 3001)  # steps, margins and pieces all odd
    wav = noise(2, orig * 2 + 17)
    whole = resample(wav, orig, new)
    for piece in (777, 10**6):
        got = torch.cat(list(Resampled(Given(wav, orig, piece), new).blocks(5003)), dim=-1)
        assert got.shape == whole.shape and torch.equal(got, whole), piece


def small_codec(**overrides) -> Codec:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = build_codec({**DEBUG_CONFIG, **overrides})
    return Codec(model, "test", 3.0, "0" * 12)


@pytest.mark.parametrize("kind", ["causal", "noncausal", "unit_rms"])
def test_encoding_in_blocks_gives_codec_encode_codes(kind):
    codec = load_codec("debug") if kind == "causal" else small_codec(lstm=1, causal=False)
    codec.chunk_frames, codec.context_frames = 40, 12  # many chunks, each with context
    codec.unit_rms = kind == "unit_rms"
    wav = noise(3, 1, 320 * 173 + 50)
    whole = codec.encode(wav)
    volume = wav.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()
    encoder = BlockEncoder(codec, wav.shape[-1], volume if codec.unit_rms else None)
    pieces = []
    for start in range(0, wav.shape[-1], 2999):
        pieces += list(encoder.push(wav[..., start:start + 2999]))
    pieces += list(encoder.finish())
    assert [first for first, _ in pieces] == list(range(0, whole.shape[-1], 40))
    got = torch.cat([codes for _, codes in pieces], dim=-1)
    assert torch.equal(got, whole.cpu())


def test_a_shard_is_written_in_place_and_absent_rows_stay_zero(tmp_path):
    path = tmp_path / "songs" / "a.npy"
    codes = np.random.default_rng(0).integers(0, 1024, (2, 4, 90))
    with ShardWriter(path, (3, 4, 90), 1024) as writer:
        for first in (60, 0, 30):  # in any order
            writer.write(0, first, codes[0][:, first:first + 30])
            writer.write(2, first, codes[1][:, first:first + 30])
        assert not path.exists()  # only once whole
        writer.commit()
    back = np.load(path)
    assert back.dtype == np.int16 and back.shape == (3, 4, 90)
    assert np.array_equal(back[0], codes[0]) and np.array_equal(back[2], codes[1])
    assert not back[1].any()
    assert [p.name for p in path.parent.iterdir()] == ["a.npy"]
    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "b.npy", (1, 1, 5), 70000) as w:
        assert w.dtype == np.int32
        raise RuntimeError("stopped halfway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["songs"]  # nothing half-written


def tone_file(path, seconds, rate=24000, channels=1, **kw):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    sf.write(path, np.repeat(x[:, None], channels, 1).astype(np.float32), rate, **kw)
    return path


def blocks_of(path, frames=999):
    return np.concatenate(list(decode.read_blocks(decode.scan(path), frames)))


@pytest.mark.parametrize("name", ["a.ogg", "a.flac", "a.wav", "a.mp3", "six.flac"])
def test_files_decode_in_blocks_as_in_one_read(tmp_path, name):
    path = tone_file(tmp_path / name, 3.0, channels=6 if name == "six.flac" else 2)
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    assert np.array_equal(blocks_of(path), whole)


def test_a_damaged_ogg_read_again_in_blocks_keeps_its_holes_in_place(tmp_path):
    from hostile_inputs import garbage_over_middle
    path = tone_file(tmp_path / "g.ogg", 8.0)
    garbage_over_middle(path, 6_000)
    found = decode.scan(path)
    assert found.fill and found.frames == found.declared  # the hole is filled in its place
    assert np.array_equal(blocks_of(path), read_file(path).data)


@needs_ffmpeg
def test_a_long_mp3_goes_through_ffmpeg_which_decodes_what_one_read_does(tmp_path,
                                                                        monkeypatch):
    """libsndfile 1.2.2 decodes an MP3 read in blocks wrongly (off by 0.3 from one read)."""
    path = tone_file(tmp_path / "long.mp3", 5.0, rate=44100)
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    monkeypatch.setattr(decode, "MP3_WHOLE_BYTES", 1000)
    found = decode.scan(path)
    assert found.pipe and found.decoded == len(whole) and not found.warnings
    assert np.abs(blocks_of(path) - whole).max() < 1e-4


def test_levels_measured_in_blocks_are_the_whole_files():
    rng = np.random.default_rng(0)
    for data in (np.stack([rng.standard_normal(20_000) * 0.1, np.zeros(20_000)], 1),
                 rng.standard_normal((30_500, 1)) * 0.1 + 0.05):
        data = data.astype(np.float32)
        meter = LevelMeter(8000, data.shape[1])
        for start in range(0, len(data), 1234):
            meter.add(data[start:start + 1234])
        assert meter.flags() == level_flags(data, 8000) != {}


def tiny_separator():
    from demucs.htdemucs import HTDemucs

    from stemcodec.separate import SIX_SOURCES, Separator
    torch.manual_seed(0)
    model = HTDemucs(SIX_SOURCES, channels=8, depth=2, nfft=512, t_layers=1, t_heads=2,
                     segment=Fraction(1, 2), samplerate=8000, dconv_depth=1)
    return Separator(model, "tiny")


def test_separation_in_blocks_is_the_whole_files(monkeypatch):
    """Overlapping segments added up as they come: apply_model's sum, sample for sample,
    the shorter last segment (padded from the mix before it) included."""
    monkeypatch.setattr(separate_module, "STEP", 1001)
    sep = tiny_separator()
    wav = noise(2, 8000 * 3 + 123, seed=1)
    whole = sep.separate(wav)
    mean, std = mix_statistics(Given(wav, 8000, 4096))
    stream = Separated(sep, Given(wav, 8000, 777), mean, std)
    got = torch.cat(list(stream.blocks(1500)), dim=-1)  # [N + 1, C, S]: sources, then the mix
    assert got.shape == (7, 2, wav.shape[-1])
    for i, name in enumerate(sep.sources):
        assert torch.equal(got[i], whole[name]), name
    assert torch.equal(got[-1], wav)
