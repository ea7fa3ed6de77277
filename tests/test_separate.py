"""Separator loading through the real code paths, with a tiny random HTDemucs on disk."""

import json
from fractions import Fraction

import pytest
import torch
from safetensors.torch import save_file

from stemcodec.checkpoint import file_sha256
from stemcodec.separate import SIX_SOURCES, SeparatorError, load_separator

KWARGS = dict(channels=8, depth=2, nfft=512, t_layers=1, t_heads=2, samplerate=44100,
              dconv_depth=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Demucs on 2 shared cores: one intra-op thread is several times faster than two fighting
    over them (measured), and keeps this file well under its 40 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_htdemucs():
    from demucs.htdemucs import HTDemucs
    torch.manual_seed(0)
    return HTDemucs(SIX_SOURCES, segment=Fraction(2), **KWARGS)


def write_safetensors_bag(folder, name="tiny6", sig="0123abcd", klass="demucs.htdemucs.HTDemucs"):
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_htdemucs()
    kwargs = {**KWARGS, "segment": {"_type": "fraction", "numerator": 2, "denominator": 1}}
    meta = {"klass": klass, "args": json.dumps([SIX_SOURCES]), "kwargs": json.dumps(kwargs)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / f"{sig}.safetensors"), metadata=meta)
    (folder / f"{name}.yaml").write_text(f"models: ['{sig}']\n")
    return model


def write_th_bag(folder, name="tiny6", sig="89abcdef"):
    from demucs.htdemucs import HTDemucs
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_htdemucs()
    package = {"klass": HTDemucs, "args": [SIX_SOURCES],
               "kwargs": {**KWARGS, "segment": Fraction(2)}, "state": model.state_dict()}
    tmp = folder / "tmp.th"
    torch.save(package, tmp)
    path = folder / f"{sig}-{file_sha256(tmp)[:8]}.th"
    tmp.rename(path)
    (folder / f"{name}.yaml").write_text(f"models: ['{sig}']\n")
    return path


def mix(seconds=1.0):
    return torch.randn(2, int(44100 * seconds), generator=torch.Generator().manual_seed(0)) * 0.1


@pytest.mark.slow
def test_safetensors_bag_loads_and_separates(tmp_path):
    reference = write_safetensors_bag(tmp_path)
    sep = load_separator("tiny6", repo=tmp_path)
    assert sep.sources == SIX_SOURCES and sep.sample_rate == 44100 and sep.channels == 2
    for (name, a), b in zip(sep.model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    stems = sep.separate(mix())
    assert list(stems) == SIX_SOURCES
    assert all(s.shape == (2, 44100) and torch.isfinite(s).all() for s in stems.values())
    assert list(sep.map_to_slots(stems, ["piano", "drums", "kazoo"])) == ["piano", "drums"]


def test_legacy_th_loads_after_checksum(tmp_path):
    write_th_bag(tmp_path)
    sep = load_separator("tiny6", repo=tmp_path)
    assert sep.sources == SIX_SOURCES and sep.sample_rate == 44100
    for (name, a), b in zip(sep.model.state_dict().items(), tiny_htdemucs().state_dict().values()):
        assert torch.equal(a, b), name


def test_corrupt_th_is_refused_before_unpickling(tmp_path):
    path = write_th_bag(tmp_path)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SeparatorError, match="checksum mismatch \\(expected .* got ") as err:
        load_separator("tiny6", repo=tmp_path)
    assert "\n" not in str(err.value)


def test_th_without_checksum_in_name_is_refused(tmp_path):
    path = write_th_bag(tmp_path)
    path.rename(tmp_path / "89abcdef.th")
    with pytest.raises(SeparatorError, match="needs its checksum in the name"):
        load_separator("tiny6", repo=tmp_path)


def test_foreign_class_in_safetensors_is_refused(tmp_path):
    write_safetensors_bag(tmp_path, klass="os.system")
    with pytest.raises(SeparatorError, match="not a demucs model: refused"):
        load_separator("tiny6", repo=tmp_path)


def test_missing_weights_and_unknown_names_are_one_line(tmp_path):
    (tmp_path / "htdemucs_6s.yaml").write_text("models: ['5c90dfd2']\n")
    with pytest.raises(SeparatorError, match="missing Demucs weights for htdemucs_6s: "
                                             "5c90dfd2.safetensors.*--demucs-repo") as err:
        load_separator("htdemucs_6s", repo=tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(SeparatorError, match="unknown separator 'spleeter'; valid: htdemucs_6s, "
                                             "htdemucs, debug"):
        load_separator("spleeter")


def test_official_name_needs_no_yaml_in_the_folder(tmp_path):
    # the torch hub cache holds only `<sig>-<sha>.th`: the bag comes from demucs/remote
    write_th_bag(tmp_path, name="unused", sig="955717e8")
    sep = load_separator("htdemucs", repo=tmp_path)
    assert sep.name == "htdemucs" and sep.sources == SIX_SOURCES


def test_hf_cache_is_read_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    snapshot = tmp_path / "hf" / "models--adefossez--HTDemucs-6s" / "snapshots" / "abc123"
    write_safetensors_bag(snapshot, name="htdemucs_6s", sig="5c90dfd2")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert load_separator("htdemucs_6s").sources == SIX_SOURCES
    (snapshot / "5c90dfd2.safetensors").unlink()
    with pytest.raises(SeparatorError, match=f"not found in {tmp_path / 'hf'} "
                                             "\\(adefossez/HTDemucs-6s\\) and .*hub"):
        load_separator("htdemucs_6s")


def test_short_checksum_and_non_module_classes_are_refused(tmp_path):
    path = write_th_bag(tmp_path)
    path.rename(tmp_path / f"89abcdef-{path.stem.split('-')[1][:4]}.th")
    with pytest.raises(SeparatorError, match="needs its checksum in the name"):
        load_separator("tiny6", repo=tmp_path / "")
    write_safetensors_bag(tmp_path / "f", klass="demucs.apply.apply_model")
    with pytest.raises(SeparatorError, match="not a demucs model: refused"):
        load_separator("tiny6", repo=tmp_path / "f")
    write_safetensors_bag(tmp_path / "g", klass="demucs.nothing.Here")
    with pytest.raises(SeparatorError, match="which this demucs does not have"):
        load_separator("tiny6", repo=tmp_path / "g")


@pytest.mark.slow
def test_debug_separator_long_input_and_slots():
    state = torch.random.get_rng_state()
    sep = load_separator("debug")
    assert torch.equal(state, torch.random.get_rng_state())  # fixed seed, global RNG untouched
    again = load_separator("debug")
    assert all(torch.equal(a, b) for a, b in zip(sep.model.state_dict().values(),
                                                 again.model.state_dict().values()))
    wav = mix(2.5)  # longer than the 2 s segment: separated in overlapping chunks
    stems = sep.separate(wav, sample_rate=44100)
    assert list(stems) == SIX_SOURCES
    assert all(s.shape == wav.shape and torch.isfinite(s).all() for s in stems.values())
    with pytest.raises(ValueError, match="expects 44100 Hz"):
        sep.separate(wav, sample_rate=48000)
    with pytest.raises(ValueError, match="expected wav"):
        sep.separate(wav[:1])
    four = {k: stems[k] for k in ("drums", "bass", "other", "vocals")}  # what htdemucs gives
    assert list(sep.map_to_slots(four, ["drums", "guitar", "piano", "vocals"])) == ["drums",
                                                                                   "vocals"]
