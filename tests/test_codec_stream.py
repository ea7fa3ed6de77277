"""The streaming decoder (Codec.stream, stemcodec/codec/stream.py): pushes and flush together
are Codec.decode of the whole sequence, however the codes are pushed, for each kind of
decoder, and audio comes out as soon as its frames are final."""

import pytest
import torch

from stemcodec.codec import DEBUG_CONFIG, Codec, build_codec, load_codec

HOP = 320


def small_codec(**overrides) -> Codec:
    """A debug-sized codec of the mini layout with `overrides`, random weights of a fixed seed."""
    cfg = {**DEBUG_CONFIG, **overrides}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = build_codec(cfg)
    if cfg["decoder"] == "istft" and cfg.get("decoder_phase") == "accumulated":
        with torch.no_grad():  # a frequency head that says something (it starts at zero)
            model.decoder.frequency.weight.normal_(0.0, 0.3,
                                                   generator=torch.Generator().manual_seed(1))
    return Codec(model, "test", 3.0, "0" * 12)


def codec_of(kind: str) -> Codec:
    if kind == "debug":  # SEANet without LSTM: windowed blocks
        codec = load_codec("debug")
    elif kind == "lstm":  # SEANet with its LSTM, as the bundled mini codec: recurrent
        codec = small_codec(lstm=1)
    elif kind == "istft":  # looks 2 frames ahead and carries its running phase
        codec = small_codec(decoder="istft", decoder_dim=32, decoder_layers=3,
                            decoder_phase="accumulated", decoder_noise=True)
    else:  # a non-causal decoder with an LSTM (as EnCodec 48 kHz): whole chunks only
        codec = small_codec(lstm=1, causal=False)
    # several decode chunks, so the stream must hand over what decode hands over at a seam:
    # the running phase, and the LSTM started afresh on each chunk's left context
    codec.chunk_frames, codec.context_frames = 100, 30
    if kind == "noncausal":
        codec.decode_lookahead = codec.context_frames
    return codec


def codes_of(frames: int = 230, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 1024, (2, 4, frames), generator=torch.Generator().manual_seed(seed))


def run(codec: Codec, codes: torch.Tensor, block: int, sizes: list[int],
        check_early: bool = True) -> torch.Tensor:
    """Push `codes` in pieces of `sizes` (cycled), then flush; the audio of it all."""
    stream = codec.stream(block)
    out, at, i = [], 0, 0
    while at < codes.shape[-1]:
        n = sizes[i % len(sizes)]
        wav = stream.push(codes[..., at: at + n])
        at, i = min(at + n, codes.shape[-1]), i + 1
        assert wav.shape[:2] == (2, 1) and wav.shape[-1] % HOP == 0
        out.append(wav)
        if check_early:  # everything final is out, but for the block still filling up
            assert sum(w.shape[-1] for w in out) // HOP >= at - codec.decode_lookahead - block
    out.append(stream.flush())
    return torch.cat(out, dim=-1)


@pytest.mark.parametrize("kind", ["debug", "lstm", "istft", "noncausal"])
@pytest.mark.parametrize("sizes", [[1], [3, 7, 1, 11], [230]])
def test_pushes_and_flush_are_decode_whatever_the_push_sizes(kind, sizes):
    codec = codec_of(kind)
    codes = codes_of()
    whole = codec.decode(codes)
    streamed = run(codec, codes, 19, sizes, check_early=kind != "noncausal")
    assert streamed.shape == whole.shape == (2, 1, 230 * HOP)
    assert torch.allclose(streamed, whole, atol=1e-5 * whole.abs().max())


@pytest.mark.parametrize("kind", ["debug", "istft"])
def test_blocks_of_a_decode_chunk_give_decode_bit_for_bit(kind):
    codec = codec_of(kind)
    codes = codes_of()
    assert torch.equal(run(codec, codes, codec.chunk_frames, [7]), codec.decode(codes))


def test_the_lstm_state_is_carried_not_rebuilt_from_context():
    """Re-reading each block with left context, as the windowed decoders are read, does not
    give an LSTM decoder's audio (decode with chunks of a block's size differs); carrying its
    state does. (A short context: this small random LSTM forgets within 30 frames, the
    bundled mini codec's does not: 7 % of the peak off at 75.)"""
    codec = codec_of("lstm")
    codec.context_frames = 4
    codes = codes_of()
    whole = codec.decode(codes)
    assert torch.allclose(run(codec, codes, 19, [1]), whole, atol=1e-5 * whole.abs().max())
    codec.chunk_frames = 19
    assert not torch.allclose(codec.decode(codes), whole, atol=1e-3 * whole.abs().max())


@pytest.mark.parametrize("kind, first", [("debug", 19), ("lstm", 19), ("istft", 21),
                                         ("noncausal", 130)])
def test_audio_comes_out_once_a_block_and_its_lookahead_are_in(kind, first):
    """One frame at a time: a causal decoder's first block comes with its last frame (the
    iSTFT's 2 frames of overlap later); a non-causal one's only with a whole decode chunk
    and its right context."""
    codec = codec_of(kind)
    codes = codes_of()
    stream = codec.stream(19)
    lengths = [stream.push(codes[..., t: t + 1]).shape[-1] for t in range(first)]
    assert lengths[:-1] == [0] * (first - 1) and lengths[-1] > 0
    assert stream.decoded == lengths[-1] // HOP


def test_unit_rms_codecs_stream_at_the_reference_level():
    codec = codec_of("debug")
    codec.unit_rms = True
    codes = codes_of(60)
    whole = codec.decode(codes)
    assert torch.allclose(run(codec, codes, 8, [5]), whole, atol=1e-5 * whole.abs().max())


def test_short_and_empty_sequences():
    codec = codec_of("lstm")
    for frames in (1, 5, 8, 9):
        codes = codes_of(frames)
        whole = codec.decode(codes)
        assert torch.allclose(run(codec, codes, 8, [1]), whole, atol=1e-5 * whole.abs().max())
    assert codec.stream().flush().shape[-1] == 0


def test_mistakes_are_refused():
    codec = codec_of("debug")
    stream = codec.stream(8)
    stream.push(codes_of(3))
    with pytest.raises(ValueError, match=r"but this stream decodes \[2, 4\]"):
        stream.push(codes_of(3)[:1])
    with pytest.raises(ValueError, match="codes must lie in"):
        stream.push(torch.full((2, 4, 1), 1024))
    stream.flush()
    with pytest.raises(ValueError, match="was flushed"):
        stream.push(codes_of(1))
