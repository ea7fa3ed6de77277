"""Metrics on hand-made signals: each figure moves the way its definition says."""

import math

import pytest
import torch

from stemcodec.metrics.classifier import ClassifierConfig, InstrumentClassifier, load_classifier
from stemcodec.metrics.coherence import (
    chroma_agreement,
    onset_agreement,
    onset_f_measure,
    set_coherence,
)
from stemcodec.metrics.frechet import frechet_distance
from stemcodec.metrics.identity import SecondLabels, identity_accuracy, switch_rate
from stemcodec.metrics.leakage import leakage
from stemcodec.metrics.opus import opus_roundtrip
from stemcodec.metrics.quality import mel_distance, mrstft_distance, si_sdr
from stemcodec.metrics.seconds import active_seconds, split_seconds
from stemcodec.metrics.timbre import mfcc_embedding, timbre_stability

RATE = 16000


def notes(pitches, seconds_each=0.25, rate=RATE, harmonics=4, seed=0):
    """A string of decaying harmonic notes `[1, S]` (MIDI pitches; None is a rest)."""
    rng = torch.Generator().manual_seed(seed)
    n = int(seconds_each * rate)
    t = torch.arange(n) / rate
    out = []
    for pitch in pitches:
        if pitch is None:
            out.append(torch.zeros(n))
            continue
        f = 440.0 * 2 ** ((pitch - 69) / 12)
        tone = sum(torch.sin(2 * math.pi * f * k * t) / k for k in range(1, harmonics + 1))
        out.append(0.2 * tone * torch.exp(-4 * t) + 1e-4 * torch.randn(n, generator=rng))
    return torch.cat(out)[None]


def clicks(times, seconds, rate=RATE):
    """Short noise bursts at `times` (seconds) `[1, S]`."""
    x = torch.zeros(int(seconds * rate))
    burst = torch.randn(int(0.02 * rate), generator=torch.Generator().manual_seed(1))
    burst = burst * torch.exp(-torch.arange(burst.numel()) / (0.004 * rate))
    for t in times:
        i = int(t * rate)
        x[i: i + burst.numel()] += burst[: x.numel() - i]
    return 0.5 * x[None]


# -- codec quality ------------------------------------------------------------------------------
def test_quality_is_perfect_for_the_reference_and_worsens_with_noise():
    ref = notes([60, 64, 67, 72] * 4)
    gen = torch.Generator().manual_seed(0)
    slight = ref + 0.001 * torch.randn(ref.shape, generator=gen)
    heavy = ref + 0.05 * torch.randn(ref.shape, generator=gen)
    assert si_sdr(ref, ref) > 80 and si_sdr(ref, 0.3 * ref) > 80  # scale-invariant
    assert si_sdr(ref, slight) > si_sdr(ref, heavy)
    assert mel_distance(ref, ref, RATE) == 0 and mrstft_distance(ref, ref) == 0
    assert 0 < mel_distance(ref, slight, RATE) < mel_distance(ref, heavy, RATE)
    assert 0 < mrstft_distance(ref, slight) < mrstft_distance(ref, heavy)


def test_quality_pads_or_cuts_the_estimate_to_the_reference():
    ref = notes([60, 62])
    assert si_sdr(ref, torch.cat([ref, torch.zeros(1, 100)], dim=1)) > 80
    assert math.isfinite(mel_distance(ref, ref[:, :-100], RATE))


def test_opus_roundtrip_keeps_shape_and_alignment_and_bitrate_matters():
    ref = notes([60, 64, 67, 72, 67, 64] * 2)
    rate = 24000
    ref = torch.nn.functional.interpolate(ref[None], scale_factor=1.5)[0]  # to 24 kHz length
    low, high = opus_roundtrip(ref, rate, 6), opus_roundtrip(ref, rate, 64)
    assert low.shape == high.shape == ref.shape
    assert si_sdr(ref, high) > 15  # aligned to the sample: no codec delay left
    assert mel_distance(ref, high, rate) < mel_distance(ref, low, rate)


# -- per-second helpers, identity --------------------------------------------------------------
def test_split_seconds_and_silence_mask():
    wav = torch.cat([notes([60] * 8), torch.zeros(1, RATE), 1e-4 * notes([60] * 4),
                     torch.zeros(1, RATE // 2 + 10)], dim=1)  # 2 s loud, 1 s silent, 1 s faint
    segments = split_seconds(wav, RATE)
    assert segments.shape == (5, RATE)  # the last 0.5 s + 10 samples make a padded segment
    assert active_seconds(segments).tolist() == [True, True, False, False, False]


def test_switch_rate_counts_only_neighbouring_active_seconds():
    def labels(names, index):
        return SecondLabels(names, index, torch.zeros(len(names), 2), torch.zeros(len(names), 2))
    steady = labels(["piano"] * 4, [0, 1, 2, 3])
    switching = labels(["piano", "piano", "other", "other"], [0, 1, 2, 3])
    across_gap = labels(["piano", "other"], [0, 2])  # a silent second between
    assert switch_rate(steady) == 0 and identity_accuracy(steady, "piano") == 1
    assert switch_rate(switching) == pytest.approx(1 / 3)
    assert identity_accuracy(switching, "piano") == 0.5
    assert switch_rate(across_gap) is None and identity_accuracy(labels([], []), "piano") is None


def test_frechet_distance_is_zero_for_one_set_and_grows_with_the_mean_shift():
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(x, x + 2.0) == pytest.approx(16.0, rel=1e-3)  # |shift|^2 = 4 * 4


def test_timbre_stability_is_one_for_identical_seconds_and_lower_for_two_kinds():
    one = torch.tensor([[1.0, 0.0]] * 6)
    two = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    assert timbre_stability(one) == pytest.approx(1.0)
    assert timbre_stability(two) == pytest.approx(math.cos(math.pi / 4))
    assert timbre_stability(torch.zeros(0, 2)) is None
    assert mfcc_embedding(split_seconds(notes([60] * 8), RATE), RATE).shape == (2, 38)


def test_classifier_saves_loads_and_predicts(tmp_path):
    model = InstrumentClassifier(ClassifierConfig(classes=["bass", "piano"], widths=[4, 8],
                                                  embedding=8))
    model.save(tmp_path / "clf")
    again = load_classifier(tmp_path / "clf")
    segments = split_seconds(notes([48, 50, 52, 53] * 3), RATE)
    probs, emb = again.predict(segments, RATE)
    assert probs.shape == (3, 2) and emb.shape == (3, 8)
    assert torch.allclose(probs, model.predict(segments, RATE)[0])
    assert torch.allclose(probs.sum(dim=-1), torch.ones(3))


# -- coherence, leakage ---------------------------------------------------------------------------
def test_onset_f_measure_matches_within_the_tolerance_once():
    a = torch.tensor([0.5, 1.0, 1.5])
    assert onset_f_measure(a, a + 0.03) == 1.0
    assert onset_f_measure(a, a + 0.2) == 0.0
    assert onset_f_measure(a, torch.tensor([0.5, 0.51])) == pytest.approx(2 / 5)
    assert onset_f_measure(torch.zeros(0), torch.zeros(0)) is None


def test_onsets_on_the_drum_beats_agree_and_off_beat_ones_do_not():
    beats = [0.5 * i for i in range(8)]
    drums = clicks(beats, 4.0)
    on_beat = notes([48, 55, 52, 55] * 2, seconds_each=0.5)
    off_beat = torch.cat([torch.zeros(1, int(0.22 * RATE)), on_beat[:, : -int(0.22 * RATE)]], dim=1)
    assert onset_agreement(drums, on_beat, RATE) > 0.8
    assert onset_agreement(drums, off_beat, RATE) < 0.3


def test_chroma_agrees_for_one_chord_and_not_for_a_distant_one():
    c_major = notes([60, 64, 67, 72] * 8)
    c_major_low = notes([48, 52, 55, 60] * 8, seed=1)  # the same chord an octave down
    f_sharp = notes([66, 70, 73, 78] * 8)
    same, far = chroma_agreement(c_major, c_major_low, RATE), chroma_agreement(c_major, f_sharp, RATE)
    assert same > 0.8 and far < 0.4


def test_leakage_is_high_for_a_copy_and_low_for_an_independent_line():
    melody = notes([72, 74, 76, 77, 79, 77, 76, 74] * 4)
    bass = notes([36, 43, 41, 43, 36, 38, 40, 43] * 4, seed=2)
    n = min(melody.shape[1], bass.shape[1])
    assert leakage(melody, melody, RATE) == pytest.approx(1.0, abs=1e-4)
    assert leakage(melody[:, :n], melody[:, :n] + bass[:, :n], RATE) > 0.5
    assert leakage(melody, bass, RATE) < 0.15
    assert leakage(melody, torch.zeros_like(melody), RATE) is None
    assert leakage(melody[:, : RATE // 10], melody[:, : RATE // 10], RATE) is None  # too short


def test_set_coherence_reports_every_kind_of_pair():
    beats = [0.5 * i for i in range(16)]
    stems = {"drums": clicks(beats, 8.0), "bass": notes([36, 43] * 8, 0.5),
             "piano": notes([60, 64] * 8, 0.5, seed=3)}
    result = set_coherence(stems, RATE)
    assert set(result) == {"onset_agreement", "chroma_agreement", "max_leakage", "pairs"}
    assert set(result["pairs"]["onset"]) == {"bass", "piano"}
    assert set(result["pairs"]["chroma"]) == {"bass+piano"}
    assert len(result["pairs"]["leakage"]) == 3


def test_a_bass_line_and_kicks_on_its_beats_do_not_count_as_leakage():
    """No synthesizer needed: harmonic bass notes and pitch-dropping sine kicks on the same
    beats share onsets and the low band, not notes (the metric before its envelope removal
    gave 0.40 here); a kick track with the bass mixed in does leak."""
    import math
    t = torch.arange(RATE * 8) / RATE
    bass, kick = torch.zeros_like(t), torch.zeros_like(t)
    for i in range(16):
        start = int(i * 0.5 * RATE)
        tt = t[: int(0.45 * RATE)]
        f0 = (41.2, 55.0, 49.0, 55.0)[i % 4]
        note = sum(0.5 / h * torch.sin(2 * math.pi * f0 * h * tt) for h in range(1, 8))
        bass[start: start + tt.numel()] += note * torch.exp(-3 * tt)
        tk = t[: int(0.25 * RATE)]
        phase = 2 * math.pi * torch.cumsum(50 + 100 * torch.exp(-30 * tk), 0) / RATE
        kick[start: start + tk.numel()] += torch.sin(phase) * torch.exp(-15 * tk)
    assert leakage(bass[None], kick[None], RATE) < 0.15
    assert leakage(bass[None], (kick + 0.7 * bass)[None], RATE) > 0.5
