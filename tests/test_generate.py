"""Generation: sampler invariants and the CLI with a tiny checkpoint on the debug codec."""

import json

import pytest
import soundfile as sf
import torch

from stemcodec.codec import load_codec
from stemcodec.generate import main
from stemcodec.model import ModelConfig, MultiStreamTransformer, SamplingConfig, generate_codes


def tiny_model(max_frames=128):
    torch.manual_seed(0)
    cfg = ModelConfig(num_codebooks=4, cardinality=1024, dim=32, num_layers=2, num_heads=2,
                      max_frames=max_frames)
    model = MultiStreamTransformer(cfg).eval()
    model.codec_info = load_codec("debug").info()
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_model().save_pretrained(path)
    return path


def test_cache_gives_the_same_tokens_as_recompute():
    model = tiny_model()
    inst = torch.tensor([[0, 1, 5]])
    greedy = SamplingConfig(temperature=0)
    cached = generate_codes(model, inst, 40, greedy, use_cache=True)
    recomputed = generate_codes(model, inst, 40, greedy, use_cache=False)
    assert cached.shape == (1, 3, 4, 40)
    assert torch.equal(cached, recomputed)


def test_same_seed_same_tokens_other_seed_other_tokens():
    model = tiny_model()
    inst = torch.tensor([[0, 1]])
    run = [generate_codes(model, inst, 30, generator=torch.Generator().manual_seed(s))
           for s in (7, 7, 8)]
    assert torch.equal(run[0], run[1]) and not torch.equal(run[0], run[2])


def test_given_slot_keeps_its_tokens_and_changes_the_others():
    model = tiny_model()
    inst = torch.tensor([[0, 1]])
    given = torch.randint(0, 1024, (1, 2, 4, 30))
    mask = torch.tensor([[True, False]])
    g = torch.Generator().manual_seed(0)
    out = generate_codes(model, inst, 30, SamplingConfig(temperature=0), given, mask, g)
    assert torch.equal(out[:, 0], given[:, 0])
    free = generate_codes(model, inst, 30, SamplingConfig(temperature=0))
    assert not torch.equal(out[:, 1], free[:, 1])  # the other slot listens to the given one


def test_cli_writes_stems_mix_picture_and_meta_bitwise_repeatable(checkpoint, tmp_path, capsys):
    args = ["--slots", "drums,bass,piano", "--checkpoint", str(checkpoint), "--duration", "0.5",
            "--seed", "3", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["bass.wav", "drums.wav", "meta.json", "mix.wav", "piano.wav", "stems.png"]
    for name in ("drums.wav", "mix.wav"):
        a, rate = sf.read(tmp_path / "a" / name)
        b, _ = sf.read(tmp_path / "b" / name)
        assert rate == 24000 and len(a) == round(0.5 * 75) * 320 and (a == b).all()
    mix, _ = sf.read(tmp_path / "a" / "mix.wav")
    assert abs(mix).max() <= 10 ** (-1 / 20) + 1e-6
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["codec"].startswith("debug")


@pytest.mark.parametrize("extra, message", [
    (["--slots", "kazoo"], "unknown instrument or preset 'kazoo'"),
    (["--slots", "full:9"], "has only 6 instruments"),
    (["--duration", "0"], "must be a positive number"),
    (["--duration", "-3"], "must be a positive number"),
    (["--duration", "600"], "longer than this model's"),
    (["--given", "drums=/nope/missing.wav"], "--given drums=/nope/missing.wav"),
    (["--given", "vocals=x.wav"], "'vocals' is not among --slots"),
])
def test_bad_arguments_give_one_line_and_write_nothing(checkpoint, tmp_path, capsys, extra,
                                                       message):
    out = tmp_path / "out"
    argv = ["--slots", "drums,bass", "--checkpoint", str(checkpoint), "--out", str(out),
            "--device", "cpu", "--duration", "0.5", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and message in err[-1]
    assert not out.exists()


def test_instrument_the_checkpoint_lacks_is_refused(tmp_path, capsys):
    model = tiny_model()
    model.config.vocabulary = ["piano"]
    model.instrument = torch.nn.Embedding(1, 32)
    model.save_pretrained(tmp_path / "piano")
    assert main(["--slots", "drums", "--checkpoint", str(tmp_path / "piano")]) == 2
    assert "unknown instrument or preset 'drums'" in capsys.readouterr().err


def test_no_bundled_model_says_how_to_train_one(capsys):
    from stemcodec.checkpoint import bundled
    if bundled("generator-mini") is not None:
        pytest.skip("a default model is bundled")
    assert main(["--slots", "vocals-free:4"]) == 2
    assert "train/train.py" in capsys.readouterr().err
