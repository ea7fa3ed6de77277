"""train/train.py: learns, resumes exactly, stops cleanly on NaN, refuses foreign caches."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from synthetic_cache import CODEC, make_cache

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("train_script", ROOT / "train" / "train.py")
train_script = importlib.util.module_from_spec(spec)
sys.modules["train_script"] = train_script
spec.loader.exec_module(train_script)

CONFIG = str(ROOT / "configs" / "tiny-test.yaml")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield


@pytest.fixture
def cache(tmp_path):
    return make_cache(tmp_path / "cache", n_songs=6, frames=80)


def train(cache, out, *overrides):
    return train_script.main(["--config", CONFIG, f"data.cache={cache}", f"out={out}",
                              *overrides])


def losses(out):
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_resume_matches_uninterrupted_run(cache, tmp_path):
    full, parts = tmp_path / "full", tmp_path / "parts"
    assert train(cache, full, "steps=14", "save_every=7") == 0
    assert train(cache, parts, "steps=14", "save_every=7", "stop_after=7") == 0
    assert max(losses(parts)) == 7
    assert train(cache, parts, "steps=14", "save_every=7") == 0
    a, b = losses(full), losses(parts)
    assert sorted(a) == sorted(b) == list(range(1, 15))
    for step in a:
        assert abs(a[step] - b[step]) < 1e-6, step
    from stemcodec.model import MultiStreamTransformer
    ma = MultiStreamTransformer.from_pretrained(full)
    mb = MultiStreamTransformer.from_pretrained(parts)
    for (name, pa), pb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.allclose(pa, pb, atol=1e-6), name


def test_loss_falls_and_model_loads_without_training_code(cache, tmp_path):
    out = tmp_path / "run"
    assert train(cache, out, "steps=60", "optim.lr=1e-2", "eval_every=60", "save_every=60") == 0
    log = losses(out)
    assert sum(log[s] for s in range(56, 61)) / 5 < 0.6 * log[1]
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    valid = [r for r in rows if "valid/loss" in r][-1]
    assert {"valid/loss_drums", "valid/loss_bass", "valid/loss_piano",
            "valid/loss_q0", "valid/loss_q1"} <= set(valid)
    from stemcodec.model import MultiStreamTransformer
    model = MultiStreamTransformer.from_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    assert config["codec"]["id"] == CODEC["id"]
    assert config["training"]["instruments"] == [n for n in model.config.vocabulary
                                                 if n in ("drums", "bass", "piano")]
    assert model.config.num_codebooks == 2 and model.config.cardinality == 16
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000060"]


def test_checkpoints_keep_only_the_last_few(cache, tmp_path):
    out = tmp_path / "run"
    assert train(cache, out, "steps=8", "save_every=2", "keep_last=2") == 0
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step_0000006", "step_0000008"]


def test_nan_loss_stops_with_one_line_and_keeps_last_checkpoint(cache, tmp_path, capsys,
                                                               monkeypatch):
    out = tmp_path / "run"
    from stemcodec.model import MultiStreamTransformer
    real = MultiStreamTransformer.loss
    calls = {"n": 0}

    def loss_goes_nan(self, logits, targets, mask):
        calls["n"] += 1
        total, per_q = real(self, logits, targets, mask)
        return (total * float("nan") if calls["n"] > 5 else total), per_q

    monkeypatch.setattr(MultiStreamTransformer, "loss", loss_goes_nan)
    assert train(cache, out, "steps=10", "save_every=4") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: loss became nan at step 5")
    assert "step_0000004" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000004"]
    MultiStreamTransformer.from_pretrained(out)


def test_cache_of_another_codec_is_refused(cache, tmp_path, capsys):
    assert train(cache, tmp_path / "run", "codec_id=encodec_24khz-6kbps") == 2
    err = capsys.readouterr().err
    assert "was made with codec debug-test-codec, the config expects encodec_24khz" in err
    other = make_cache(tmp_path / "other", codec={**CODEC, "id": "another-codec"})
    assert train(cache, tmp_path / "run2", "steps=2") == 0
    capsys.readouterr()
    assert train(other, tmp_path / "run2", "steps=4") == 2
    assert "was trained on codec debug-test-codec tokens" in capsys.readouterr().err


def test_bad_override_names_the_key(cache, tmp_path, capsys):
    assert train(cache, tmp_path / "run", "optim.lrate=1") == 2
    assert "unknown config key 'optim.lrate'" in capsys.readouterr().err


def test_mix_and_no_slot_attention_baselines_train(cache, tmp_path):
    assert train(cache, tmp_path / "mix", "steps=3", "model.mode=mix") == 0
    assert train(cache, tmp_path / "noslot", "steps=3", "model.slot_attention=false") == 0
