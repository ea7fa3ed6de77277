"""The CPU thread count generation picks: the fastest measured, remembered per machine, the
caller's when given, recorded in meta.json."""

from __future__ import annotations

import json
import time

import pytest
import torch

from stemcodec import StemGenerator
from stemcodec.errors import UserError
from stemcodec.generate import main
from stemcodec.generation import threads
from tiny_models import tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("threads") / "tiny")


def slow_unless(fast: int):
    """A measurement that takes 30 ms unless torch runs on `fast` threads."""
    seen = []

    def measure():
        seen.append(torch.get_num_threads())
        if torch.get_num_threads() != fast:
            time.sleep(0.03)
    return measure, seen


def test_the_fastest_count_wins_and_the_callers_setting_comes_back():
    before = torch.get_num_threads()
    for fast in (1, 2):
        measure, seen = slow_unless(fast)
        best, seconds = threads.fastest(measure, [1, 2])
        assert best == fast and set(seconds) == {1, 2} and seconds[fast] < 0.02
        assert set(seen) == {1, 2}
    assert torch.get_num_threads() == before


def test_a_choice_is_measured_once_and_remembered_per_model(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    measure, seen = slow_unless(2)
    assert threads.choose("model A", measure, tmp_path) == 2
    calls = len(seen)
    assert calls == 6  # 1 and 2 threads: a warm-up and two timed runs each
    slower, _ = slow_unless(1)
    # remembered: not measured again, even where it would now come out otherwise
    assert threads.choose("model A", slower, tmp_path) == 2 and len(seen) == calls
    assert threads.choose("model B", slower, tmp_path) == 1
    table = json.loads((tmp_path / "threads.json").read_text())
    assert sorted(entry["threads"] for entry in table.values()) == [1, 2]
    assert all("model A" in key or "model B" in key for key in table)


def test_a_broken_or_foreign_file_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    (tmp_path / "threads.json").write_text("{not json")
    measure, seen = slow_unless(1)
    assert threads.choose("m", measure, tmp_path) == 1 and seen
    key = threads.machine_key("m")
    (tmp_path / "threads.json").write_text(json.dumps({key: {"threads": 64}}))  # more than here
    assert threads.choose("m", measure, tmp_path) == 1
    assert json.loads((tmp_path / "threads.json").read_text())[key]["threads"] == 1


def test_one_core_measures_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 1)
    measure, seen = slow_unless(2)
    assert threads.choose("m", measure, tmp_path) == 1 and not seen
    assert threads.candidates(4) == [1, 2, 4] and threads.candidates(2) == [1, 2]


def test_generation_records_its_threads_and_restores_the_callers(checkpoint):
    before = torch.get_num_threads()
    fixed = StemGenerator.from_pretrained(checkpoint, device="cpu", threads=1)
    a = fixed.generate("drums,bass", 0.3, seed=3)
    assert a.meta["threads"] == 1 and torch.get_num_threads() == before
    auto = StemGenerator.from_pretrained(checkpoint, device="cpu")
    b, c = (auto.generate("drums,bass", 0.3, seed=3) for _ in range(2))
    assert b.meta["threads"] in threads.candidates() and b.meta["threads"] == c.meta["threads"]
    assert torch.equal(b.codes, c.codes)  # remembered: the same seed, the same tokens
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_a_bad_thread_count_is_one_line(checkpoint, value):
    with pytest.raises(UserError) as info:
        StemGenerator.from_pretrained(checkpoint, device="cpu", threads=value)
    assert "threads" in str(info.value) and "\n" not in str(info.value)


def test_cli_takes_a_count_or_auto(checkpoint, tmp_path, capsys):
    args = ["--slots", "drums", "--checkpoint", str(checkpoint), "--duration", "0.3",
            "--device", "cpu"]
    assert main([*args, "--threads", "1", "--out", str(tmp_path / "one")]) == 0
    assert json.loads((tmp_path / "one" / "meta.json").read_text())["threads"] == 1
    capsys.readouterr()
    assert main([*args, "--threads", "many", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --threads many") and "\n" not in err
    assert not (tmp_path / "bad").exists()
