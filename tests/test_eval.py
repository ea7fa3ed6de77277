"""The evaluation CLIs on tiny inputs: bad inputs get their line, the run goes on, the JSON
has the documented layout."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemcodec.metrics.classifier import ClassifierConfig, InstrumentClassifier

ROOT = Path(__file__).resolve().parents[1]


def script(name):
    spec = importlib.util.spec_from_file_location(f"eval_{name}", ROOT / "eval" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


consistency = script("consistency")
codec_quality = script("codec_quality")


def silent(path, seconds, rate=24000):
    sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)


@pytest.fixture
def tiny_classifier(tmp_path):
    model = InstrumentClassifier(ClassifierConfig(classes=["bass", "piano", "other"],
                                                  widths=[4, 8], embedding=8))
    model.save(tmp_path / "clf")
    return str(tmp_path / "clf")


def test_consistency_scores_stems_and_reports_each_bad_input(tmp_path, write_tone,
                                                             tiny_classifier, capsys):
    piece = tmp_path / "piece"
    write_tone(piece / "piano.wav", seconds=3.0, freq=440.0)
    write_tone(piece / "bass.wav", seconds=3.0, freq=110.0)
    write_tone(piece / "lead.wav", seconds=3.0, freq=660.0)  # not an instrument name
    write_tone(piece / "mix.wav", seconds=3.0)  # passed over
    silent(piece / "drums.wav", 3.0)
    (piece / "other.wav").write_bytes(b"RIFF not really audio")
    (tmp_path / "empty").mkdir()
    single = write_tone(tmp_path / "single.flac", seconds=2.0)
    out = tmp_path / "c.json"
    code = consistency.main([str(piece), str(tmp_path / "empty"), str(single),
                             str(tmp_path / "missing"), "--classifier", tiny_classifier,
                             "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("skipped")]
    assert len(lines) == 4, err
    assert any("empty" in line and "no stems" in line for line in lines)
    assert any("missing" in line for line in lines)
    assert any("other.wav" in line for line in lines)
    assert any("drums.wav" in line and "silent" in line for line in lines)
    data = json.loads(out.read_text())
    assert set(data) == {"files", "summary"}
    files = data["files"]
    assert set(files) == {str(piece / "piano.wav"), str(piece / "bass.wav"),
                          str(piece / "lead.wav"), str(single)}
    for path, row in files.items():
        assert isinstance(row["timbre_stability"], float)
        assert isinstance(row["switch_rate"], float)
        known = path.endswith(("piano.wav", "bass.wav"))
        assert (row["identity_accuracy"] is not None) == known
        assert row["instrument"] == (Path(path).stem if known else None)
    assert data["summary"]["files"] == 4 and data["summary"]["skipped"] == 4
    assert set(data["summary"]["instruments"]) == {"piano", "bass"}


def test_consistency_with_nothing_to_score_is_one_line_and_exit_2(tmp_path, tiny_classifier,
                                                                  capsys):
    (tmp_path / "empty").mkdir()
    code = consistency.main([str(tmp_path / "empty"), "--classifier", tiny_classifier])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: nothing to score")


def test_consistency_without_a_classifier_is_a_user_error(tmp_path, write_tone, capsys):
    wav = write_tone(tmp_path / "piano.wav")
    code = consistency.main([str(wav), "--classifier", str(tmp_path / "nope")])
    assert code == 2 and "not a stemcodec checkpoint" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg with libopus")
def test_codec_quality_averages_codec_and_opus_and_skips_bad_stems(tmp_path, write_tone, capsys):
    corpus = tmp_path / "corpus"
    for k, piece in enumerate(["p1", "p2", "p3"]):
        write_tone(corpus / piece / "piano.wav", seconds=1.0, freq=330.0 + 50 * k)
        write_tone(corpus / piece / "mix.wav", seconds=1.0)
    silent(corpus / "p1" / "bass.wav", 1.0)
    (corpus / "p2" / "guitar.wav").write_bytes(b"")  # unreadable
    out = tmp_path / "q.json"
    code = codec_quality.main([str(corpus), "--codec", "debug", "--limit", "2",
                               "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    lines = [line for line in captured.err.splitlines() if line.startswith("skipped")]
    assert len(lines) == 2 and "silent" in lines[0] + lines[1]
    data = json.loads(out.read_text())
    keys = {"mel_distance", "mrstft_distance", "si_sdr"}
    assert set(data["codec"]) == keys and set(data["opus"]) == keys
    assert all(isinstance(v, float) for v in [*data["codec"].values(), *data["opus"].values()])
    assert data["info"]["stems"] == 2 and data["info"]["pieces"] == 2
    assert "opus 6 kbps" in captured.out and "debug" in captured.out


def test_codec_quality_bad_corpus_or_codec_is_one_line_and_exit_2(tmp_path, capsys):
    assert codec_quality.main([str(tmp_path / "none"), "--codec", "debug"]) == 2
    assert codec_quality.main([str(tmp_path), "--codec", "nonsense"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)
