"""train/train.py: learns, resumes exactly (EMA included), scores and exports the same
weights, stops cleanly on NaN and on SIGINT / SIGTERM (a checkpoint at the step), resumes with
`out=DIR` alone, and refuses foreign caches, changed architectures and a keep_last that would
delete the checkpoint just written."""

import json
import signal
import sys

import pytest
import torch

from synthetic_cache import CODEC, make_cache
from train_scripts import (
    ROOT,
    ctrl_c_in_a_terminal,
    finish,
    ok,
    one_line_error,
    run_script,
    signal_at,
    start_script,
)

CONFIG = str(ROOT / "configs" / "tiny-test.yaml")


@pytest.fixture
def cache(tmp_path):
    return make_cache(tmp_path / "cache", n_songs=6, frames=80)


def train(cache, out, *overrides):
    return run_script("train", "--config", CONFIG, f"data.cache={cache}", f"out={out}", *overrides)


def log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def losses(out):
    return {r["step"]: r["loss"] for r in log(out) if "loss" in r}


def weights(out):
    from stemcodec.model import MultiStreamTransformer
    return MultiStreamTransformer.from_pretrained(out).state_dict()


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(cache, tmp_path):
    """Weights, optimizer, EMA and data order all come back. With a CUDA device this is the
    resume on the GPU (accelerate restores the EMA on the CPU: it must land beside the
    weights). Without an EMA the same restore runs minus the EMA (and the SIGTERM tests
    below resume that way too)."""
    full, parts = tmp_path / "full", tmp_path / "parts"
    args = ["steps=14", "save_every=7", "ema_decay=0.9"]
    assert ok(train(cache, full, *args))
    assert ok(train(cache, parts, *args, "stop_after=7"))
    assert max(losses(parts)) == 7
    assert ok(train(cache, parts, *args))
    a, b = losses(full), losses(parts)
    assert sorted(a) == sorted(b) == list(range(1, 15))
    for step in a:
        assert abs(a[step] - b[step]) < 1e-6, step
    wa, wb = weights(full), weights(parts)
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6), name


@pytest.mark.slow
def test_validation_scores_the_exported_ema_weights(cache, tmp_path):
    """ema_decay=1 keeps the weights of step 1: a 6-step run then validates and exports
    exactly what a 1-step run does (before, validation scored the raw weights)."""
    one, ema = tmp_path / "one", tmp_path / "ema"
    assert ok(train(cache, one, "steps=1"))
    assert ok(train(cache, ema, "steps=6", "ema_decay=1.0", "eval_every=6"))
    valid_one = [r for r in log(one) if "valid/loss" in r][-1]
    valid_ema = [r for r in log(ema) if "valid/loss" in r][-1]
    assert valid_ema["step"] == 6
    assert abs(valid_one["valid/loss"] - valid_ema["valid/loss"]) < 1e-6
    assert losses(ema)[6] < losses(ema)[1]  # the raw weights did move on
    wa, wb = weights(one), weights(ema)
    assert all(torch.equal(wa[name], wb[name]) for name in wa)


@pytest.mark.slow
def test_loss_falls_and_model_loads_without_training_code(cache, tmp_path):
    out = tmp_path / "run"
    assert ok(train(cache, out, "steps=60", "optim.lr=1e-2", "eval_every=60", "save_every=60"))
    steps = losses(out)
    assert sum(steps[s] for s in range(56, 61)) / 5 < 0.6 * steps[1]
    valid = [r for r in log(out) if "valid/loss" in r][-1]
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


@pytest.mark.slow
def test_checkpoints_keep_only_the_last_few(cache, tmp_path):
    out = tmp_path / "run"
    assert ok(train(cache, out, "steps=8", "save_every=2", "keep_last=2"))
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step_0000006", "step_0000008"]


@pytest.mark.slow
def test_keep_last_zero_is_one_line_and_writes_nothing(cache, tmp_path):
    """keep_last=0 used to keep every checkpoint ([:-0] is empty); it would delete the one
    just written, so it is refused."""
    out = tmp_path / "run"
    err = one_line_error(train(cache, out, "steps=4", "save_every=2", "keep_last=0"))
    assert "keep_last=0" in err and "give 1 or more" in err
    assert not out.exists()


@pytest.mark.slow
def test_nan_loss_stops_with_one_line_and_keeps_last_checkpoint(cache, tmp_path):
    """A run resumed with an infinite learning rate: its first update makes the weights
    non-finite, so the next loss is NaN and the run stops before writing it anywhere."""
    out = tmp_path / "run"
    assert ok(train(cache, out, "steps=10", "save_every=4", "stop_after=4"))
    err = one_line_error(train(cache, out, "steps=10", "save_every=4", "optim.lr=inf"))
    assert err.startswith("error: loss became nan at step 5"), err
    assert "step_0000004 is intact" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000004"]
    assert max(losses(out)) == 5  # step 5 trained with the infinite rate; nothing after it
    from stemcodec.model import MultiStreamTransformer
    MultiStreamTransformer.from_pretrained(out)


@pytest.mark.slow
def test_changed_architecture_on_resume_is_one_line_and_keeps_the_run(cache, tmp_path):
    out = tmp_path / "run"
    assert ok(train(cache, out, "steps=2"))
    before = {p: p.read_bytes() for p in (out / "train_config.json", out / "model.safetensors")}
    for change, expected in [("model.dim=64", "model.dim=32, not 64"),
                             ("model.num_layers=3", "model.num_layers=2, not 3"),
                             ("model.slot_attention=false", "model.slot_attention=True, not False")]:
        err = one_line_error(train(cache, out, "steps=4", change))
        assert f"{out} was trained with {expected}" in err, (change, err)
        assert all(p.read_bytes() == data for p, data in before.items()), change
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000002"]
    assert ok(train(cache, out, "steps=4"))  # the same architecture resumes


@pytest.mark.slow
def test_cache_of_another_codec_is_refused(cache, tmp_path):
    err = one_line_error(train(cache, tmp_path / "run", "codec_id=encodec_24khz-6kbps"))
    assert "was made with codec debug-test-codec, the config expects encodec_24khz" in err
    other = make_cache(tmp_path / "other", codec={**CODEC, "id": "another-codec"})
    assert ok(train(cache, tmp_path / "run2", "steps=2"))
    err = one_line_error(train(other, tmp_path / "run2", "steps=4"))
    assert "was trained on codec debug-test-codec tokens" in err


@pytest.mark.parametrize("override, expected", [
    ("optim.lrate=1", "unknown config key 'optim.lrate'"),
    ("ema_decay=1.5", "ema_decay must be in [0, 1]"),
    ("save_every=0", "save_every must be at least 1"),
])
@pytest.mark.slow
def test_bad_override_names_the_key(cache, tmp_path, override, expected):
    result = train(cache, tmp_path / "run", override)
    assert expected in one_line_error(result)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_mix_and_no_slot_attention_baselines_train(cache, tmp_path):
    assert ok(train(cache, tmp_path / "mix", "steps=3", "model.mode=mix"))
    assert ok(train(cache, tmp_path / "noslot", "steps=3", "model.slot_attention=false"))


# long enough that a signal sent at step 3 lands well before the end; EMA and validation on,
# so their state (and the global RNG validation draws from) must come back too; a loader
# worker, which a signal to the whole process group reaches as well
STOP_ARGS = ["steps=100", "save_every=100", "eval_every=40", "ema_decay=0.9",
             "data.num_workers=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    cache = make_cache(root / "cache", n_songs=6, frames=80)
    assert ok(train(cache, root / "run", *STOP_ARGS))
    return cache, root / "run"


@pytest.mark.slow
@pytest.mark.parametrize("signum, group", [(signal.SIGTERM, False), (signal.SIGINT, True),
                                           (signal.SIGTERM, True)],
                         ids=["kill", "ctrl-c", "scheduler"])
def test_a_signal_saves_the_step_and_out_alone_resumes_it_exactly(uninterrupted, tmp_path,
                                                                  signum, group):
    """SIGTERM to the trainer (kill), SIGINT to its process group (Ctrl-C in a terminal) or
    SIGTERM to the group (a job scheduler; the loader's worker must not die of it): a
    checkpoint at the step reached (no periodic one is due), one line, exit code 128 +
    signal; then `train.py out=DIR` alone, with the stored config, trains on exactly as the
    run that was never stopped, step for step."""
    cache, full = uninterrupted
    parts = tmp_path / "parts"
    stopped = signal_at(start_script("train", "--config", CONFIG, f"data.cache={cache}",
                                     f"out={parts}", *STOP_ARGS), parts, 3, signum, group)
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    step = max(losses(parts))
    assert 3 <= step < 100
    checkpoint = parts / "checkpoints" / f"step_{step:07d}"
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint {checkpoint}; "
        f"the same command (or out={parts} alone) resumes")
    assert sorted((parts / "checkpoints").iterdir()) == [checkpoint]

    assert ok(run_script("train", f"out={parts}"))
    assert [r["step"] for r in log(parts) if "loss" in r] == list(range(1, 101))
    a, b = losses(full), losses(parts)
    for s in a:
        assert abs(a[s] - b[s]) < 1e-6, s
    valid = [(r["step"], r["valid/loss"]) for r in log(full) if "valid/loss" in r]
    assert valid == [(r["step"], pytest.approx(r["valid/loss"], abs=1e-6))
                     for r in log(parts) if "valid/loss" in r]
    wa, wb = weights(full), weights(parts)  # the exported EMA weights
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6), name


@pytest.mark.slow
def test_a_relaunch_with_out_alone_takes_the_stored_config(cache, tmp_path):
    """The README's resume command: no --config, no data.cache. The run's own config comes
    back (cache, learning rate, the tiny model), overrides apply on top (steps), stop_after
    belonged to the first launch only, and an architecture change is still one line."""
    out = tmp_path / "run"
    assert ok(train(cache, out, "steps=4", "optim.lr=1e-3", "stop_after=2"))
    assert max(losses(out)) == 2
    assert ok(run_script("train", f"out={out}", "steps=6"))
    assert sorted(losses(out)) == list(range(1, 7))
    stored = json.loads((out / "train_config.json").read_text())
    assert stored["data"]["cache"] == str(cache) and stored["optim"]["lr"] == 1e-3
    assert stored["steps"] == 6 and stored["stop_after"] is None and stored["model"]["dim"] == 32
    err = one_line_error(run_script("train", f"out={out}", "steps=8", "model.dim=64"))
    assert f"{out} was trained with model.dim=32, not 64" in err


@pytest.mark.slow
def test_help_lists_every_key_with_its_default():
    result = run_script("train", "--help")
    assert ok(result)
    for entry in ("optim.lr=0.0003", "data.window=500", "model.slot_attention=true",
                  "ema_decay=0.0", "codec_id=null", "keep_last=3", "train_config.json"):
        assert entry in result.stdout, entry
    assert "windows per process per micro-step" in result.stdout  # the field's comment


LAUNCH = [sys.executable, "-m", "stemcodec.launch", "--cpu", "--num_processes", "1",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


@pytest.mark.slow
def test_under_the_launcher_errors_and_stops_keep_the_trainers_line_and_code(cache, tmp_path):
    """`stemcodec launch` (accelerate launch's options): the trainer's one-line error keeps
    its exit code, with no launcher traceback; a SIGTERM sent to the launcher alone reaches
    the trainer (accelerate's own launcher dies and leaves it training); a Ctrl-C typed in a
    terminal waits for the trainer's checkpoint and exits with 130."""
    args = ["--config", CONFIG, f"data.cache={cache}"]
    failed = finish(start_script("train", *args, f"out={tmp_path / 'x'}", "keep_last=0",
                                 launcher=LAUNCH))
    assert "keep_last=0" in one_line_error(failed)

    out = tmp_path / "killed"
    stopped = signal_at(start_script("train", *args, f"out={out}", *STOP_ARGS, launcher=LAUNCH),
                        out, 3, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    step = max(losses(out))
    assert stopped.stderr.strip().splitlines()[-1].startswith(f"stopped by SIGTERM at step {step};")
    assert (out / "checkpoints" / f"step_{step:07d}" / "progress.json").is_file()

    out = tmp_path / "ctrl-c"
    code, shown = ctrl_c_in_a_terminal("train", *args, f"out={out}", *STOP_ARGS, out=out, step=3,
                                       launcher=LAUNCH)
    assert code == 130, shown[-3000:]
    assert "Traceback" not in shown
    step = max(losses(out))
    assert shown.strip().splitlines()[-1].startswith(f"stopped by SIGINT at step {step};"), shown
    assert (out / "checkpoints" / f"step_{step:07d}" / "progress.json").is_file()
