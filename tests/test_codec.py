"""Codec loading through the real code paths, with random weights in the official format."""

import math

import pytest
import torch
from encodec import EncodecModel

from stemcodec.checkpoint import file_sha256
from stemcodec.codec import DEBUG_CONFIG, CodecError, build_encodec, load_codec, save_codec


def write_random_encodec(folder, seed=0):
    """A random encodec_24khz state dict saved as the official file would be, named by hash."""
    torch.manual_seed(seed)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    state = model.state_dict()
    for key, value in state.items():  # random codebooks: untrained ones are all zeros
        if key.endswith("_codebook.embed"):
            state[key] = torch.randn_like(value) * 0.02
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.th"
    torch.save(state, tmp)
    path = folder / f"encodec_24khz-{file_sha256(tmp)[:8]}.th"
    tmp.rename(path)
    return path


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
    with pytest.raises(CodecError, match="unknown codec 'mp3'"):
        load_codec("mp3")


def test_chunked_encoding_matches_whole_encoding(repo):
    codec = load_codec("encodec_24khz", 6, repository=repo)
    wav = noise(3.0, seed=2)
    whole = codec.encode(wav)
    codec.chunk_frames, codec.context_frames = 60, 30  # 0.8 s chunks, 0.4 s context
    chunked = codec.encode(wav)
    assert chunked.shape == whole.shape
    # the encoder's LSTM sees a shorter past at each seam: the first codebook barely moves
    assert (chunked[:, 0] == whole[:, 0]).float().mean() > 0.9
    assert codec.decode(chunked).shape[-1] == whole.shape[-1] * 320


def test_own_checkpoint_round_trip_and_debug_determinism(tmp_path):
    torch.manual_seed(3)
    model = build_encodec(DEBUG_CONFIG)
    save_codec(model, {**DEBUG_CONFIG, "name": "mine"}, tmp_path / "mine")
    codec = load_codec(str(tmp_path / "mine"))
    wav = noise(0.3)
    assert codec.name == "mine" and codec.num_codebooks == 4
    assert torch.equal(codec.encode(wav), load_codec(str(tmp_path / "mine")).encode(wav))
    assert torch.equal(load_codec("debug").encode(wav), load_codec("debug").encode(wav))
    assert "debug" in load_codec("debug").codec_id


def test_mini_not_bundled_says_how_to_train_it():
    from stemcodec.checkpoint import bundled
    if bundled("codec-mini") is not None:
        pytest.skip("the mini codec is bundled in this install")
    with pytest.raises(CodecError, match="train/train_codec.py"):
        load_codec("mini")


def test_wrong_channels_refused():
    with pytest.raises(ValueError, match="expected wav"):
        load_codec("debug").encode(torch.zeros(1, 2, 100))
