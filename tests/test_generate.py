"""Generation: sampler invariants and the CLI with a tiny checkpoint on the debug codec
(the Python API behind it: tests/test_api.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemcodec.codec import load_codec
from stemcodec.generate import main
from stemcodec.model import ModelConfig, MultiStreamTransformer, SamplingConfig, generate_codes


def tiny_model(max_frames=128, window=None):
    torch.manual_seed(0)
    cfg = ModelConfig(num_codebooks=4, cardinality=1024, dim=32, num_layers=2, num_heads=2,
                      max_frames=max_frames)
    model = MultiStreamTransformer(cfg).eval()
    model.codec_info = load_codec("debug").info()
    if window is not None:
        model.training_info = {"window": window, "slot_dropout": True}
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
    (["--window", "0"], "--window 0.0: must be a positive"),
    (["--context", "9"], "must be shorter than the window"),
    (["--temperature", "-1"], "--temperature -1: must be 0 (greedy) or more"),
    (["--temperature", "1,0.5"], "--temperature: 2 values, but this model has 4 codebooks"),
    (["--top-k", "2.5"], "--top-k 2.5: not an integer"),
    (["--top-p", "1.5"], "--top-p 1.5: must be between 0 and 1"),
    (["--keep", "drums"], "add --given-mix FILE"),
    (["--given-mix", "/nope/song.wav", "--separator", "debug", "--keep", "drums,bass"],
     "keeps every slot"),
    (["--given-mix", "/nope/song.wav", "--separator", "debug"], "--given-mix /nope/song.wav"),
    (["--given", "drums"], "use SLOT=FILE"),
    (["--prompt", "bass=/nope/p.wav"], "--prompt bass=/nope/p.wav"),
    (["--cfg", "3"], "--cfg guides the generated slots"),
    (["--cfg", "0"], "--cfg 0.0: must be positive"),
    (["--checkpoint", "/nope/model"], "no config.json there"),
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


def test_an_instrument_the_model_never_heard_is_refused(tmp_path, capsys):
    model = tiny_model()
    model.training_info = {"window": 64, "slot_dropout": True, "instruments": ["drums", "bass"]}
    model.save_pretrained(tmp_path / "ckpt")
    argv = ["--checkpoint", str(tmp_path / "ckpt"), "--device", "cpu", "--duration", "0.2"]
    assert main(["--slots", "drums,piano", *argv, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not know instrument(s) piano" in err and "valid instruments: drums, bass" in err
    assert not (tmp_path / "a").exists()
    assert main(["--slots", "drums,bass", *argv, "--out", str(tmp_path / "b")]) == 0


def test_no_bundled_model_says_how_to_train_one(capsys, monkeypatch, tmp_path):
    import stemcodec.generation.generator
    monkeypatch.setattr(stemcodec.generation.generator, "bundled", lambda name: None)  # none
    assert main(["--slots", "vocals-free:4", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no bundled generator-mini model" in err and "train/train.py" in err
    assert main(["--slots", "solo-piano", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no bundled generator-solo-piano model" in err and "configs/solo-piano.yaml" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("slots, model, count", [("vocals-free:4", "generator-mini", 4),
                                                 ("solo-piano", "generator-solo-piano", 1)])
@pytest.mark.slow
def test_bundled_models_generate_distinct_audible_stems_out_of_the_box(tmp_path, slots, model,
                                                                       count):
    from stemcodec.checkpoint import bundled
    if bundled(model) is None:
        pytest.skip(f"{model} is not bundled in this install")
    out = tmp_path / "out"
    assert main(["--slots", slots, "--duration", "2", "--device", "cpu", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert Path(meta["checkpoint"]).name == model and len(meta["slots"]) == count
    stems = [sf.read(out / f"{slot}.wav", dtype="float32")[0] for slot in meta["slots"]]
    assert all(np.sqrt(np.mean(x ** 2)) > 1e-3 for x in stems)  # none silent
    for i in range(count):  # no two stems alike
        for j in range(i + 1, count):
            assert np.abs(stems[i] - stems[j]).mean() > 1e-3


def test_sliding_window_gives_the_length_asked_and_cache_equals_recompute():
    model = tiny_model(max_frames=24)  # the cache could not hold 50 frames at once
    inst = torch.tensor([[0, 3]])
    greedy = SamplingConfig(temperature=0)
    cached = generate_codes(model, inst, 50, greedy, window=16, context=10)
    recomputed = generate_codes(model, inst, 50, greedy, window=16, context=10, use_cache=False)
    assert cached.shape == (1, 2, 4, 50)
    assert torch.equal(cached, recomputed)
    assert not torch.equal(cached, generate_codes(model, inst, 50, greedy, window=16, context=4))


def test_a_sliding_window_keeps_at_least_8_s_when_it_can():
    """A 10 s training window slides keeping 8 s of the piece (issue 16: at least 8 s); a 4 s
    one keeps 3/4 of itself as before; what is kept is what the sampler gets."""
    from stemcodec.generation.generator import default_context
    assert default_context(750, 75.0) == 600 and default_context(300, 75.0) == 225
    assert default_context(1500, 75.0) == 1125  # 20 s: 3/4 is more than 8 s
    model = tiny_model(max_frames=32)
    inst = torch.tensor([[0, 3]])
    greedy = SamplingConfig(temperature=0)
    default = generate_codes(model, inst, 60, greedy, window=20)
    assert torch.equal(default, generate_codes(model, inst, 60, greedy, window=20, context=15))
    assert not torch.equal(default, generate_codes(model, inst, 60, greedy, window=20, context=16))


def test_prompt_frames_are_kept_and_the_slot_goes_on():
    model = tiny_model()
    inst = torch.tensor([[5]])
    given = torch.randint(0, 1024, (1, 1, 4, 30))
    known = torch.zeros(1, 1, 30, dtype=torch.bool)
    known[..., :12] = True
    out = generate_codes(model, inst, 30, SamplingConfig(temperature=0), given, known)
    assert torch.equal(out[..., :12], given[..., :12])
    assert not torch.equal(out[..., 12:], given[..., 12:])


def test_guidance_changes_the_free_slots_and_keeps_the_given_one():
    model = tiny_model()
    inst = torch.tensor([[0, 1, 2]])
    given = torch.randint(0, 1024, (1, 3, 4, 25))
    mask = torch.tensor([[True, False, False]])
    greedy = SamplingConfig(temperature=0)
    plain = generate_codes(model, inst, 25, greedy, given, mask)
    guided = generate_codes(model, inst, 25, greedy, given, mask, cfg_scale=3.0)
    guided_again = generate_codes(model, inst, 25, greedy, given, mask, cfg_scale=3.0,
                                  use_cache=False)
    assert torch.equal(guided[:, 0], given[:, 0]) and torch.equal(guided, guided_again)
    assert not torch.equal(guided[:, 1:], plain[:, 1:])
    with pytest.raises(ValueError, match="wholly given slot"):
        generate_codes(model, inst, 25, greedy, cfg_scale=3.0)


def read(path):
    wav, rate = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(wav.T.copy()), rate


def test_given_stem_comes_back_as_its_own_tokens_and_stems_add_up_to_the_mix(
        checkpoint, tmp_path, write_tone):
    codec = load_codec("debug")
    drums = write_tone(tmp_path / "drums_in.wav", 1.0, 24000, freq=220.0)
    out = tmp_path / "acc"
    assert main(["--slots", "drums,bass", "--checkpoint", str(checkpoint), "--duration", "0.5",
                 "--given", f"drums={drums}", "--device", "cpu", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["conditions"] == {"drums": f"given {drums}"}
    wav, _ = read(drums)
    frames = round(0.5 * 75)
    expected = codec.decode(codec.encode(wav[None])[..., :frames])[0]
    written, _ = read(out / "drums.wav")
    assert torch.allclose(written, expected * meta["gains"]["drums"], atol=1e-5)
    total = read(out / "drums.wav")[0] + read(out / "bass.wav")[0]
    assert torch.allclose(total, read(out / "mix.wav")[0], atol=1e-5)


@pytest.mark.slow
def test_given_mix_is_separated_and_the_kept_stems_are_forced(checkpoint, tmp_path, write_tone):
    song = write_tone(tmp_path / "song.wav", 1.0, 44100, freq=110.0)
    out = tmp_path / "remix"
    assert main(["--slots", "drums,bass,piano", "--checkpoint", str(checkpoint), "--duration",
                 "0.5", "--given-mix", str(song), "--separator", "debug", "--device", "cpu",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(meta["conditions"]) == ["bass", "drums"]  # the default --keep
    assert "separated from" in meta["conditions"]["drums"]
    assert (out / "piano.wav").exists()


def test_prompt_longer_than_the_duration_is_refused(checkpoint, tmp_path, write_tone, capsys):
    opening = write_tone(tmp_path / "opening.wav", 1.0, 24000, freq=440.0)
    argv = ["--slots", "piano", "--checkpoint", str(checkpoint), "--device", "cpu",
            "--prompt", f"piano={opening}", "--out", str(tmp_path / "o")]
    assert main([*argv, "--duration", "0.8"]) == 2
    assert "the prompt lasts the whole --duration" in capsys.readouterr().err
    assert main([*argv, "--duration", "1.5"]) == 0
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["conditions"] == {"piano": f"prompt {opening}"}


def test_long_duration_slides_past_the_training_window(tmp_path):
    path = tmp_path / "windowed"
    tiny_model(max_frames=40, window=20).save_pretrained(path)
    out = tmp_path / "long"
    assert main(["--slots", "drums,bass", "--checkpoint", str(path), "--duration", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    wav, _ = read(out / "mix.wav")
    assert wav.shape[-1] == 150 * 320
    meta = json.loads((out / "meta.json").read_text())
    assert meta["window"] == 20 and meta["frames"] == 150


def test_guidance_is_refused_for_a_model_trained_without_slot_dropout(tmp_path, write_tone, capsys):
    model = tiny_model()
    model.training_info = {"window": 64, "slot_dropout": False}
    model.save_pretrained(tmp_path / "nodrop")
    drums = write_tone(tmp_path / "d.wav", 1.0, 24000, freq=220.0)
    assert main(["--slots", "drums,bass", "--checkpoint", str(tmp_path / "nodrop"),
                 "--given", f"drums={drums}", "--cfg", "3", "--duration", "0.5"]) == 2
    assert "trained with slot dropout" in capsys.readouterr().err


@pytest.mark.parametrize("slots, expected", [("solo-piano", "generator-solo-piano"),
                                             ("piano", "generator-solo-piano"),
                                             ("solo-piano:01", "generator-solo-piano"),
                                             ("vocals-free:4", "generator-mini"),
                                             ("drums,piano", "generator-mini"),
                                             ("nonsense", "generator-mini")])
def test_the_bundled_model_follows_the_slots(slots, expected):
    from stemcodec.generation.generator import default_model
    assert default_model(slots) == expected


def test_frames_come_out_as_they_finish_and_add_up_to_the_generation():
    """What a stream will decode chunk by chunk: one item per step, a frame from step Q on."""
    from stemcodec.model.sampling import sample_frames
    model = tiny_model()
    inst = torch.tensor([[0, 1]])
    steps = list(sample_frames(model, inst, 20, generator=torch.Generator().manual_seed(4)))
    assert len(steps) == 20 + 4 - 1 and all(s is None for s in steps[:3])
    assert all(s.shape == (1, 2, 4) for s in steps[3:])
    whole = generate_codes(model, inst, 20, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.stack(steps[3:], dim=-1), whole)


def test_forced_positions_names_the_tokens_and_the_mask():
    from stemcodec.model.sampling import forced_positions
    given = torch.randint(0, 1024, (1, 2, 4, 6))
    forced = forced_positions(given, torch.tensor([[True, False]]), special=1024)
    assert forced.mask.dtype == torch.bool and forced.tokens.dtype == torch.long
    assert forced.mask[0, 0, :, 1:-1].any() and not forced.mask[0, 1].any()
    assert torch.equal(forced.tokens[forced.mask], given[:, :1].flatten())  # q-major, as laid out


def test_rows_of_a_batch_draw_from_their_own_seeds():
    """Row b of a batch seeded [s0, s1] is the single run seeded s_b (what makes a piece of
    an evaluation set reproducible with `generate --seed s_b`)."""
    model = tiny_model()
    inst = torch.tensor([[0, 1]])
    alone = [generate_codes(model, inst, 30, generator=[torch.Generator().manual_seed(s)])
             for s in (4, 5)]
    together = generate_codes(model, inst.expand(2, -1), 30,
                              generator=[torch.Generator().manual_seed(s) for s in (4, 5)])
    assert torch.equal(together[0], alone[0][0]) and torch.equal(together[1], alone[1][0])
    assert torch.equal(alone[0], generate_codes(model, inst, 30,
                                                generator=torch.Generator().manual_seed(4)))
    with pytest.raises(ValueError, match="3 generators for a batch of 2"):
        generate_codes(model, inst.expand(2, -1), 30,
                       generator=[torch.Generator().manual_seed(s) for s in range(3)])
