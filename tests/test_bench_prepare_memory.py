"""bench/prepare_memory.py: a song of the asked length is written and prepared in a
subprocess, and its peak memory and run come back (a smoke run; the figures are not judged)."""

import json

import pytest
import soundfile as sf
from test_bench import load_bench


@pytest.mark.slow
def test_prepare_memory_writes_the_song_and_measures_the_run(tmp_path):
    bench = load_bench("prepare_memory")
    path = tmp_path / "memory.json"
    assert bench.main(["--seconds", "3", "--instrument", "piano", "--format", "flac",
                       "--work", str(tmp_path / "work"), "--json", str(path)]) == 0
    [run] = json.loads(path.read_text())["runs"]
    assert sf.info(str(tmp_path / "work" / "3s" / "song.flac")).duration == 3.0
    assert run["exit"] == 0 and not run["timed_out"] and run["length_s"] == 3
    assert 100 < run["peak_rss_mb"] < 4000
    assert run["summary"].startswith("prepared 1 songs, 0 already cached, 0 skipped")
