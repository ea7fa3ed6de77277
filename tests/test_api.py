"""The Python API of generation (StemGenerator): the same tensors as the CLI's files, the same
seed the same tensors, the CLI's one-line errors, and the evaluation sets' pieces
(stemcodec.evaluation.stem_sets) reproducible from their seeds. Tiny checkpoints on the debug codec."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from stemcodec import GenerationOutput, StemGenerator
from stemcodec.errors import UserError
from stemcodec.evaluation.stem_sets import make_set
from stemcodec.generate import main
from tiny_models import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FILES = ["bass.wav", "drums.wav", "meta.json", "mix.wav", "piano.wav", "stems.png"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("api") / "tiny")


@pytest.fixture(scope="module")
def generator(checkpoint):
    return StemGenerator.from_pretrained(checkpoint, device="cpu")


def read(path: Path) -> torch.Tensor:
    wav, _ = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(wav.T.copy())


@pytest.mark.slow
def test_api_tensors_are_the_files_the_cli_writes(checkpoint, generator, tmp_path, write_tone):
    drums = write_tone(tmp_path / "drums_in.wav", 1.0, 24000, freq=220.0)
    assert main(["--slots", "drums,bass,piano", "--checkpoint", str(checkpoint), "--seed", "3",
                 "--duration", "1.2", "--given", f"drums={drums}", "--top-k", "50",
                 "--temperature", "1,0.9,0.8,0.8", "--device", "cpu",
                 "--out", str(tmp_path / "cli")]) == 0  # 1.2 s slides past the 20-frame window
    out = generator.generate("drums,bass,piano", 1.2, seed=3, given={"drums": drums}, top_k=50,
                             temperature=[1, 0.9, 0.8, 0.8])
    assert isinstance(out, GenerationOutput) and out.sample_rate == 24000
    assert list(out.stems) == ["drums", "bass", "piano"] and out.codes.shape == (3, 4, 90)
    for slot, wav in out.stems.items():
        assert wav.shape == (1, 90 * 320)
        assert torch.equal(wav, read(tmp_path / "cli" / f"{slot}.wav"))
    assert torch.equal(out.mix, read(tmp_path / "cli" / "mix.wav"))
    meta = json.loads((tmp_path / "cli" / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["conditions"] == {"drums": f"given {drums}"}
    assert meta["gains"] == pytest.approx(out.meta["gains"])
    assert out.save(tmp_path / "api") == tmp_path / "api"
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == FILES
    assert torch.equal(read(tmp_path / "api" / "bass.wav"), read(tmp_path / "cli" / "bass.wav"))


def test_same_seed_same_tensors_other_seed_other_tensors(generator):
    a, b, c = (generator.generate("drums,bass", 0.4, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.codes, b.codes) and torch.equal(a.mix, b.mix)
    assert all(torch.equal(a.stems[s], b.stems[s]) for s in a.stems)
    assert not torch.equal(a.codes, c.codes) and not torch.equal(a.mix, c.mix)


def test_stems_decoded_one_at_a_time_sound_as_one_batch_decoded(generator, monkeypatch):
    """On a CPU the stems are decoded one at a time (faster there): the same audio as the
    batch decode, to float rounding."""
    codec = generator.model_for("drums,bass").codec
    rows = []
    decode = codec.decode
    monkeypatch.setattr(codec, "decode", lambda codes, *a: rows.append(len(codes)) or
                        decode(codes, *a))
    one_at_a_time = generator.generate_batch([4, 5], "drums,bass", 0.4)
    assert rows == [1, 1, 1, 1]  # 2 pieces of 2 stems
    monkeypatch.setattr(generator, "decode_per_stem", False)
    batched = generator.generate_batch([4, 5], "drums,bass", 0.4)
    assert rows[4:] == [4]
    for a, b in zip(one_at_a_time, batched):
        assert torch.equal(a.codes, b.codes)
        for slot in a.decoded:
            assert torch.allclose(a.decoded[slot], b.decoded[slot], atol=1e-6)
        assert torch.allclose(a.mix, b.mix, atol=1e-6)


def test_the_bundled_codec_decodes_a_stem_alone_as_in_a_batch():
    """What decoding one stem at a time rests on, for the codec the bundled models use."""
    from stemcodec.checkpoint import bundled
    from stemcodec.codec import load_codec
    codec = load_codec(str(bundled("codec-mini")))
    codes = torch.randint(0, codec.cardinality, (3, codec.num_codebooks, 40),
                          generator=torch.Generator().manual_seed(0))
    batched = codec.decode(codes)
    alone = torch.cat([codec.decode(codes[i:i + 1]) for i in range(3)])
    assert torch.allclose(alone, batched, atol=1e-5)


def test_a_batch_gives_each_seed_the_piece_it_gives_alone(checkpoint, generator, tmp_path):
    batch = generator.generate_batch([4, 5], "drums,bass", 0.4)
    alone = generator.generate("drums,bass", 0.4, seed=5)
    assert [o.meta["seed"] for o in batch] == [4, 5]
    assert torch.equal(batch[1].codes, alone.codes)
    assert torch.allclose(batch[1].mix, alone.mix, atol=1e-6)
    assert main(["--slots", "drums,bass", "--checkpoint", str(checkpoint), "--seed", "4",
                 "--num-samples", "2", "--duration", "0.4", "--device", "cpu",
                 "--out", str(tmp_path / "n")]) == 0
    assert torch.allclose(read(tmp_path / "n" / "sample_1" / "mix.wav"), alone.mix, atol=1e-6)


def test_the_stems_add_up_to_the_mix_and_the_decoded_levels_are_kept(generator):
    out = generator.generate("drums,bass,piano", 0.4, seed=1)
    assert torch.allclose(sum(out.stems.values()), out.mix, atol=1e-5)
    for slot, wav in out.decoded.items():
        assert torch.allclose(wav * out.meta["gains"][slot], out.stems[slot])
    assert "drums, bass, piano; 0.4" in repr(out)


@pytest.mark.parametrize("options, message", [
    ({"duration": 0}, "--duration 0: must be a positive number of seconds"),
    ({"top_k": 2.5}, "--top-k 2.5: not an integer"),
    ({"temperature": [1, 0.5]}, "--temperature: 2 values, but this model has 4 codebooks"),
    ({"top_p": 1.5}, "--top-p 1.5: must be between 0 and 1"),
    ({"slots": "kazoo"}, "unknown instrument or preset 'kazoo'"),
    ({"given": {"vocals": "x.wav"}}, "'vocals' is not among --slots drums,bass"),
    ({"given": {"drums": "/nope/d.wav"}}, "--given drums=/nope/d.wav"),
    ({"keep": ["drums"]}, "add --given-mix FILE"),
    ({"cfg": 3.0}, "--cfg guides the generated slots"),
    ({"window": 0.1, "context": 0.5}, "must be shorter than the window"),
])
def test_mistakes_are_the_clis_one_line_errors(generator, options, message):
    kwargs = {"slots": "drums,bass", "duration": 0.4, **options}
    with pytest.raises(UserError, match=None) as info:
        generator.generate(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_save_replaces_an_earlier_generation_but_no_other_files(generator, tmp_path):
    out = generator.generate(slots="drums,bass", duration=0.5, seed=0)
    out.save(tmp_path / "run")
    out.save(tmp_path / "run")  # a generation again: replaced
    assert (tmp_path / "run" / "meta.json").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="holds files that are not a generation"):
        out.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_context_shorter_than_a_frame_is_one_line(generator):
    with pytest.raises(UserError, match="--context 0.005: must hold at least one frame"):
        generator.generate(slots="drums,bass", duration=1.0, seed=0, context=0.005)


def test_from_pretrained_takes_a_training_checkpoint_or_names_what_is_missing(tmp_path):
    step = tmp_path / "run" / "checkpoints" / "step_0000010"
    tiny_checkpoint(step / "model")  # what train/train.py keeps beside the accelerate state
    assert StemGenerator.from_pretrained(step, device="cpu").generate("drums", 0.2).codes.shape \
        == (1, 4, 15)
    with pytest.raises(UserError, match="no config.json there"):
        StemGenerator.from_pretrained(tmp_path / "nope")


def test_the_bundled_default_follows_the_slots():
    from stemcodec.checkpoint import bundled
    if bundled("generator-solo-piano") is None or bundled("generator-mini") is None:
        pytest.skip("the bundled generators are not in this install")
    g = StemGenerator.from_pretrained(device="cpu")  # loads nothing yet
    assert Path(g.model_for("solo-piano").checkpoint).name == "generator-solo-piano"
    assert Path(g.model_for("vocals-free:4").checkpoint).name == "generator-mini"
    out = g.generate(slots="solo-piano", duration=0.3, seed=0)
    assert list(out.stems) == ["piano"] and out.meta["checkpoint"].endswith("solo-piano")


def test_a_mix_model_makes_a_mix_and_takes_no_given_stems(tmp_path, write_tone):
    g = StemGenerator.from_pretrained(tiny_checkpoint(tmp_path / "mix", mode="mix"),
                                      device="cpu")
    out = g.generate("vocals-free:4", 0.4, seed=2)
    assert out.stems == {} and out.mix.shape == (1, 30 * 320) and out.meta["slots"] == ["mix"]
    out.save(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["meta.json", "mix.wav",
                                                                    "stems.png"]
    drums = write_tone(tmp_path / "d.wav")
    with pytest.raises(UserError, match="mix-mode model"):
        g.generate("drums,bass", 0.4, given={"drums": drums})


def test_stem_set_pieces_are_what_generate_makes_for_their_seeds(checkpoint, generator,
                                                                 tmp_path):
    """Piece `seed5` of a set generated in batches is `generate --seed 5` (once `seed4-1`,
    drawn from the batch's shared generator, which no single run could reproduce)."""
    out = tmp_path / "set"
    make_set(out, "drums,bass", checkpoint=str(checkpoint), pieces=3, batch=2, seed=4,
             duration=0.4)
    assert json.loads((out / "set.json").read_text())["pieces"] == ["seed4", "seed5", "seed6"]
    alone = generator.generate("drums,bass", 0.4, seed=5)
    for slot in ("drums", "bass"):
        assert torch.allclose(read(out / "seed5" / f"{slot}.wav"), alone.decoded[slot],
                              atol=1e-6)
    assert main(["--slots", "drums,bass", "--checkpoint", str(checkpoint), "--seed", "5",
                 "--duration", "0.4", "--device", "cpu", "--out", str(tmp_path / "cli")]) == 0
    gains = json.loads((tmp_path / "cli" / "meta.json").read_text())["gains"]
    assert torch.allclose(read(out / "seed5" / "bass.wav") * gains["bass"],
                          read(tmp_path / "cli" / "bass.wav"), atol=1e-6)


def test_import_stemcodec_stays_light():
    code = "import sys, stemcodec; assert 'torch' not in sys.modules; print(stemcodec.__all__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "StemGenerator" in done.stdout
