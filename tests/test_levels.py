"""levels: dead channels, DC offsets and silence, measured before any downmix."""

import numpy as np

from stemcodec.levels import level_flags

RATE = 8000


def tone(seconds, freq=220.0, amp=0.3):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stereo(left, right):
    return np.stack([left, right], axis=1)


def test_a_dead_channel_is_flagged_even_with_an_offset_or_a_little_noise():
    x = tone(2.0)
    noise = 1e-4 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    assert "left channel dead" in level_flags(stereo(np.zeros_like(x), x), RATE)["dead_channel"]
    assert "right channel dead" in level_flags(stereo(x, noise), RATE)["dead_channel"]
    flags = level_flags(stereo(x, np.full_like(x, 0.05)), RATE)
    assert set(flags) == {"dead_channel", "dc_offset"}
    assert flags["dc_offset"] == "DC offset +0.050 on channel 2"


def test_ordinary_files_are_not_flagged():
    x = tone(2.0)
    assert level_flags(stereo(x, 0.3 * x), RATE) == {}  # panned, not dead
    assert level_flags(x[:, None], RATE) == {}
    surround = np.zeros((len(x), 6), np.float32)
    surround[:, :3] = x[:, None]
    assert level_flags(surround, RATE) == {}  # empty rears and LFE are normal in 5.1
    # a fraction of a low note averages far from zero: too short to judge an offset
    assert level_flags(tone(0.02, freq=55)[:, None] + 0.001, RATE) == {}


def test_dc_offset_and_silence():
    x = tone(3.0)
    assert level_flags(x[:, None] - 0.02, RATE) == {"dc_offset": "DC offset -0.020"}
    # an offset in one second only is a transient, not an offset
    y = x.copy()
    y[:RATE] += 0.2
    assert level_flags(y[:, None], RATE) == {}
    assert level_flags(np.zeros((RATE, 2), np.float32), RATE) == {
        "silent": "silent (below -60 dBFS)"}
