"""Codec loading through the real code paths, with random weights in the official format."""

import math

import pytest
import torch
from encodec import EncodecModel

from stemcodec.checkpoint import file_sha256, state_hash
from stemcodec.codec import (
    DEBUG_CONFIG,
    CodecError,
    build_encodec,
    load_codec,
    save_codec,
    token_hash,
)


def write_random_encodec(folder, seed=0, name="encodec_24khz"):
    """A random official-architecture state dict saved as the official file would be, named
    `<name>-<first 8 hex of its sha256>.th` like the real one."""
    build = {"encodec_24khz": EncodecModel.encodec_model_24khz,
             "encodec_48khz": EncodecModel.encodec_model_48khz}[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = build(pretrained=False).state_dict()
        for key, value in state.items():  # random codebooks: untrained ones are all zeros
            if key.endswith("_codebook.embed"):
                state[key] = torch.randn_like(value) * 0.02
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.th"
    torch.save(state, tmp)
    path = folder / f"{name}-{file_sha256(tmp)[:8]}.th"
    tmp.rename(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Full-size EnCodec on 2 shared cores: one intra-op thread is several times faster than
    two fighting over them (measured), and keeps this file well under its 40 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encodec")
    write_random_encodec(folder)
    return folder


def noise(seconds, rate=24000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1, int(seconds * rate), generator=g) * 0.1


@pytest.mark.parametrize("bandwidth, Q", [(6, 8), (1.5, 2)])
def test_official_format_loads_with_codebooks_of_the_bandwidth(repo, bandwidth, Q):
    codec = load_codec("encodec_24khz", bandwidth, repository=repo)
    wav = noise(0.5)
    codes = codec.encode(wav)
    assert codes.shape == (1, Q, math.ceil(12000 / 320))
    assert codes.dtype == torch.int64 and codes.min() >= 0 and codes.max() < 1024
    assert len(codes.unique()) > Q  # codes vary over time, not one per codebook
    assert codec.decode(codes).shape == (1, 1, codes.shape[-1] * 320)
    assert codec.info()["num_codebooks"] == Q and codec.frame_rate == 75


@pytest.mark.slow
def test_codec_id_names_weights_and_bandwidth(repo, tmp_path):
    a = load_codec("encodec_24khz", 6, repository=repo)
    b = load_codec("encodec_24khz", 3, repository=repo)
    write_random_encodec(tmp_path / "other", seed=1)
    c = load_codec("encodec_24khz", 6, repository=tmp_path / "other")
    assert a.codec_id.startswith("encodec_24khz-6kbps-24000hz-")
    assert len({a.codec_id, b.codec_id, c.codec_id}) == 3


def test_checksum_mismatch_is_refused(repo, tmp_path):
    path = next(repo.glob("*.th"))
    bad = tmp_path / "bad"
    bad.mkdir()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    (bad / path.name).write_bytes(bytes(data))
    with pytest.raises(CodecError, match="checksum mismatch") as err:
        load_codec("encodec_24khz", 6, repository=bad)
    assert "\n" not in str(err.value)


def test_missing_weights_name_the_file_and_how_to_get_it(tmp_path):
    with pytest.raises(CodecError, match="missing EnCodec weights encodec_24khz-d7cc33bc.th "
                                         f"\\(looked in {tmp_path}\\).*--codec-repo"):
        load_codec("encodec_24khz", 6, repository=tmp_path)


def test_bad_bandwidth_and_unknown_name_list_the_choices(repo):
    with pytest.raises(CodecError, match="no bandwidth 5 kbps; valid: 1.5, 3, 6, 12, 24"):
        load_codec("encodec_24khz", 5, repository=repo)
    with pytest.raises(CodecError, match="unknown codec 'mp3'; valid: encodec_24khz, "
                                         "encodec_48khz, mini, debug"):
        load_codec("mp3")


@pytest.mark.slow
def test_chunked_encoding_matches_whole_encoding(repo):
    codec = load_codec("encodec_24khz", 6, repository=repo)
    wav = torch.cat([noise(2.0, seed=2), noise(77 / 24000, seed=3)], dim=-1)  # 150 frames + 77
    whole = codec.encode(wav)
    decoded = codec.decode(whole)
    codec.chunk_frames, codec.context_frames = 50, 30  # 0.67 s chunks, 0.4 s left context
    seen = []
    hook = codec.model.encoder.register_forward_pre_hook(lambda _, x: seen.append(x[0].shape[-1]))
    chunked = codec.encode(wav)
    hook.remove()
    assert chunked.shape == whole.shape == (1, 8, 151)
    assert len(seen) == 4 and max(seen) <= (50 + 30) * 320  # bounded: one chunk at a time
    # Tolerance: the encoder's LSTM sees 0.4 s instead of the whole past at each seam; we
    # allow 2 % of the codes to differ (measured: none) and 1 % relative error after decoding.
    assert (chunked == whole).float().mean() >= 0.98
    redecoded = codec.decode(chunked)
    assert redecoded.shape == decoded.shape == (1, 1, 151 * 320)
    assert (redecoded - decoded).norm() <= 0.01 * decoded.norm()


def test_long_and_empty_inputs_keep_the_frame_count():
    codec = load_codec("debug")
    codec.chunk_frames, codec.context_frames = 75, 10
    for samples in (0, 1, 319, 320, 321, 24000 * 3 + 17):
        codes = codec.encode(torch.zeros(2, 1, samples))
        assert codes.shape == (2, 4, math.ceil(samples / 320)) and codes.dtype == torch.int64
        assert codec.decode(codes).shape == (2, 1, codes.shape[-1] * 320)
        assert codec.decode(codes, length=samples).shape == (2, 1, samples)


def test_decode_refuses_codes_outside_the_codebooks():
    codec = load_codec("debug")
    with pytest.raises(ValueError, match="codes must lie in \\[0, 1024\\)"):
        codec.decode(torch.full((1, 4, 3), 1024))
    with pytest.raises(ValueError, match="expected codes"):
        codec.decode(torch.zeros(1, 5, 3, dtype=torch.long))  # more codebooks than it has


def test_48khz_is_stereo_and_encodes_at_unit_rms(tmp_path):
    write_random_encodec(tmp_path, name="encodec_48khz")
    codec = load_codec("encodec_48khz", repository=tmp_path)
    assert (codec.sample_rate, codec.channels, codec.frame_rate) == (48000, 2, 150)
    assert codec.num_codebooks == 4 and codec.bandwidth == 6  # the default bandwidth
    wav = torch.randn(2, 2, 12000, generator=torch.Generator().manual_seed(0)) * 0.1
    codes = codec.encode(wav)
    assert codes.shape == (2, 4, math.ceil(12000 / 320))
    # no per-segment scale in the tokens: the loudness of the input does not change them
    assert (codec.encode(wav * 7) == codes).float().mean() > 0.99
    assert codec.decode(codes).shape == (2, 2, codes.shape[-1] * 320)
    with pytest.raises(CodecError, match="valid: 3, 6, 12, 24"):
        load_codec("encodec_48khz", 1.5, repository=tmp_path)


def test_own_checkpoint_round_trip_and_debug_determinism(tmp_path):
    torch.manual_seed(3)
    model = build_encodec(DEBUG_CONFIG)
    save_codec(model, {**DEBUG_CONFIG, "name": "mine"}, tmp_path / "mine")
    codec = load_codec(str(tmp_path / "mine"))
    wav = noise(0.3)
    assert codec.name == "mine" and codec.num_codebooks == 4
    assert codec.info()["source"] == str((tmp_path / "mine").resolve())  # to find it again
    assert codec.codec_id.endswith(token_hash(model.state_dict())[:12])
    # tokens recorded under the id these weights had before (a hash of every weight) still fit
    assert codec.makes(f"mine-3kbps-24000hz-{state_hash(model.state_dict())[:12]}")
    assert codec.makes(codec.codec_id) and not codec.makes("mine-3kbps-24000hz-000000000000")
    # the id names the tokens: another decoder keeps it, another encoder or codebook does not
    state = model.state_dict()
    for name, same in (("decoder.model.0.conv.conv.bias", True),
                       ("encoder.model.0.conv.conv.bias", False),
                       ("quantizer.vq.layers.0._codebook.embed", False)):
        changed = {**state, name: state[name] + 0.01}
        assert (token_hash(changed) == token_hash(state)) is same, name
    assert torch.equal(codec.encode(wav), load_codec(str(tmp_path / "mine")).encode(wav))
    assert torch.equal(load_codec("debug").encode(wav), load_codec("debug").encode(wav))
    assert "debug" in load_codec("debug").codec_id


def test_mini_not_bundled_says_how_to_train_it(monkeypatch):
    import stemcodec.checkpoint
    monkeypatch.setattr(stemcodec.checkpoint, "bundled", lambda name: None)  # an install without it
    with pytest.raises(CodecError, match="train/train_codec.py"):
        load_codec("mini")


def test_bundled_mini_codec_is_the_documented_layout_and_reconstructs():
    from stemcodec.checkpoint import bundled
    if bundled("codec-mini") is None:
        pytest.skip("the mini codec is not bundled in this install")
    codec = load_codec("mini")
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.cardinality) == \
        (24000, 75.0, 4, 1024) and codec.bandwidth == 3.0
    t = torch.arange(24000) / 24000
    wav = (0.3 * torch.sin(2 * torch.pi * 220 * t) * (t < 0.5))[None, None]  # a note, then silence
    codes = codec.encode(wav)
    assert codes.shape == (1, 4, 75) and len(codes.unique()) > 8
    out = codec.decode(codes, length=24000)[0, 0]
    level = lambda x: float(x.pow(2).mean().sqrt())  # noqa: E731
    assert 0.3 < level(out[:12000]) / level(wav[0, 0, :12000]) < 3  # the note keeps its level
    assert level(out[15000:]) < 0.1 * level(out[:12000])  # and the silence stays quiet


def test_wrong_channels_refused():
    with pytest.raises(ValueError, match="expected wav"):
        load_codec("debug").encode(torch.zeros(1, 2, 100))


def test_wrong_rate_refused():
    with pytest.raises(ValueError, match="expects 24000 Hz"):
        load_codec("debug").encode(torch.zeros(1, 1, 100), sample_rate=44100)


def test_official_name_in_the_hub_cache_is_found(tmp_path, monkeypatch):
    path = write_random_encodec(tmp_path / "hub" / "checkpoints")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    official = path.with_name("encodec_24khz-d7cc33bc.th")
    with pytest.raises(CodecError, match="checksum mismatch"):  # random weights, official name
        path.rename(official)
        load_codec("encodec_24khz")
    official.rename(path)
    state = torch.load(path, weights_only=True)
    assert load_codec("encodec_24khz").weights_hash == token_hash(state)
    path.unlink()
    with pytest.raises(CodecError, match=f"looked in {tmp_path / 'hub' / 'checkpoints'}\\); "
                                         "download https://dl.fbaipublicfiles.com/encodec/v0/"):
        load_codec("encodec_24khz")


def test_names_without_a_full_checksum_or_with_bad_content_are_refused(tmp_path):
    (tmp_path / "encodec_24khz-ab.th").write_bytes(b"too short a checksum to trust")
    with pytest.raises(CodecError, match="missing EnCodec weights"):
        load_codec("encodec_24khz", repository=tmp_path)
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a torch file at all")
    junk.rename(tmp_path / f"encodec_24khz-{file_sha256(junk)[:8]}.th")
    with pytest.raises(CodecError, match="is not a usable encodec_24khz state dict") as err:
        load_codec("encodec_24khz", repository=tmp_path)
    assert "\n" not in str(err.value)


def test_mini_config_file_matches_the_mini_layout():
    from pathlib import Path

    import yaml

    from stemcodec.codec import MINI_CONFIG
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "codec-mini.yaml").read_text())
    assert cfg["model"] == MINI_CONFIG
    model = build_encodec(cfg["model"])
    assert model.encoder.hop == 320 and model.quantizer.n_q == 4
    assert model.decoder.detach_running is False  # set by the trainer (phase_trains_frequency)
    assert model.quantizer.get_num_quantizers_for_bandwidth(75, 3.0) == 4


def test_bad_own_checkpoints_are_one_line(tmp_path):
    from stemcodec.checkpoint import save_pretrained
    save_pretrained(tmp_path / "gen", {"w": torch.zeros(1)}, {"type": "transformer"})
    with pytest.raises(CodecError, match="not of a codec"):
        load_codec(str(tmp_path / "gen"))
    cfg = {k: v for k, v in DEBUG_CONFIG.items() if k != "ratios"}
    save_pretrained(tmp_path / "noratios", {"w": torch.zeros(1)}, cfg)
    with pytest.raises(CodecError, match="lacks key\\(s\\) ratios"):
        load_codec(str(tmp_path / "noratios"))
    with pytest.raises(CodecError, match="does not exist"):
        load_codec(str(tmp_path / "nope"))


def test_debug_codec_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    load_codec("debug")
    assert torch.equal(state, torch.random.get_rng_state())


def _istft_codec(tmp_path, **overrides):
    from stemcodec.codec import MINI_CONFIG
    cfg = {**MINI_CONFIG, "n_filters": 4, "dimension": 16, "lstm": 0, "decoder_dim": 32,
           "decoder_layers": 3, "encoder_dim": 32, "encoder_layers": 2, **overrides}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = build_encodec(cfg)
    save_codec(model, cfg, tmp_path / "istft")
    return load_codec(str(tmp_path / "istft"))


def test_istft_decoder_decodes_chunk_by_chunk_as_a_whole(tmp_path):
    """The iSTFT decoder is causal but for its overlap-add: chunks with a left context longer
    than its receptive field and `decode_lookahead` frames on the right give the same audio
    as one pass (what streaming generation relies on)."""
    codec = _istft_codec(tmp_path)
    decoder = codec.model.decoder
    assert codec.decode_lookahead == decoder.lookahead_frames == 2
    codes = codec.encode(noise(3.0, seed=4))  # 225 frames
    whole = codec.decode(codes)
    codec.chunk_frames, codec.context_frames = 40, decoder.receptive_frames + 2
    chunked = codec.decode(codes)
    assert chunked.shape == whole.shape == (1, 1, 225 * 320)
    assert torch.allclose(chunked, whole, atol=1e-5 * whole.abs().max())
    codec.decode_lookahead = 0  # without the look-ahead each seam is audibly wrong
    assert not torch.allclose(codec.decode(codes), whole, atol=1e-3 * whole.abs().max())


def test_accumulated_phase_carries_its_running_sum_across_chunks(tmp_path):
    """The accumulated phase is state: chunked decoding hands each chunk the running sum at
    its first frame, and gets the one-pass audio; a chunk that starts its sum afresh does not.
    The spectral encoder, given right context, encodes chunk by chunk as a whole too."""
    codec = _istft_codec(tmp_path, decoder_phase="accumulated", decoder_noise=True,
                         encoder="spectral")
    decoder = codec.model.decoder
    with torch.no_grad():  # a frequency head that says something (it starts at zero)
        decoder.frequency.weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
    wav = noise(3.0, seed=4)
    codes = codec.encode(wav)  # 225 frames
    whole = codec.decode(codes)
    codec.chunk_frames, codec.context_frames = 40, decoder.receptive_frames + 2
    assert torch.equal(codec.encode(wav), codes)
    assert torch.allclose(codec.decode(codes), whole, atol=1e-5 * whole.abs().max())
    spectrum = decoder.spectrum
    decoder.spectrum = lambda emb, offset=0, anchor=None: spectrum(emb, offset)
    assert not torch.allclose(codec.decode(codes), whole, atol=1e-2 * whole.abs().max())


@pytest.mark.parametrize("phase, at_pitch", [("accumulated", True), ("absolute", False)])
def test_a_steady_frame_is_a_steady_tone_at_its_frequency_between_bins(phase, at_pitch):
    """The same prediction at every frame (what a steady tone's tokens give): with an
    accumulated phase, a tone at the predicted frequency, here half a bin above bin 23
    (440.6 Hz, each bin of the main lobe predicting its deviation from its centre); with an absolute phase every frame repeats, so the output's strongest peak
    sits on a multiple of the frame rate, not at the tone."""
    from stemcodec.codec.istft import ISTFTDecoder
    from stemcodec.metrics.pitch import tone_peak
    decoder = ISTFTDecoder(8, 320, dim=16, layers=1, phase=phase)
    bins = decoder.n_fft // 2 + 1
    with torch.no_grad():
        decoder.head.weight.zero_()
        decoder.head.bias.zero_()
        decoder.head.bias[:bins] = -20.0  # log magnitudes: silence but for bins 22-25
        decoder.head.bias[22:26] = 0.0
        # bins centred on the frame (alternating by pi, as a windowed sinusoid's DFT is)
        decoder.head.bias[bins:] = math.pi * torch.arange(bins)
        if decoder.frequency is not None:  # every bin of the main lobe at bin 23.5
            decoder.frequency.bias[22:26] = torch.atanh((23.5 - torch.arange(22, 26)) / 2)
        wav = decoder(torch.zeros(1, 8, 150))[0]
    peak = tone_peak(wav, 24000)
    target = 23.5 * 24000 / decoder.n_fft
    assert (abs(peak - target) < 0.005 * target) == at_pitch, peak
    if not at_pitch:
        assert abs(peak / 75.0 - round(peak / 75.0)) < 0.01, peak


def test_detached_running_phase_leaves_the_frequencies_to_the_phase_loss():
    """`detach_running` (losses.phase_trains_frequency) changes no sample of the output; the
    waveform's gradient then no longer reaches the frequency head (through a running sum it is
    the sum over every later frame, and dominated the clipped gradient), while the
    phase-advance loss, on `last_phase`, still trains it."""
    from stemcodec.codec.istft import ISTFTDecoder
    from stemcodec.codec.losses import PhaseAdvance
    from stemcodec.metrics.pitch import tone_signal
    torch.manual_seed(0)
    decoder = ISTFTDecoder(8, 320, dim=16, layers=1, phase="accumulated", noise=True)
    with torch.no_grad():
        decoder.frequency.weight.normal_(0.0, 0.1)
    emb = torch.randn(1, 8, 40)
    reference = tone_signal("sine", 220.0, seconds=40 * 320 / 24000)[None]
    outputs, grads = [], []
    for detach in (False, True):
        decoder.detach_running = detach
        decoder.zero_grad()
        wav = decoder(emb)
        outputs.append(wav.detach())
        wav.square().sum().backward(retain_graph=True)
        grad = decoder.frequency.weight.grad
        grads.append(0.0 if grad is None else grad.norm().item())
        decoder.zero_grad()
        PhaseAdvance(decoder.n_fft, decoder.hop)(decoder.last_phase, reference).backward()
        assert decoder.frequency.weight.grad.norm().item() > 0
    assert torch.equal(outputs[0], outputs[1])
    assert grads[0] > 0 and grads[1] == 0.0, grads


def test_the_spectral_encoder_gives_a_steady_tone_steady_encodings():
    """A sine's encodings do not cycle with its phase against the frame grid (a waveform
    encoder's do): from frame to frame they move far less than from one pitch to the next."""
    from stemcodec.codec.spectral import SpectralEncoder
    from stemcodec.metrics.pitch import tone_signal
    torch.manual_seed(0)
    encoder = SpectralEncoder(16, [8, 5, 4, 2], dim=32, layers=2).eval()
    with torch.no_grad():
        a, b = (encoder(tone_signal("sine", f)[None])[0, :, 20:130] for f in (440.0, 466.2))
    assert a.shape == (16, 110) and encoder.hop == 320
    within = (a - a.mean(dim=1, keepdim=True)).norm(dim=0).mean()
    between = (a.mean(dim=1) - b.mean(dim=1)).norm()
    assert within < 0.05 * between, (float(within), float(between))


def test_old_codec_folders_without_decoder_keys_are_seanet(tmp_path):
    from stemcodec.codec import MINI_CONFIG
    from stemcodec.codec.istft import ISTFTDecoder
    old = {k: v for k, v in MINI_CONFIG.items() if not k.startswith("decoder") and k != "n_fft"}
    model = build_encodec({**old, "n_filters": 4, "dimension": 16, "lstm": 0})
    assert not isinstance(model.decoder, ISTFTDecoder)
    with pytest.raises(CodecError, match="decoder 'wavenet' unknown; valid: seanet, istft"):
        build_encodec({**old, "decoder": "wavenet"})
    with pytest.raises(CodecError, match="encoder 'mel' unknown; valid: seanet, spectral"):
        build_encodec({**old, "encoder": "mel"})


def test_log_frequency_loss_hears_a_bass_semitone_that_mel_barely_sees():
    """Every octave weighs the same: a 55 Hz sine against 58.3 Hz (a semitone up) costs as
    much as 880 against 932 Hz, where the mel loss finds the bass pair far closer than the
    treble pair; each band sums to one, none is empty."""
    from stemcodec.codec.losses import LogFrequencySTFT, MultiScaleMel, log_frequency_filters
    from stemcodec.metrics.pitch import tone_signal

    def pair(f):
        return (tone_signal("sine", f, seconds=1.0)[None],
                tone_signal("sine", f * 2 ** (1 / 12), seconds=1.0)[None])

    log_f = LogFrequencySTFT(24000)
    mel = MultiScaleMel(24000, [64, 128, 256, 512, 1024, 2048])  # the training default
    low, high = pair(55.0), pair(880.0)
    assert float(log_f(*low)) > 0.6 * float(log_f(*high)), (float(log_f(*low)),
                                                             float(log_f(*high)))
    assert float(mel(*low)) < 0.5 * float(mel(*high)), (float(mel(*low)), float(mel(*high)))
    assert float(log_f(low[0], low[0])) == 0.0
    bands = log_frequency_filters(24000, 2048)
    assert bands.shape[1] > 24 * 8 and torch.allclose(bands.sum(0), torch.ones(bands.shape[1]))


def test_phase_advance_loss_sees_a_quarter_bin_of_pitch_and_not_the_start_phase():
    """PhaseAdvance is the pitch of each partial: 0 for the reference's own phases, about
    1 - cos(pi / 8) for a tone a quarter of a bin (4.7 Hz) off, and the same for any start phase."""
    import torch.nn.functional as F

    from stemcodec.codec.losses import PhaseAdvance

    def tone(frequency, start=0.0):
        t = torch.arange(24000 * 2) / 24000
        return (0.3 * torch.sin(2 * math.pi * frequency * t + start))[None, None]

    def phases(wav):  # the decoder's frames: n_fft 1280 centred on (t + 1/2) x hop
        x = F.pad(wav.flatten(0, 1), (480, 480))
        return torch.stft(x, 1280, 320, window=torch.hann_window(1280), center=False,
                          return_complex=True).angle()

    loss = PhaseAdvance(1280, 320)
    reference = tone(440.0)
    assert float(loss(phases(reference), reference)) < 1e-3
    assert float(loss(phases(tone(440.0, start=1.0)), reference)) < 1e-3
    off = float(loss(phases(tone(440.0 + 18.75 / 4)), reference))
    assert abs(off - (1 - math.cos(math.pi / 8))) < 0.2 * (1 - math.cos(math.pi / 8)), off


def test_frame_spectrum_loss_is_zero_for_the_reference_frames_and_sees_scrambled_phases():
    """FrameSpectrum compares the decoder's own frames with the reference on the same frames:
    the decoder's overlap-add of the reference frames gives the reference back (the frames are
    aligned), they cost 0; the same magnitudes with each bin's phase scrambled keep the
    magnitude term at 0 but cost most of the group-delay term, and so does a tone decoded as
    one bin per partial (the regression's spiky main lobe); half the level costs magnitude."""
    from stemcodec.codec.istft import ISTFTDecoder
    from stemcodec.codec.losses import FrameSpectrum, frame_reference

    t = torch.arange(24000) / 24000
    reference = (0.3 * torch.sin(2 * math.pi * 440.0 * t)
                 + 0.1 * torch.sin(2 * math.pi * 1234.5 * t))[None, None]
    loss = FrameSpectrum(1280, 320)
    frames = frame_reference(reference, 1280, 320, loss.window, 75)  # [1, 641, 75]
    decoder = ISTFTDecoder(8, 320)
    back = decoder.istft(frames)[..., 400:-400]
    assert torch.allclose(back, reference[..., 400:-400], atol=1e-4)
    same = loss(frames, reference)
    assert float(same["magnitude"]) < 1e-3 and float(same["group_delay"]) < 1e-3
    scrambled = torch.polar(frames.abs(), torch.rand(frames.shape, generator=torch.Generator(
        ).manual_seed(0)) * 2 * math.pi)
    bad = loss(scrambled, reference)
    assert float(bad["magnitude"]) < 1e-3 and float(bad["group_delay"]) > 0.5
    spiky = frames * (frames.abs() >= frames.abs().roll(1, 1)) * (frames.abs() >= frames.abs(
        ).roll(-1, 1))  # only the peak bins
    assert float(loss(spiky, reference)["magnitude"]) > 0.5
    assert float(loss(0.5 * frames, reference)["magnitude"]) > 0.5


def test_training_tones_hold_pitches_off_the_grid_and_some_are_pure_sines():
    """The codec's synthetic notes: fundamentals anywhere (not on the 12-tone grid of a
    General MIDI corpus), about a fifth pure sines (no second harmonic), none a constant."""
    import numpy as np

    from stemcodec.codec.tones import harmonic_note
    from stemcodec.metrics.pitch import tone_peak
    rng = np.random.default_rng(0)
    pure, off_grid = 0, 0
    for _ in range(60):
        note = torch.from_numpy(harmonic_note(rng, 24000, 24000))[None].float()
        assert abs(float(note.mean())) < 0.02, "a note with a DC offset"
        f0 = tone_peak(note, 24000, lowest=25.0)
        spec = torch.fft.rfft(note[0] * torch.hann_window(24000)).abs()
        second = spec[int(2 * f0 * 0.97): int(2 * f0 * 1.03) + 1].max()
        pure += bool(second < 1e-3 * spec.max())
        semitones = 12 * math.log2(f0 / 440.0)
        off_grid += abs(semitones - round(semitones)) > 0.1
    assert 5 <= pure <= 20, pure
    assert off_grid > 30, off_grid


def test_the_mini_layout_installed_in_float16_codes_and_decodes_as_in_float32(tmp_path):
    """The bundled codec is stored in float16 (the assets stay under 60 MB): loaded back into
    float32 it gives a tone nearly the same tokens and the same sound."""
    from stemcodec.checkpoint import copy_pretrained
    from stemcodec.metrics.pitch import tone_signal
    full = _istft_codec(tmp_path)
    copy_pretrained(tmp_path / "istft", tmp_path / "half", half=True)
    half = load_codec(str(tmp_path / "half"))
    size = {n: (tmp_path / n / "model.safetensors").stat().st_size for n in ("istft", "half")}
    assert size["half"] < 0.6 * size["istft"]
    wav = tone_signal("sawtooth", 220.0, seconds=1.0)[None]  # [1, 1, S]
    codes, codes_half = full.encode(wav), half.encode(wav)
    assert (codes == codes_half).float().mean() > 0.95
    out, out_half = full.decode(codes), half.decode(codes)
    snr = 10 * torch.log10(out.pow(2).sum() / (out - out_half).pow(2).sum().clamp_min(1e-20))
    assert snr > 30, float(snr)
