"""prepare over a folder of hostile files (tests/hostile_inputs.py), run as a user runs it:
a line per bad or odd file, the good ones in the cache, odd ones flagged, no traceback."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hostile_inputs import RATE, Hostile, garbage_over_middle, make_hostile_songs, tone
from stemcodec.audio import read_file
from stemcodec.corpus.prepare import FLAG_NAMES, main
from stemcodec.corpus.walk import shown

REPO = Path(__file__).resolve().parents[1]
needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")


def told(err: str) -> list[str]:
    """The `skipped` and `warning` lines of a run (tqdm's bar shares stderr, with \\r)."""
    return [ln.strip() for ln in re.split(r"[\r\n]", err)
            if ln.startswith(("skipped ", "warning "))]


def check_lines(err: str, hostile: Hostile, warnings: bool = True) -> None:
    """Each expected file has exactly its one line; nothing else has a line."""
    lines = told(err)
    expected = {path: e for path, e in hostile.lines.items() if warnings or e.kind == "skipped"}
    for path, expect in expected.items():
        prefix = f"{expect.kind} {shown(path)}: "
        mine = [ln for ln in lines if ln.startswith(prefix)]
        assert len(mine) == 1, (prefix, lines)
        for word in expect.words:
            assert word in mine[0], (word, mine[0])
    prefixes = tuple(f"{e.kind} {shown(p)}: " for p, e in expected.items())
    assert [ln for ln in lines if not ln.startswith(prefixes)] == []
    assert "Traceback" not in err


def check_manifest(out: Path, hostile: Hostile) -> None:
    songs = json.loads((out / "manifest.json").read_text())["songs"].values()
    assert sorted(s["source"] for s in songs) == sorted(hostile.songs)
    for s in songs:
        assert set(s["flags"]) == hostile.flags.get(s["source"], set()), s["source"]
    assert all(re.fullmatch(r"[A-Za-z0-9._~-]+", s["id"]) for s in songs)


def flagged(hostile: Hostile) -> str:
    counts: dict[str, int] = {}
    for flags in hostile.flags.values():
        for flag in flags:
            counts[flag] = counts.get(flag, 0) + 1
    return ", ".join(f"{n} {FLAG_NAMES[f]}" for f, n in sorted(counts.items()))


def run(songs: Path, out: Path, *extra: str) -> int:
    return main([str(songs), "--out", str(out), "--codec", "debug", *extra])


def test_hostile_folder_a_line_per_file_and_flags_in_the_manifest(tmp_path, capsys):
    hostile = make_hostile_songs(tmp_path / "songs")
    out = tmp_path / "cache"
    assert run(tmp_path / "songs", out, "--instrument", "piano") == 0
    captured = capsys.readouterr()
    check_lines(captured.err, hostile)
    check_manifest(out, hostile)
    summary = captured.out.strip().splitlines()[-1]
    songs, skipped = len(hostile.songs), sum(e.kind == "skipped" for e in hostile.lines.values())
    assert summary.startswith(f"prepared {songs} songs, 0 already cached, {skipped} skipped; "
                              f"flagged: {flagged(hostile)}; ")

    # again: the bad files are told again, the odd ones are cached and only counted
    assert run(tmp_path / "songs", out, "--instrument", "piano") == 0
    captured = capsys.readouterr()
    check_lines(captured.err, hostile, warnings=False)
    assert captured.out.strip().splitlines()[-1].startswith(
        f"prepared 0 songs, {songs} already cached, {skipped} skipped; "
        f"flagged: {flagged(hostile)}; ")


def test_without_ffprobe_damage_is_still_told(tmp_path, capsys, monkeypatch):
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # a machine without ffmpeg
    hostile = make_hostile_songs(tmp_path / "songs", ffprobe=False)
    out = tmp_path / "cache"
    assert run(tmp_path / "songs", out, "--instrument", "piano") == 0
    check_lines(capsys.readouterr().err, hostile)
    check_manifest(out, hostile)


@pytest.mark.slow
def test_hostile_folder_through_separation_as_a_user_runs_it(tmp_path):
    hostile = make_hostile_songs(tmp_path / "songs")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "stemcodec.prepare", str(tmp_path / "songs"), "--out",
         str(tmp_path / "cache"), "--codec", "debug", "--separator", "debug"],
        cwd=REPO, env=env, capture_output=True, text=True, errors="surrogateescape",
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check_lines(proc.stderr, hostile)
    # what libmpg123 writes to the terminal itself (`Note: Trying to resync...`) is caught
    assert "Note:" not in proc.stderr and "libmpg123" not in proc.stderr
    check_manifest(tmp_path / "cache", hostile)
    assert f"flagged: {flagged(hostile)}; " in proc.stdout


@needs_ffprobe
def test_a_damaged_ogg_keeps_its_length_and_what_follows_the_hole_its_time(tmp_path):
    """libsndfile drops the pages that fail their checksum and closes the gap: the rest of
    the file would come early (and a stem would drift from the others)."""
    path = tmp_path / "garbage.ogg"
    sf.write(path, tone(8.0, seed=3), RATE)
    clean, _ = sf.read(path, dtype="float32", always_2d=True)
    garbage_over_middle(path, 6_000)
    assert len(sf.read(path)[0]) < len(clean) - RATE // 2  # what libsndfile alone gives
    decoded = read_file(path)
    [warning] = decoded.warnings
    seconds, at = map(float, re.match(r"([\d.]+) s unreadable at ([\d.]+) s",
                                      warning).groups())
    assert 2.0 < at < 6.0 and 0.5 < seconds < 3.0
    assert decoded.data.shape == clean.shape
    tail = slice(len(clean) - RATE, len(clean))
    assert np.abs(decoded.data[tail] - clean[tail]).max() < 1e-4
    hole = decoded.data[int(at * RATE) + 2048:int((at + seconds) * RATE) - 2048]
    assert len(hole) and not hole.any()


@needs_ffprobe
def test_several_holes_are_one_line_and_each_is_filled_in_its_place(tmp_path):
    path = tmp_path / "two_holes.ogg"
    sf.write(path, tone(12.0, seed=5), RATE)
    clean, _ = sf.read(path, dtype="float32", always_2d=True)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(6)
    for share in (0.3, 0.7):
        at = int(len(data) * share)
        data[at:at + 4000] = rng.bytes(4000)
    path.write_bytes(bytes(data))
    decoded = read_file(path)
    [warning] = decoded.warnings
    assert re.match(r"[\d.]+ s unreadable in 2 stretches, at [\d.]+ s \([\d.]+ s\), "
                    r"[\d.]+ s \([\d.]+ s\), filled with silence", warning), warning
    assert decoded.data.shape == clean.shape
    between = slice(int(5.5 * RATE), int(6.5 * RATE))  # after the first hole, before the second
    assert np.abs(decoded.data[between] - clean[between]).max() < 1e-4
    tail = slice(len(clean) - RATE, len(clean))
    assert np.abs(decoded.data[tail] - clean[tail]).max() < 1e-4
