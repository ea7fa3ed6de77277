"""Pitch figures of codec quality: they must see what a listener hears (a wrong pitch, a buzz,
lost chroma), where mel distances do not."""

import math

import pytest
import torch

from stemcodec.errors import UserError
from stemcodec.metrics.pitch import (
    buzz_prominence,
    chroma_correlation,
    cqt_distance,
    tone_peak,
    tone_signal,
    tone_test,
)

RATE = 24000


@pytest.mark.parametrize("kind", ["sine", "sawtooth"])
@pytest.mark.parametrize("frequency", [55.0, 440.0, 1319.0])
def test_tone_peak_finds_the_fundamental(kind, frequency):
    assert tone_peak(tone_signal(kind, frequency), RATE) == pytest.approx(frequency, rel=0.002)


@pytest.mark.slow
def test_tone_test_passes_a_clean_channel_and_fails_a_shifted_one():
    clean = tone_test(lambda w: w, RATE)
    assert clean["at_pitch"] == 1.0 and clean["tones"] == 20 and clean["worst_error"] < 0.003

    def shifted(w):  # every tone played 5 % sharp: a resampling by 1/1.05
        n = w.shape[-1]
        idx = (torch.arange(n) * 1.05).clamp(max=n - 1)
        return torch.from_numpy(__import__("numpy").interp(idx.numpy(), range(n), w[0].numpy())
                                ).float()[None]
    off = tone_test(shifted, RATE)
    assert off["at_pitch"] == 0.0 and off["worst_error"] == pytest.approx(0.05, abs=0.01)


def test_octave_error_is_caught():
    result = tone_test(lambda w: tone_signal("sine", 2 * tone_peak(w, RATE)), RATE,
                       frequencies=[110.0], kinds=["sine"])
    assert result["at_pitch"] == 0.0 and result["worst_error"] == pytest.approx(1.0, abs=0.01)


def _music(seconds=4.0, seed=0):
    """A few decaying harmonic notes: music-like, no comb at 600 Hz."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * RATE)) / RATE
    out = torch.zeros_like(t)
    for i, f in enumerate([196.0, 247.0, 294.0, 392.0]):
        on = (t >= i * seconds / 4).float()
        env = on * torch.exp(-(t - i * seconds / 4).clamp(min=0) * 2)
        for n in range(1, 12):
            out += env * torch.sin(2 * math.pi * f * n * t + float(torch.rand(1, generator=g))) / n
    return 0.1 * out[None] + 0.001 * torch.randn(1, t.shape[0], generator=g)


def test_buzz_prominence_sees_a_comb_and_not_music():
    music = _music()
    t = torch.arange(music.shape[-1]) / RATE
    comb = sum(torch.sin(2 * math.pi * 600 * k * t) for k in range(1, 13)) * 0.003
    assert abs(buzz_prominence(music, RATE, [600.0])) < 3.0
    assert buzz_prominence(music + comb, RATE, [600.0]) > 15.0


@pytest.mark.slow
def test_chroma_and_cqt_distance_rank_a_transposed_copy_below_a_noisy_copy():
    music = _music()
    g = torch.Generator().manual_seed(5)
    noisy = music + 0.003 * torch.randn(music.shape, generator=g)
    t = torch.arange(music.shape[-1])
    # the same notes a tritone up (resampled): timbre alike, pitch classes wrong
    idx = (t * 2 ** 0.5).clamp(max=music.shape[-1] - 1).long()
    transposed = music[:, idx]
    assert chroma_correlation(music, music, RATE) == pytest.approx(1.0, abs=1e-6)
    assert chroma_correlation(music, noisy, RATE) > 0.9
    assert chroma_correlation(music, transposed, RATE) < 0.5
    assert cqt_distance(music, music, RATE) == 0.0
    assert cqt_distance(music, noisy, RATE) < cqt_distance(music, transposed, RATE)


def test_buzz_rates_are_the_seanet_decoders_upsampling_rates():
    from stemcodec.codec import load_codec
    from stemcodec.evaluation.codec_quality import decoder_rates
    assert decoder_rates(load_codec("debug")) == [75.0, 600.0, 3000.0]


def test_tone_outputs_are_kept_and_drawn(tmp_path):
    """The round-tripped tones come back by name, so the picture shows what was scored: an
    octave-up coder's panel says so in its title."""
    from stemcodec.plots import tone_spectra_picture
    up = lambda w: tone_signal("sine", 2 * tone_peak(w, RATE), seconds=w.shape[-1] / RATE)  # noqa: E731
    kept: dict[str, torch.Tensor] = {}
    result = tone_test(up, RATE, frequencies=(110.0, 440.0), kinds=("sine",), outputs=kept)
    assert sorted(kept) == ["sine 110", "sine 440"] and result["at_pitch"] == 0.0
    assert kept["sine 110"].shape == tone_signal("sine", 110.0).shape
    assert tone_peak(kept["sine 110"], RATE) == pytest.approx(220.0, rel=0.01)
    originals = {name: tone_signal("sine", float(name.split()[1])) for name in kept}
    path = tone_spectra_picture({"original": originals, "octave up": kept}, RATE,
                                tmp_path / "tones.png", {"octave up": result["peaks"]})
    assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*tmp*"))  # written under a temporary name, then renamed


def test_a_piece_is_drawn_stem_by_stem_through_each_coder(tmp_path):
    """--spectrograms: each audible stem of the piece as it is and through every coder, in
    that order, cut to the seconds asked; a silent stem has no lane."""
    import soundfile as sf

    from stemcodec.evaluation.codec_quality import piece_lanes
    from stemcodec.plots import note_lanes_picture
    piece = tmp_path / "corpus" / "p0"
    piece.mkdir(parents=True)
    sf.write(piece / "piano.wav", tone_signal("sine", 440.0, seconds=3.0)[0].numpy(), RATE)
    sf.write(piece / "bass.wav", torch.zeros(3 * RATE).numpy(), RATE)
    up = lambda w: tone_signal("sine", 880.0, seconds=w.shape[-1] / RATE)  # noqa: E731
    lanes = piece_lanes({"octave up": up, "same": lambda w: w}, [tmp_path / "corpus"], RATE, 1,
                        seconds=2.0)
    assert list(lanes) == ["piano original", "piano octave up", "piano same"]
    assert all(w.shape == (1, 2 * RATE) for w in lanes.values())
    assert tone_peak(lanes["piano octave up"], RATE) == pytest.approx(880.0, rel=0.01)
    assert torch.equal(lanes["piano same"], lanes["piano original"])
    path = note_lanes_picture(lanes, RATE, tmp_path / "stems.png", title="t")
    assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UserError, match="hold 1"):
        piece_lanes({"same": lambda w: w}, [tmp_path / "corpus"], RATE, 1, 2.0, piece=3)
