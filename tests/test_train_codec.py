"""train/train_codec.py: learns, resumes exactly (after SIGTERM too, with `out=DIR` alone),
writes a codec load_codec reads, and turns bad corpora and configs into one-line errors."""

import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemcodec.codec.codebooks import (
    codebook_perplexity,
    codebooks,
    init_codebooks,
    replace_dead_codes,
    sync_codebooks,
)
from stemcodec.codec.mini import CodecModule
from stemcodec.training.codec_data import SegmentDataset, piece_key, scan_corpora, split_stems
from train_scripts import ROOT, ok, one_line_error, run_script, signal_at, start_script

CONFIG = str(ROOT / "configs" / "codec-tiny-test.yaml")
RATE = 24000


def note_stem(seconds: float, freq: float, seed: int, silent_head: float = 0.0) -> np.ndarray:
    """Decaying harmonic notes, one every 0.25 s, after `silent_head` seconds of silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    phase = t % 0.25
    x = 0.3 * np.exp(-8 * phase) * (np.sin(2 * np.pi * freq * t) + 0.4 * np.sin(6 * np.pi * freq * t))
    x = x + 0.003 * rng.standard_normal(len(t))
    x[t < silent_head] = 0.0
    return x.astype(np.float32)


@pytest.fixture
def corpus(tmp_path):
    """Six pieces in the render layout: <piece>/<slot>.wav + mix.wav + meta.json; the drums
    stem of the first piece is silent."""
    root = tmp_path / "corpus"
    for p in range(6):
        piece = root / f"folk-band_piece{p}_v0"
        piece.mkdir(parents=True)
        stems = {"bass": note_stem(1.5, 55 * (p + 2), p), "piano": note_stem(1.5, 220 + 30 * p, p + 9),
                 "drums": np.zeros(int(1.5 * RATE), np.float32) if p == 0 else
                 note_stem(1.5, 900, p + 20, silent_head=0.5)}
        for slot, wav in stems.items():
            sf.write(piece / f"{slot}.wav", wav, RATE, subtype="FLOAT")
        sf.write(piece / "mix.wav", sum(stems.values()), RATE, subtype="FLOAT")
        (piece / "meta.json").write_text(json.dumps({"piece_id": piece.name}))
    return root


def train(corpus, out, *overrides):
    return run_script("train_codec", "--config", CONFIG, f"data.corpora={corpus}", f"out={out}",
                      *overrides)


def log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_loss_goes_down_and_validation_is_logged(corpus, tmp_path):
    out = tmp_path / "run"
    assert ok(train(corpus, out, "steps=12", "eval_every=12", "save_every=12"))
    losses = [r["mel"] for r in log(out) if "mel" in r]
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    valid = [r for r in log(out) if "valid/mel_distance" in r]
    assert valid and {"valid/si_sdr", "valid/mrstft"} <= set(valid[-1])
    assert all(math.isfinite(v) for v in valid[-1].values())


@pytest.mark.slow
@pytest.mark.parametrize("adversarial", [False, True])
def test_resume_matches_uninterrupted_run(corpus, tmp_path, adversarial):
    full, parts = tmp_path / "full", tmp_path / "parts"
    args = ["steps=4", "save_every=2", "eval_every=100", f"losses.adversarial={str(adversarial).lower()}"]
    assert ok(train(corpus, full, *args))
    assert ok(train(corpus, parts, *args, "stop_after=2"))
    assert max(r["step"] for r in log(parts)) == 2
    assert ok(train(corpus, parts, *args))
    a = {r["step"]: r["loss"] for r in log(full) if "loss" in r}
    b = {r["step"]: r["loss"] for r in log(parts) if "loss" in r}
    assert sorted(a) == sorted(b) == list(range(1, 5))
    for step in a:
        assert abs(a[step] - b[step]) < 1e-6, step
    from safetensors.torch import load_file
    wa, wb = load_file(full / "model.safetensors"), load_file(parts / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:  # weights and codebooks (EMA buffers, dead-code resets) alike
        assert torch.allclose(wa[name], wb[name], atol=1e-6), name


@pytest.mark.slow
def test_sigterm_saves_the_step_and_out_alone_resumes_it_exactly(corpus, tmp_path):
    """SIGTERM mid-run: a checkpoint at the step reached (codebooks, dead-code resets, the
    optimizer and the RNG with it), one line, exit code 143; `train_codec.py out=DIR` alone
    then trains on with the stored config, step for step as the run never stopped."""
    full, parts = tmp_path / "full", tmp_path / "parts"
    args = ["steps=40", "save_every=40", "eval_every=100"]
    assert ok(train(corpus, full, *args))
    stopped = signal_at(start_script("train_codec", "--config", CONFIG, f"data.corpora={corpus}",
                                     f"out={parts}", *args), parts, 3, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    step = max(r["step"] for r in log(parts))
    assert 3 <= step < 40
    assert stopped.stderr.strip().splitlines()[-1].startswith(
        f"stopped by SIGTERM at step {step}; checkpoint {parts / 'checkpoints'}/step_{step:07d};")
    assert [p.name for p in (parts / "checkpoints").iterdir()] == [f"step_{step:07d}"]

    assert ok(run_script("train_codec", f"out={parts}"))
    a = {r["step"]: r["loss"] for r in log(full) if "loss" in r}
    b = [(r["step"], r["loss"]) for r in log(parts) if "loss" in r]
    assert [s for s, _ in b] == list(range(1, 41))
    for s, loss in b:
        assert abs(a[s] - loss) < 1e-6, s
    from safetensors.torch import load_file
    wa, wb = load_file(full / "model.safetensors"), load_file(parts / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6), name


@pytest.mark.slow
def test_help_lists_every_key_with_its_default():
    result = run_script("train_codec", "--help")
    assert ok(result)
    for entry in ("model.n_q=4", "model.decoder=istft", "losses.mel_scales=[64, 128, 256, 512, "
                  "1024, 2048]", "freeze=[]", "init_from=null", "data.segment_seconds=1.0"):
        assert entry in result.stdout, entry


@pytest.mark.slow
def test_output_loads_with_load_codec_and_round_trips(corpus, tmp_path):
    out = tmp_path / "run"
    assert ok(train(corpus, out, "steps=2", "eval_every=100"))
    from stemcodec.codec import load_codec
    codec = load_codec(str(out))
    assert (codec.num_codebooks, codec.cardinality, codec.frame_rate) == (4, 1024, 75.0)
    S = 7000
    codes = codec.encode(torch.randn(2, 1, S) * 0.1)
    assert codes.shape == (2, 4, math.ceil(S / 320))
    assert codec.decode(codes, length=S).shape == (2, 1, S)
    assert json.loads((out / "config.json").read_text())["training"]["step"] == 2


@pytest.mark.slow
def test_a_stage_stopped_by_stop_after_is_not_trained_further_by_a_rerun(corpus, tmp_path):
    """scripts/train_bundled.sh runs its codec stages with stop_after; rerunning the script
    after an interruption must not add a step to a stage that already stopped."""
    out = tmp_path / "run"
    args = ["steps=6", "save_every=2", "eval_every=100", "stop_after=2"]
    assert ok(train(corpus, out, *args))
    again = train(corpus, out, *args)
    assert ok(again) and "already trained for 2 steps" in again.stdout + again.stderr
    assert max(r["step"] for r in log(out)) == 2


@pytest.mark.slow
def test_nan_loss_stops_with_one_line_and_keeps_last_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    assert ok(train(corpus, out, "steps=6", "save_every=2", "eval_every=100", "stop_after=2"))
    err = one_line_error(train(corpus, out, "steps=6", "save_every=2", "optim.lr=inf"))
    assert err.startswith("error: loss became nan at step 3"), err
    assert "step_0000002 is intact" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000002"]


def test_codebooks_are_used_and_dead_codes_come_back():
    """The package alone collapses a fresh codebook; k-means init + our resets keep it spread."""
    from stemcodec.codec import DEBUG_CONFIG, build_encodec
    torch.manual_seed(0)
    module = CodecModule(build_encodec({**DEBUG_CONFIG, "bins": 64})).train()
    x = torch.randn(4, 1, 3200) * 0.1
    init_codebooks(module.codec, x, iters=5)
    book = module.codec.quantizer.vq.layers[0]._codebook
    book.cluster_size[:10] = 0.0  # ten codes fall out of use
    emb = module(x)[2]
    assert replace_dead_codes(module.codec, emb, 0.1) >= 10
    assert codebook_perplexity(module.codec)[0] > 16
    assert book.embed.norm(dim=1).max() < 100  # no code sent off to infinity


def test_codebook_statistics_of_every_process_shape_the_codebooks():
    """Under DDP each rank's EMA step sees its own batch; after sync_codebooks both ranks hold
    the same codebooks, made from the average of their statistics (not rank 0's alone), and
    dead codes drawn with one seeded generator from the gathered encodings agree too."""
    from stemcodec.codec import DEBUG_CONFIG, build_encodec
    torch.manual_seed(0)
    first = CodecModule(build_encodec({**DEBUG_CONFIG, "bins": 64})).train()
    init_codebooks(first.codec, torch.randn(4, 1, 3200) * 0.1, iters=5)
    second = CodecModule(build_encodec({**DEBUG_CONFIG, "bins": 64})).train()
    second.load_state_dict(first.state_dict())  # the same start on both ranks
    batches = [torch.randn(4, 1, 3200) * 0.1, torch.sin(torch.arange(3200) / 7.0).expand(4, 1, -1)]
    emb = [first(batches[0])[2], second(batches[1])[2]]  # one EMA step on each rank's batch
    stats = [[t.clone() for b in codebooks(m.codec) for t in (b.cluster_size, b.embed_avg)]
             for m in (first, second)]
    assert not torch.allclose(stats[0][0], stats[1][0])  # the ranks saw different data
    for rank, module in enumerate((first, second)):
        other = iter(stats[1 - rank])
        sync_codebooks(module.codec, lambda t, other=other: (t + next(other)) / 2)
    for a, b, sa, sb in zip(codebooks(first.codec), codebooks(second.codec), stats[0][0::2],
                            stats[1][0::2]):
        assert torch.allclose(a.cluster_size, (sa + sb) / 2)
        assert torch.equal(a.embed, b.embed) and torch.equal(a.cluster_size, b.cluster_size)
    gathered = torch.cat(emb)
    for module in (first, second):
        codebooks(module.codec)[0].cluster_size[:5] = 0.0
        replace_dead_codes(module.codec, gathered, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(codebooks(first.codec)[0].embed, codebooks(second.codec)[0].embed)


def test_segments_are_deterministic_and_skip_silence(corpus):
    stems = scan_corpora([str(corpus)], include_mix=False, min_samples=4800, rate=RATE)
    assert {Path(s.path).name for s in stems} == {"bass.wav", "piano.wav", "drums.wav"}
    silent = [s for s in stems if s.piece.endswith("piece0_v0") and s.path.endswith("drums.wav")]
    data = SegmentDataset(silent + stems[:1], 4800, RATE, seed=3, silence_db=-50)
    for i in range(8):
        assert torch.equal(data[i], data[i])
        assert data[i].abs().max() > 0  # the silent stem is never what comes out
    split = split_stems(stems, 0.3)
    assert split["valid"] and not ({s.piece for s in split["valid"]} & {s.piece for s in split["train"]})
    assert piece_key("folk-band_x_v2") == piece_key("folk-band_x_v0")


@pytest.mark.parametrize("case, expected", [
    ("missing", "is not a folder"),
    ("empty", "no .wav stems"),
    ("no-wavs", "no .wav stems"),
    ("bad-key", "unknown config key 'losses.mell'"),
    ("bad-model-key", "unknown model key(s) model.filters"),
    ("keep-last-0", "keep_last=0: a run keeps at least its latest checkpoint"),
])
@pytest.mark.slow
def test_bad_corpus_or_config_is_one_line_error(tmp_path, case, expected):
    folder = tmp_path / "c"
    extra = []
    if case in ("empty", "no-wavs", "bad-key", "bad-model-key", "keep-last-0"):
        folder.mkdir()
    if case == "no-wavs":
        (folder / "piece").mkdir()
        (folder / "piece" / "notes.txt").write_text("not audio")
    if case == "bad-key":
        extra = ["losses.mell=1.0"]
    if case == "bad-model-key":
        extra = ["model.filters=8"]
    if case == "keep-last-0":
        extra = ["keep_last=0"]
    result = train(folder, tmp_path / "out", *extra)
    assert expected in one_line_error(result)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_decoder_fine_tune_keeps_the_tokens_and_the_codec_id(corpus, tmp_path):
    """init_from + freeze=[encoder,quantizer]: the decoder learns, the tokens do not move, so
    token caches and generators made with the first codec stay valid (same codec id)."""
    from stemcodec.codec import load_codec
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    assert ok(train(corpus, first, "steps=3", "eval_every=100"))
    assert ok(train(corpus, tuned, "steps=6", "eval_every=6", f"init_from={first}",
                    "freeze=[encoder,quantizer]", "optim.warmup_steps=1"))
    a, b = load_codec(str(first)), load_codec(str(tuned))
    assert a.codec_id == b.codec_id
    wav = torch.from_numpy(note_stem(1.0, 330, 5))[None, None]
    assert torch.equal(a.encode(wav), b.encode(wav))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("decoder."))
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if k.startswith("decoder."))
    assert not torch.equal(a.decode(a.encode(wav)), b.decode(b.encode(wav)))
    training = json.loads((tuned / "config.json").read_text())["training"]
    assert training["freeze"] == ["encoder", "quantizer"] and training["init_from"] == str(first)

    # a resume keeps its own weights (the first codec need not exist any more), not another
    # freeze (in any order), architecture or discriminator
    assert ok(train(corpus, tuned, "steps=7", "init_from=/gone", "freeze=[quantizer,encoder]",
                    "eval_every=100"))
    assert load_codec(str(tuned)).codec_id == a.codec_id
    saved = (tuned / "train_config.json").read_bytes()
    for change, expected in [("freeze=[encoder]", "was trained with freeze=['quantizer', 'encoder']"),
                             ("model.decoder_layers=3", "was trained with model.decoder_layers=2, not 3"),
                             ("losses.adversarial=true", "was trained with losses.adversarial=False")]:
        err = one_line_error(train(corpus, tuned, "steps=8", f"init_from={first}",
                                   "freeze=[encoder,quantizer]", change))
        assert expected in err, err
    assert (tuned / "train_config.json").read_bytes() == saved


@pytest.mark.parametrize("overrides, expected", [
    (["freeze=[encoder,quantizer,decoder]"], "nothing would train"),
    (["freeze=[encodr]"], "encodr unknown"),
    (["freeze=[encoder,decoder]"], "nothing would train"),
    (["freeze=[quantizer]"], "freeze both"),
    (["init_from=/nonexistent/codec"], "not a codec folder"),
])
@pytest.mark.slow
def test_bad_fine_tune_options_are_one_line_errors(corpus, tmp_path, overrides, expected):
    assert expected in one_line_error(train(corpus, tmp_path / "out", *overrides))


@pytest.mark.slow
def test_frame_losses_train_an_istft_decoder_and_refuse_a_seanet_one(corpus, tmp_path):
    """losses.frame_magnitude / losses.group_delay act on an iSTFT decoder's own frames: they
    are logged, finite and their weighted sum is in the loss; a SEANet decoder has no frames,
    and says so in one line before anything is written."""
    out = tmp_path / "run"
    assert ok(train(corpus, out, "steps=3", "eval_every=100", "losses.frame_magnitude=1.0",
                    "losses.group_delay=0.5", "model.decoder_phase=accumulated"))
    rows = [r for r in log(out) if "loss" in r]
    assert len(rows) == 3
    for r in rows:
        assert 0 < r["frame_magnitude"] < 50 and 0 <= r["group_delay"] <= 2
        assert r["loss"] > r["frame_magnitude"] + 0.5 * r["group_delay"]
    result = train(corpus, tmp_path / "seanet", "model.decoder=seanet", "losses.frame_magnitude=1.0")
    assert "losses.frame_magnitude and losses.group_delay need an iSTFT decoder" in \
        one_line_error(result)
    assert not (tmp_path / "seanet").exists()


@pytest.mark.slow
def test_init_gate_starts_the_noise_gate_open_and_needs_one(corpus, tmp_path):
    """init_gate=0.9: every bin of the noise gate starts at g = 0.9 (bias logit 0.9 = 2.2,
    weights 0) where the decoder's own start is g ~ 0.05; without a gate it is one line."""
    from stemcodec.checkpoint import load_pretrained
    out = tmp_path / "run"
    assert ok(train(corpus, out, "steps=1", "eval_every=100", "save_every=1",
                    "model.decoder_noise=true", "init_gate=0.9"))
    state, _ = load_pretrained(out)
    bias = state["decoder.gate.bias"]
    assert bias.shape == (641,) and torch.allclose(bias, torch.full_like(bias, 2.197), atol=0.05)
    # from a trained codec (the decoder stage): the gate reopens at g, the tokens stay
    tuned = tmp_path / "tuned"
    assert ok(train(corpus, tuned, "steps=1", "eval_every=100", "save_every=1",
                    "model.decoder_noise=true", f"init_from={out}", "init_gate=0.5",
                    "freeze=[encoder,quantizer]"))
    again, _ = load_pretrained(tuned)
    assert torch.allclose(again["decoder.gate.bias"], torch.zeros(641), atol=0.05)
    assert all(torch.equal(again[k], state[k]) for k in state if k.startswith("encoder."))
    assert "init_gate needs model.decoder=istft with model.decoder_noise=true" in \
        one_line_error(train(corpus, tmp_path / "none", "steps=1", "init_gate=0.9"))
    assert "lies strictly between 0 and 1" in one_line_error(
        train(corpus, tmp_path / "wide", "steps=1", "model.decoder_noise=true", "init_gate=1.5"))
