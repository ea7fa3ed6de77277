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
