import pytest
import torch

from stemcodec.checkpoint import CheckpointError, load_pretrained, save_pretrained, state_hash


def test_round_trip_and_atomic_replace(tmp_path):
    state = {"w": torch.randn(3, 4), "b": torch.arange(5)}
    out = save_pretrained(tmp_path / "ckpt", state, {"dim": 4})
    loaded, cfg = load_pretrained(out)
    assert cfg == {"dim": 4}
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])
    save_pretrained(out, {"w": torch.zeros(1)}, {"dim": 1})
    loaded, cfg = load_pretrained(out)
    assert cfg == {"dim": 1} and list(loaded) == ["w"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_not_a_checkpoint_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="is not a stemcodec checkpoint"):
        load_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_pretrained(tmp_path)


def test_state_hash_changes_with_any_weight():
    a = {"w": torch.zeros(4)}
    b = {"w": torch.zeros(4)}
    assert state_hash(a) == state_hash(b)
    b["w"][2] = 1e-6
    assert state_hash(a) != state_hash(b)


def test_half_copy_halves_the_file_and_loads_into_a_float_model(tmp_path):
    from stemcodec.checkpoint import copy_pretrained
    from stemcodec.model import ModelConfig, MultiStreamTransformer
    torch.manual_seed(0)
    model = MultiStreamTransformer(ModelConfig(num_codebooks=2, cardinality=16, dim=16,
                                               num_layers=1, num_heads=2, max_frames=32))
    model.save_pretrained(tmp_path / "full")
    copy_pretrained(tmp_path / "full", tmp_path / "half", half=True)
    size = {n: (tmp_path / n / "model.safetensors").stat().st_size for n in ("full", "half")}
    assert size["half"] < 0.6 * size["full"]
    stored, _ = load_pretrained(tmp_path / "half")
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    loaded = MultiStreamTransformer.from_pretrained(tmp_path / "half")
    for name, value in loaded.state_dict().items():
        assert value.dtype == torch.float32  # cast back on loading
        assert torch.allclose(value, model.state_dict()[name], atol=1e-3, rtol=1e-3)
