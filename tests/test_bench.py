"""bench/generate_speed.py --json: its keys, the streamed figures among them (a smoke run of
the tiny config on the debug codec; the figures themselves are not checked)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generate_speed_json_keeps_its_keys_and_adds_the_streamed_figures(tmp_path):
    bench = load_bench("generate_speed")
    path = tmp_path / "speed.json"
    bench.main(["--config", str(ROOT / "configs" / "tiny-test.yaml"), "--codec", "debug",
                "--slots", "1", "2", "--duration", "0.2", "--repeats", "1", "--kv-slots", "1",
                "--kv-points", "2", "--kv-steps", "1", "--no-gpu", "--json", str(path)])
    result = json.loads(path.read_text())
    assert {"device", "rtf", "kv_speedup", "details", "time_to_first_audio",
            "rtf_stream"} <= set(result)
    assert set(result["rtf"]) == set(result["rtf_stream"]) == set(
        result["time_to_first_audio"]) == {"1", "2"}
    for slots in ("1", "2"):
        stream = result["details"]["runs"][slots]["stream"]
        assert 0 < result["time_to_first_audio"][slots] <= stream["stream_s"]
        assert result["rtf_stream"][slots] == 0.2 / stream["stream_s"]


def test_generate_speed_times_each_exact_speedup_against_the_code_without_it(tmp_path):
    from stemcodec import StemGenerator
    from stemcodec.model import sampling
    from stemcodec.model.transformer import SlotAttention
    bench = load_bench("generate_speed")
    path = tmp_path / "speed.json"
    bench.main(["--config", str(ROOT / "configs" / "tiny-test.yaml"), "--codec", "debug",
                "--slots", "1", "--duration", "0.2", "--repeats", "1", "--kv-slots", "1",
                "--kv-points", "2", "--kv-steps", "1", "--no-gpu", "--exact-speedups",
                "--speedup-slots", "2", "--json", str(path)])
    runs = json.loads(path.read_text())["details"]["exact_speedups"]
    assert set(runs) == {"lone_slot", "decode_per_stem", "fused_codebooks"}
    for run in runs.values():
        assert run["old_s"] > 0 and run["new_s"] > 0
        assert run["new_over_old"] == run["new_s"] / run["old_s"]
        assert run["tokens_identical"] and run["audio_max_difference"] < 1e-5
    # the switches are left on
    assert SlotAttention.lone_slot_shortcut and sampling.FUSE_CODEBOOKS
    assert StemGenerator.decode_per_stem is None


@pytest.mark.slow
def test_prepare_throughput_times_each_job_count_and_checks_the_tokens(tmp_path):
    """bench/prepare_throughput.py: one row per job count, the first the baseline (1.0x), and
    the same tokens from --jobs 1 and --jobs 2 (the bench exits 1 if they differ)."""
    bench = load_bench("prepare_throughput")
    path = tmp_path / "t.json"
    assert bench.main(["--songs", "2", "--seconds", "2", "--work", str(tmp_path / "work"),
                       "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["results"]
    assert [r["jobs"] for r in rows] == [1, 2] and rows[0]["speedup"] == 1.0
    assert all(r["same_tokens"] and r["seconds"] > 0 for r in rows)
    assert (tmp_path / "work" / "cache-jobs2" / "manifest.json").is_file()


def test_stream_pipe_hears_a_gap_where_audio_comes_late():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "bench" / "stream_pipe.py"
    spec = importlib.util.spec_from_file_location("stream_pipe", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rate = 100
    steady = [(0.5 * i, 60) for i in range(10)]  # 0.6 s of audio every 0.5 s: ahead
    assert bench.gaps(steady, rate) == {"gaps": 0, "gap_s": 0.0, "longest_gap_s": 0.0,
                                        "start_s": 0.0}
    late = [(0.0, 50), (0.5, 50), (1.5, 100), (1.6, 100)]  # runs out at 1.0 s, more at 1.5
    out = bench.gaps(late, rate)
    assert out["gaps"] == 1 and abs(out["gap_s"] - 0.5) < 1e-9
    # a second of preroll: it starts at 1.5 s with 2 s in hand, and never runs out
    assert bench.gaps(late, rate, preroll=1.0)["gaps"] == 0
