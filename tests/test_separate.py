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
    assert sep.sources == SIX_SOURCES


def test_corrupt_th_is_refused_before_unpickling(tmp_path):
    path = write_th_bag(tmp_path)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SeparatorError, match="checksum mismatch"):
        load_separator("tiny6", repo=tmp_path)


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
                                             "5c90dfd2.safetensors.*--demucs-repo"):
        load_separator("htdemucs_6s", repo=tmp_path)
    with pytest.raises(SeparatorError, match="unknown separator 'spleeter'"):
        load_separator("spleeter")
