"""prepare across processes: `--jobs 2` and two ranks of `accelerate launch` make the cache
one process makes (the same manifest entries, the same tokens), and resume like it."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemcodec.corpus.parallel import owner
from stemcodec.corpus.prepare import main

REPO = Path(__file__).resolve().parents[1]


def corpus(root: Path) -> Path:
    """Six stem folders of odd rates and lengths (no separation: the test is the split)."""
    rng = np.random.default_rng(0)
    for i in range(6):
        for name, rate in (("drums", 24000), ("bass", 44100), ("piano", 16000)):
            n = int(rate * (1.0 + 0.3 * i))
            x = 0.3 * np.sin(2 * np.pi * (100 + 50 * i) * np.arange(n) / rate)
            x = (x + 0.05 * rng.standard_normal(n)).astype(np.float32)
            (root / f"piece{i}").mkdir(parents=True, exist_ok=True)
            sf.write(root / f"piece{i}" / f"{name}.wav", x[:, None], rate)
    (root / "notes.xyz").write_text("?")  # one line, whoever finds it
    return root


def cache_of(out: Path) -> tuple[dict, dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    shards = {p.name: p.read_bytes() for p in sorted((out / "songs").glob("*.npy"))}
    return manifest, shards


def summary(text: str) -> str:
    return [ln for ln in text.splitlines() if ln.startswith("prepared ")][-1]


def test_the_split_is_stable_and_shares_the_songs():
    ids = [f"piece{i}-0123abcd" for i in range(40)]
    assert owner("piece0-0123abcd", 2) == 1  # sha1 5df1ea93...: never the salted hash()
    counts = [sum(owner(i, 3) == r for i in ids) for r in range(3)]
    assert sum(counts) == 40 and min(counts) > 5


@pytest.mark.slow
def test_two_jobs_make_the_cache_one_job_makes(tmp_path, capsys):
    songs = corpus(tmp_path / "songs")
    assert main([str(songs), "--out", str(tmp_path / "one"), "--codec", "debug"]) == 0
    one = summary(capsys.readouterr().out)
    assert main([str(songs), "--out", str(tmp_path / "two"), "--codec", "debug",
                 "--jobs", "2"]) == 0
    captured = capsys.readouterr()
    assert summary(captured.out).split(";")[0] == one.split(";")[0] == (
        "prepared 6 songs, 0 already cached, 1 skipped")
    assert captured.err.count("skipped ") == 1  # notes.xyz, told once
    assert cache_of(tmp_path / "one") == cache_of(tmp_path / "two")
    # resumable as one process is: a rerun with two jobs finds everything done
    assert main([str(songs), "--out", str(tmp_path / "two"), "--codec", "debug",
                 "--jobs", "2"]) == 0
    assert summary(capsys.readouterr().out).startswith("prepared 0 songs, 6 already cached")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None,
                    reason="needs accelerate")
def test_two_ranks_of_accelerate_launch_make_the_cache_one_process_makes(tmp_path, capsys):
    songs = corpus(tmp_path / "songs")
    assert main([str(songs), "--out", str(tmp_path / "one"), "--codec", "debug"]) == 0
    one = summary(capsys.readouterr().out)
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    # the README's CPU form: accelerate runs one process for `--cpu --num_processes 2`
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    proc = subprocess.run(
        [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port",
         str(free_port()), "-m", "stemcodec.prepare", str(songs), "--out",
         str(tmp_path / "two"), "--codec", "debug"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    rank1 = [ln for ln in lines if ln.startswith("rank 1/2: prepared ")]
    assert len(rank1) == 1 and not rank1[0].startswith("rank 1/2: prepared 0 songs"), (
        proc.stdout, proc.stderr[-3000:])
    assert summary(proc.stdout).split(";")[0] == one.split(";")[0]  # rank 0: the totals
    assert proc.stderr.count("skipped ") == 1
    assert "Traceback" not in proc.stderr
    assert cache_of(tmp_path / "one") == cache_of(tmp_path / "two")
