"""Streaming generation (StemGenerator.stream, `generate --stream`): the same audio as
`generate` for the same seed, chunk by chunk while it is sampled, and the WAV stream a player
reads. Tiny checkpoints on the debug codec, as in test_api.py."""

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemcodec import StemGenerator
from stemcodec.errors import UserError
from stemcodec.generate import main
from stemcodec.generation.streaming import StreamLevels
from tiny_models import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SLOTS = "drums,bass,piano"
LIMIT = 10 ** (-1 / 20)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("stream") / "tiny")


@pytest.fixture(scope="module")
def generator(checkpoint):
    return StemGenerator.from_pretrained(checkpoint, device="cpu")


def joined(chunks, key):
    """The chunks' `key` (a slot of .decoded / .stems, or "mix") end to end."""
    pick = (lambda c: c.mix) if key == "mix" else (lambda c: {**c.stems, **c.decoded}[key])
    return torch.cat([pick(c) for c in chunks], dim=-1)


def test_streamed_audio_is_the_generated_audio_for_the_same_seed(generator, tmp_path,
                                                                 write_tone):
    drums = write_tone(tmp_path / "drums_in.wav", 0.6, 24000, freq=220.0)
    options = dict(given={"drums": drums}, top_k=50, temperature=[1, 0.9, 0.8, 0.8])
    out = generator.generate(SLOTS, 1.2, seed=3, **options)
    stream = generator.stream(SLOTS, 1.2, seed=3, block=0.2, **options)
    chunks = list(stream)
    assert len(chunks) == 6 and [c.start for c in chunks] == [i * 4800 for i in range(6)]
    for slot in ("drums", "bass", "piano"):  # the model's own levels, sample for sample
        assert joined(chunks, slot).shape == out.decoded[slot].shape == (1, 90 * 320)
        assert torch.allclose(joined(chunks, slot), out.decoded[slot], atol=1e-5)
    done = stream.output  # the whole piece, as generate returns it
    assert torch.equal(done.codes, out.codes) and done.meta["gains"] == pytest.approx(
        out.meta["gains"])
    assert torch.allclose(done.mix, out.mix, atol=1e-5)
    for c in chunks:  # the stream's own levels: stems add up to the mix, never clipped
        assert torch.allclose(sum(c.stems.values()), c.mix, atol=1e-6)
        assert c.mix.abs().max() <= LIMIT + 1e-6
    assert stream.timing["first_audio_s"] < stream.timing["wall_s"]


def test_chunks_come_while_the_tokens_are_sampled(generator):
    """The first chunk is out after its block of frames (and the delay pattern's 3 steps),
    long before the sampler's last frame."""
    frames_done = []
    sample = generator._frames

    def counting(*args, **kwargs):
        for frame in sample(*args, **kwargs):
            frames_done.append(1)
            yield frame

    generator._frames = counting
    try:
        stream = generator.stream(SLOTS, 1.2, seed=1, block=0.2)
        first = next(stream)
        assert len(frames_done) == 15 and first.mix.shape[-1] == 15 * 320
        rest = list(stream)
    finally:
        del generator._frames
    assert len(frames_done) == 90 and sum(c.mix.shape[-1] for c in rest) == 75 * 320


def test_a_mix_model_streams_its_mix(tmp_path):
    g = StemGenerator.from_pretrained(tiny_checkpoint(tmp_path / "mix", mode="mix"),
                                      device="cpu")
    out = g.generate(duration=0.5, seed=2)
    stream = g.stream(duration=0.5, seed=2, block=0.2)
    chunks = list(stream)
    assert all(c.stems == {} for c in chunks) and stream.names == ("mix",)
    assert torch.allclose(joined(chunks, "mix"), out.decoded["mix"] * stream.levels.mix_gain,
                          atol=1e-5) and stream.levels.changes == []
    assert torch.allclose(stream.output.mix, out.mix, atol=1e-5)


def test_stream_levels_are_decided_as_the_chunks_come():
    """A stem's gain comes from its first audible chunk, kept after; the mix's gain goes down
    when a chunk would peak over -1 dBFS, and stays down."""
    levels = StreamLevels(("a", "b"), mixed=False)
    quiet, silent = torch.full((1, 100), 0.05), torch.zeros(1, 100)  # -26 dBFS, silence
    stems, mix = levels.apply({"a": quiet, "b": silent}, 0)
    assert levels.gains["a"] == pytest.approx(2.0) and levels.gains["b"] is None
    assert levels.mix_gain == 1.0 and torch.allclose(mix, quiet * 2)
    loud = torch.full((1, 100), 0.5)
    stems, mix = levels.apply({"a": quiet, "b": loud}, 100)
    assert levels.gains["b"] == pytest.approx(0.2)  # -20 dBFS from its first audible chunk
    assert levels.gains["a"] == pytest.approx(2.0)  # kept
    stems, mix = levels.apply({"a": quiet * 20, "b": loud}, 200)  # 2.1 before the limit
    assert mix.abs().max() == pytest.approx(LIMIT) and levels.changes == [(200, levels.mix_gain)]
    stems, mix = levels.apply({"a": quiet, "b": silent}, 300)
    assert torch.allclose(mix, quiet * 2 * levels.mix_gain)  # it does not come back up
    assert torch.allclose(stems["a"] + stems["b"], mix)


def test_mistakes_are_one_line_before_anything_is_sampled(generator):
    with pytest.raises(UserError, match="--duration"):
        generator.stream(SLOTS, -1.0)
    with pytest.raises(UserError, match="block 0"):
        generator.stream(SLOTS, 1.0, block=0)


def run_cli(args, monkeypatch, tty=False):
    """main(args) with standard output a pipe (or a terminal); (exit code, stdout bytes)."""
    out = io.BytesIO()
    stdout = io.TextIOWrapper(out, write_through=True)
    monkeypatch.setattr(stdout, "isatty", lambda: tty)
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(args)
    stdout.flush()
    return code, out.getvalue()


def test_stream_to_standard_output_is_a_wav_of_the_mix(checkpoint, tmp_path, monkeypatch):
    args = ["--slots", SLOTS, "--checkpoint", str(checkpoint), "--duration", "1.2",
            "--seed", "3", "--device", "cpu"]
    code, data = run_cli([*args, "--stream", "-", "--out", str(tmp_path / "s")], monkeypatch)
    assert code == 0
    # nothing but the WAV: a header of unknown length, then every sample as PCM16
    assert data[:4] == b"RIFF" and data[36:40] == b"data"
    assert struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF - 36
    assert len(data) == 44 + 2 * 90 * 320
    pcm, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    assert rate == 24000 and pcm.shape == (90 * 320, 1)
    # the folder written beside it holds the same mix, as float
    mix, _ = sf.read(tmp_path / "s" / "mix.wav", dtype="float32", always_2d=True)
    assert np.abs(pcm.astype(np.int32) - np.round(mix * 32767)).max() <= 1
    # and that mix is generate's decoded stems at the stream's levels (meta.json)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["levels"] == "stream" and meta["seed"] == 3
    out = StemGenerator.from_pretrained(checkpoint, device="cpu").generate(SLOTS, 1.2, seed=3)
    mix_gain = torch.ones(90 * 320)
    for start, gain in meta["mix_gains"]:
        mix_gain[round(start * 24000):] = gain
    expected = sum(out.decoded[s] * g for s, g in meta["gains"].items()) * mix_gain
    assert np.abs(pcm[:, 0] - np.round(expected[0].numpy() * 32767)).max() <= 1


def test_stream_writes_the_output_folder_chunk_by_chunk(checkpoint, tmp_path, monkeypatch):
    args = ["--slots", SLOTS, "--checkpoint", str(checkpoint), "--duration", "1.2",
            "--seed", "3", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    written = []
    real = sf.SoundFile.write
    monkeypatch.setattr(sf.SoundFile, "write",
                        lambda self, data: (written.append(len(data)), real(self, data)))
    assert main([*args, "--stream", "--out", str(tmp_path / "s")]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(
        p.name for p in (tmp_path / "plain").iterdir())  # no mark left
    # 4 files x 3 chunks: 0.5 s blocks (38 frames) and the rest
    assert len(written) == 4 * 3 and set(written) == {38 * 320, 14 * 320}
    read = {p.stem: sf.read(p, dtype="float32")[0] for p in (tmp_path / "s").glob("*.wav")}
    assert np.allclose(read["drums"] + read["bass"] + read["piano"], read["mix"], atol=1e-6)
    plain = {p.stem: sf.read(p, dtype="float32")[0] for p in (tmp_path / "plain").glob("*.wav")}
    gains = json.loads((tmp_path / "plain" / "meta.json").read_text())["gains"]
    streamed = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert streamed["mix_gains"] == []  # the tiny model is quiet: the mix was never limited
    for slot in ("drums", "bass", "piano"):  # the same decoded stem at other levels
        assert np.allclose(read[slot] / streamed["gains"][slot], plain[slot] / gains[slot],
                           atol=1e-5)


@pytest.mark.parametrize("extra, tty, message", [
    (["--stream", "x.wav"], False, "--stream x.wav: takes no value"),
    (["--stream", "--num-samples", "2"], False, "--stream makes one piece"),
    (["--stream", "-"], True, "pipe it into a player"),
])
def test_stream_mistakes_are_one_line_and_write_nothing(checkpoint, tmp_path, monkeypatch,
                                                        capsys, extra, tty, message):
    args = ["--slots", SLOTS, "--checkpoint", str(checkpoint), "--duration", "0.3",
            "--device", "cpu", "--out", str(tmp_path / "o"), *extra]
    code, data = run_cli(args, monkeypatch, tty=tty)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and data == b"" and not (tmp_path / "o").exists()
    assert len(err) == 1 and message in err[0]


def test_an_interrupted_stream_is_replaced_other_files_are_not(checkpoint, tmp_path, capsys):
    args = ["--slots", SLOTS, "--checkpoint", str(checkpoint), "--duration", "0.3",
            "--device", "cpu", "--stream"]
    left = tmp_path / "left"
    left.mkdir()
    (left / ".streaming").touch()
    (left / "mix.wav").write_bytes(b"half")
    assert main([*args, "--out", str(left)]) == 0
    assert (left / "meta.json").is_file() and not (left / ".streaming").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main([*args, "--out", str(other)]) == 2
    assert "not a generation" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_stream_dash_through_a_real_pipe(checkpoint):
    """The command as a player runs it: standard output carries the WAV and nothing else."""
    done = subprocess.run(
        [sys.executable, "-m", "stemcodec.generate", "--slots", SLOTS, "--checkpoint",
         str(checkpoint), "--duration", "0.6", "--device", "cpu", "--stream", "-"],
        capture_output=True, cwd=ROOT, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr.decode()
    assert len(done.stdout) == 44 + 2 * 45 * 320
    pcm, rate = sf.read(io.BytesIO(done.stdout), dtype="int16")
    assert rate == 24000 and len(pcm) == 45 * 320 and np.abs(pcm).max() > 0
    assert b"streamed standard output" in done.stderr
