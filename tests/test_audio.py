import numpy as np
import pytest
import soundfile as sf
import torch

from stemcodec.audio import is_silent, load_audio, mix, save_audio, to_channels
from stemcodec.errors import AudioError


def sine(rate=8000, seconds=0.5, freq=440.0, channels=1, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1)


def test_int16_8khz_file_is_resampled_to_target_rate(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, sine(8000, 0.5), 8000, subtype="PCM_16")
    wav, rate = load_audio(path, sample_rate=24000, channels=1)
    assert rate == 24000 and wav.dtype == torch.float32
    assert wav.shape == (1, 12000)
    assert abs(wav.abs().max().item() - 0.5) < 0.02


def test_six_channel_48k_is_downmixed(tmp_path):
    path = tmp_path / "surround.flac"
    sf.write(path, sine(48000, 0.1, channels=6), 48000)
    mono, _ = load_audio(path, channels=1)
    stereo, _ = load_audio(path, channels=2)
    assert mono.shape[0] == 1 and stereo.shape[0] == 2
    assert torch.allclose(stereo[0], stereo[1])


@pytest.mark.parametrize("ext", [".ogg", ".mp3", ".flac"])
def test_compressed_formats_load(tmp_path, ext):
    path = tmp_path / f"x{ext}"
    sf.write(path, sine(24000, 0.5), 24000)
    wav, rate = load_audio(path)
    assert rate == 24000 and wav.shape[-1] > 10000


def test_bad_files_raise_one_line_reasons(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    nan = tmp_path / "nan.wav"
    data = sine()
    data[100] = np.nan
    sf.write(nan, data, 8000, subtype="FLOAT")
    header = tmp_path / "header.wav"
    sf.write(header, np.zeros((0, 1), np.float32), 8000)
    cases = {empty: "empty file", text: "not readable as audio", nan: "NaN",
             header: "no samples", tmp_path / "x.xyz": "unsupported extension"}
    for path, reason in cases.items():
        with pytest.raises(AudioError, match=reason) as err:
            load_audio(path)
        assert "\n" not in str(err.value)


def test_too_short_is_refused(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, sine(24000, 0.001), 24000)
    with pytest.raises(AudioError, match="too short"):
        load_audio(path, min_samples=320)


def test_silence_detection():
    assert is_silent(torch.zeros(1, 1000))
    assert is_silent(torch.full((1, 1000), 1e-5))
    assert not is_silent(torch.from_numpy(sine()).T)


def test_mix_never_clips_and_reports_gain():
    a = torch.ones(1, 100) * 0.8
    b = torch.ones(1, 80) * 0.8
    out, gain = mix([a, b])
    assert out.shape == (1, 100)
    assert out.abs().max().item() <= 10 ** (-1 / 20) + 1e-6
    assert gain < 1.0
    quiet, gain = mix([a * 0.1, b * 0.1])
    assert gain == 1.0 and torch.allclose(quiet[:, :80], torch.full((1, 80), 0.16))


def test_save_is_exact_float_round_trip_and_leaves_no_temp(tmp_path):
    wav = torch.randn(2, 1000) * 0.1
    path = save_audio(tmp_path / "sub" / "x.wav", wav, 24000)
    back, rate = load_audio(path)
    assert rate == 24000 and torch.equal(back, wav)
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]


def test_to_channels_mono_to_stereo_duplicates():
    wav = torch.randn(1, 10)
    assert torch.equal(to_channels(wav, 2)[1], wav[0])


def test_truncated_wav_is_refused_but_complete_one_loads(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, sine(8000, 1.0), 8000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:-3000])
    assert load_audio(full)[0].shape[-1] == 8000
    with pytest.raises(AudioError, match="truncated: 3000 bytes"):
        load_audio(cut)
