"""stemcodec.training: the plumbing both trainers share (their loops are tested end to end in
test_train.py and test_train_codec.py)."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from stemcodec.config import to_dict
from stemcodec.errors import UserError
from stemcodec.training.config import CodecTrainConfig, TrainConfig
from stemcodec.training.ema import EMA
from stemcodec.training.run import check_resume, latest_checkpoint, rotate
from stemcodec.training.samplers import ShuffledBatches, StepBatches
from stemcodec.training.schedule import learning_rate


def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_batches_resumed_at_a_step_are_the_batches_of_that_step():
    for make in (lambda start, rank=0, world=1: StepBatches(3, start, rank, world),
                 lambda start, rank=0, world=1: ShuffledBatches(7, 3, 5, start, rank, world)):
        assert take(make(0), 6)[4:] == take(make(4), 2)
        # two processes split each global batch without overlap
        r0, r1 = take(make(0, 0, 2), 4), take(make(0, 1, 2), 4)
        assert all(not set(a) & set(b) for a, b in zip(r0, r1))


def test_shuffled_batches_visit_every_item_once_per_epoch():
    items = [item for batch in take(ShuffledBatches(6, 2, seed=1), 6) for item in batch]
    assert sorted(i for e, i in items if e == 0) == list(range(6))
    assert sorted(i for e, i in items if e == 1) == list(range(6))
    assert items[:6] != [(0, i) for i in range(6)]  # shuffled


def test_learning_rate_warms_up_then_decays_to_its_floor():
    lr = [learning_rate(s, 1.0, warmup_steps=4, min_lr_ratio=0.1, steps=20) for s in range(25)]
    assert lr[:4] == [0.25, 0.5, 0.75, 1.0] and lr[4] == 1.0
    assert all(a >= b for a, b in zip(lr[4:], lr[5:]))
    assert lr[20] == pytest.approx(0.1) and lr[24] == pytest.approx(0.1)


def finished(folder, step):
    path = folder / "checkpoints" / f"step_{step:07d}"
    path.mkdir(parents=True)
    (path / "progress.json").write_text(json.dumps({"step": step}))
    return path


def test_latest_checkpoint_is_the_newest_complete_one_and_rotation_keeps_it(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (2, 4, 6):
        finished(tmp_path, step)
    (tmp_path / "checkpoints" / "step_0000008").mkdir()  # no progress.json: unfinished
    (tmp_path / "checkpoints" / ".tmp_step_0000010").mkdir()
    assert latest_checkpoint(tmp_path).name == "step_0000006"
    rotate(tmp_path / "checkpoints", 0)  # never deletes the newest
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_0000008"]


def test_resume_check_names_the_first_changed_key(tmp_path):
    cfg = CodecTrainConfig(freeze=["encoder", "quantizer"])
    saved = to_dict(cfg)
    saved["model"]["n_q"] = 8
    (tmp_path / "train_config.json").write_text(json.dumps(saved))
    check_resume(tmp_path, cfg, ["model"])  # no checkpoint yet: a fresh start, nothing to check
    finished(tmp_path, 1)
    with pytest.raises(UserError, match=r"was trained with model.n_q=8, not 4; keep it or"):
        check_resume(tmp_path, cfg, ["model"])
    check_resume(tmp_path, cfg, ["losses", "freeze"])
    check_resume(tmp_path, CodecTrainConfig(freeze=["quantizer", "encoder"]), ["freeze"],
                 unordered=["freeze"])
    with pytest.raises(UserError, match=r"freeze=\['encoder', 'quantizer'\], not \[\]"):
        check_resume(tmp_path, CodecTrainConfig(), ["freeze"], unordered=["freeze"])


def test_resume_check_covers_the_generator_config(tmp_path):
    cfg = TrainConfig()
    (tmp_path / "train_config.json").write_text(json.dumps(to_dict(cfg)))
    finished(tmp_path, 1)
    check_resume(tmp_path, cfg, ["model"])
    cfg.model.dim = 128
    with pytest.raises(UserError, match="model.dim=256, not 128"):
        check_resume(tmp_path, cfg, ["model"])


def test_resume_check_sees_what_the_checkpoint_holds_and_fills_new_settings(tmp_path):
    """Switching the EMA on (it would add state to the checkpoint) is one line, and a
    setting added after a run started (decoder_phase) takes the value the run had."""
    cfg = TrainConfig()
    (tmp_path / "train_config.json").write_text(json.dumps(to_dict(cfg)))
    finished(tmp_path, 1)
    ema = {"an EMA": lambda c: (c.get("ema_decay") or 0) > 0}
    check_resume(tmp_path, cfg, ["model"], derived=ema)
    cfg.ema_decay = 0.999
    with pytest.raises(UserError, match="was trained with an EMA False, now True"):
        check_resume(tmp_path, cfg, ["model"], derived=ema)
    codec = CodecTrainConfig()
    codec.model["decoder_phase"] = "absolute"  # resumed as a run from before the key was
    saved = to_dict(codec)
    del saved["model"]["decoder_phase"]
    (tmp_path / "train_config.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="model.decoder_phase=None, not 'absolute'"):
        check_resume(tmp_path, codec, ["model"])
    check_resume(tmp_path, codec, ["model"], defaults={"model.decoder_phase": "absolute"})


@pytest.mark.filterwarnings("ignore:.*meta parameter")
def test_ema_restored_on_the_cpu_keeps_to_the_device_of_the_weights():
    """accelerate restores registered state on the CPU; the average must stay beside the
    weights (on CUDA when there is one; elsewhere "meta" stands for a device that is not
    the CPU), or its next update fails."""
    device = "cuda" if torch.cuda.is_available() else "meta"
    saved = EMA(nn.Linear(3, 2), 0.9).state_dict()  # as torch.load(map_location="cpu") gives it
    model = nn.Linear(3, 2, device=device)
    ema = EMA(model, 0.9)
    ema.load_state_dict(saved)
    ema.update_parameters(model)
    assert all(p.device.type == device for p in ema.parameters())


def test_ema_averages_and_reads_the_older_checkpoint_format():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = EMA(model, 0.5)
    ema.update_parameters(model)  # the first update copies the weights
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)
    assert torch.allclose(ema.module.weight, start + 0.5)
    older = EMA(nn.Linear(3, 2), 0.5)  # the hand-written EMA saved the bare averaged weights
    older.load_state_dict({k: v.clone() for k, v in ema.module.state_dict().items()})
    assert torch.equal(older.module.weight, ema.module.weight) and older.n_averaged == 1


def test_a_resumed_run_logs_each_step_once(tmp_path):
    """Resuming from a checkpoint older than the log's end (a crash between saves) drops the
    log lines after it, so the steps run again are not logged twice."""
    from stemcodec.training.run import begin

    class Main:  # what begin needs of an Accelerator
        is_main_process = True

        def init_trackers(self, project, config):
            self.config = config

    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 21)))
    begin(Main(), tmp_path, TrainConfig(), "train", step=10)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, 11))
    assert (tmp_path / "train_config.json").is_file()


def test_a_relaunch_starts_from_the_stored_config_with_the_launch_on_top(tmp_path):
    """Defaults, then the run folder's train_config.json, then --config, then overrides;
    stop_after is not inherited, and `out` is the folder the config was read from (a moved
    run trains where it is now)."""
    from stemcodec.training.config import parse_args
    out = tmp_path / "moved"
    out.mkdir()
    stored = TrainConfig(out="runs/elsewhere", steps=50, stop_after=10)
    stored.data.cache, stored.model.dim, stored.optim.lr = "my/cache", 64, 1e-3
    (out / "train_config.json").write_text(json.dumps(to_dict(stored)))

    def parse(*argv):
        return parse_args(TrainConfig, list(argv), "train.py", "", "")

    cfg = parse(f"out={out}", "steps=80")
    assert (cfg.out, cfg.steps, cfg.stop_after) == (str(out), 80, None)
    assert (cfg.data.cache, cfg.model.dim, cfg.optim.lr) == ("my/cache", 64, 1e-3)
    assert cfg.model.num_layers == stored.model.num_layers and cfg.optim.betas == (0.9, 0.95)
    yaml = tmp_path / "c.yaml"
    yaml.write_text(f"out: {out}\nmodel:\n  dim: 32\n")  # a section merges key by key
    cfg = parse("--config", str(yaml), "optim.lr=2e-3")
    assert (cfg.model.dim, cfg.data.cache, cfg.optim.lr, cfg.steps) == (32, "my/cache", 2e-3, 50)
    fresh = parse(f"out={tmp_path / 'new'}")  # no run there: the defaults
    assert fresh.data.cache == TrainConfig().data.cache and fresh.steps == TrainConfig().steps


@pytest.mark.parametrize("content, expected", [
    ('{"optim": {"lrate": 1}}', "train_config.json: unknown config key 'optim.lrate'"),
    ("{not json", "train_config.json is unreadable"),
    ("[1, 2]", "must hold a mapping"),
])
def test_a_bad_stored_config_is_one_line_naming_the_file(tmp_path, content, expected):
    from stemcodec.training.config import parse_args
    (tmp_path / "train_config.json").write_text(content)
    with pytest.raises(UserError, match=expected.replace("[", r"\[")) as info:
        parse_args(TrainConfig, [f"out={tmp_path}"], "train.py", "", "")
    assert "\n" not in str(info.value)


def test_help_lists_every_key_with_its_default_and_comment():
    from stemcodec.config import describe
    from stemcodec.training.config import keys_help
    for cls in (TrainConfig, CodecTrainConfig):
        text = keys_help(cls, "steps=10")
        rows = describe(cls)
        assert len(rows) > 30
        for key, default, _ in rows:
            assert f"  {key}={default}" in text, key
    rows = {key: (default, note) for key, default, note in describe(TrainConfig)}
    assert rows["optim.betas"] == ("[0.9, 0.95]", "")
    assert rows["keep_last"] == ("3", "checkpoints kept (at least 1: the one just written)")
    assert rows["ema_decay"][1].startswith("0: no EMA")  # a comment on the lines above
    assert describe(CodecTrainConfig)[0][0] == "model.type"  # a mapping lists its keys


class OneProcess:  # what StopSignals needs of an Accelerator
    num_processes, is_main_process, device = 1, False, "cpu"


def test_a_stop_signal_is_noted_not_obeyed_until_the_loop_asks():
    import os
    import signal

    from stemcodec.training.signals import StopSignals
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = StopSignals(OneProcess())
    try:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGTERM)  # would end this process without the handler
        os.kill(os.getpid(), signal.SIGINT)  # a second signal: still stopping for SIGTERM
        assert stop.requested() and stop.signum == signal.SIGTERM
    finally:
        stop.restore()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert stop.report(7, None, Path("runs/x")) == 143


def test_the_launcher_exits_with_the_trainers_code():
    from stemcodec.training.launch import exit_code
    assert [exit_code(c) for c in (0, 2, 130, 143)] == [0, 2, 130, 143]
    assert exit_code(-9) == 137 and exit_code(None) == 1
