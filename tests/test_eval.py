"""The evaluation on tiny inputs (stemcodec.evaluation: consistency, classifier_training;
eval/codec_quality.py): bad inputs get their line, the run goes on, the JSON has the
documented layout; eval/consistency.py runs as a user runs it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemcodec.errors import UserError
from stemcodec.evaluation.classifier_training import training_pieces, write_lines
from stemcodec.evaluation.consistency import score_paths
from stemcodec.metrics.classifier import ClassifierConfig, InstrumentClassifier
from train_scripts import ok, one_line_error

ROOT = Path(__file__).resolve().parents[1]


def run_eval(name: str, *args: str) -> subprocess.CompletedProcess:
    """`python eval/<name>.py ARGS`, as the README runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([sys.executable, str(ROOT / "eval" / f"{name}.py"), *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


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
    scored = score_paths([piece, tmp_path / "empty", single, tmp_path / "missing"],
                         tiny_classifier, json_path=out)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("skipped")]
    assert len(lines) == 4, err
    assert any("empty" in line and "no stems" in line for line in lines)
    assert any("missing" in line for line in lines)
    assert any("other.wav" in line for line in lines)
    assert any("drums.wav" in line and "silent" in line for line in lines)
    data = json.loads(out.read_text())
    assert set(data) == {"files", "summary"} and data == json.loads(json.dumps(scored))
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


def test_consistency_with_nothing_to_score_is_a_user_error(tmp_path, tiny_classifier):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="^nothing to score"):
        score_paths([tmp_path / "empty"], tiny_classifier)


def test_consistency_without_a_classifier_is_a_user_error(tmp_path, write_tone):
    wav = write_tone(tmp_path / "piano.wav")
    with pytest.raises(UserError, match="not a stemcodec checkpoint"):
        score_paths([wav], str(tmp_path / "nope"))


@pytest.mark.slow
def test_the_consistency_script_as_the_readme_runs_it(tmp_path, write_tone, tiny_classifier):
    """The thin CLI: a table and the closing line; nothing to score is one line, exit 2."""
    piece = tmp_path / "piece"
    write_tone(piece / "piano.wav", seconds=2.0, freq=440.0)
    write_tone(piece / "bass.wav", seconds=2.0, freq=110.0)
    out = tmp_path / "c.json"
    done = run_eval("consistency", piece, "--classifier", tiny_classifier, "--json", out)
    assert ok(done) and done.stdout.splitlines()[0].split() == [
        "instrument", "files", "stability", "switch", "identity"]
    assert done.stdout.splitlines()[-1] == f"scored 2 stems, skipped 0; figures in {out}"
    assert json.loads(out.read_text())["summary"]["files"] == 2
    (tmp_path / "empty").mkdir()
    assert one_line_error(run_eval("consistency", tmp_path / "empty", "--classifier",
                                   tiny_classifier)).startswith("error: nothing to score")


def test_classifier_lines_and_a_split_by_tune(tmp_path, write_tone):
    """--write-lines' MIDI files, the same for the same seed; the training pieces are split by
    tune, and one instrument or too few pieces are user errors."""
    first = write_lines(tmp_path / "a", 2, seconds=4.0)
    again = write_lines(tmp_path / "b", 2, seconds=4.0)
    assert [p.name for p in first] == ["lines-0-0000.mid", "lines-0-0001.mid"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    corpus = tmp_path / "corpus"
    for i in range(12):
        for slot in ("bass", "piano"):
            write_tone(corpus / f"folk-band_tune{i}_v0" / f"{slot}.wav", seconds=0.2)
    classes, train, test = training_pieces([corpus], 0.3)
    assert classes == ["bass", "piano"] and train and test and len(train) + len(test) == 12
    assert not {p.folder.name for p in train} & {p.folder.name for p in test}
    one_tune = tmp_path / "one"
    for slot in ("bass", "piano"):
        write_tone(one_tune / "folk-band_tune0_v0" / f"{slot}.wav", seconds=0.2)
        write_tone(one_tune / "folk-band_tune0_v1" / f"{slot}.wav", seconds=0.2)
    with pytest.raises(UserError, match="too few"):
        training_pieces([one_tune], 0.3)
    lonely = tmp_path / "lonely"
    write_tone(lonely / "p0" / "bass.wav", seconds=0.2)
    with pytest.raises(UserError, match="at least two instruments"):
        training_pieces([lonely], 0.3)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg with libopus")
def test_codec_quality_averages_codec_and_opus_and_skips_bad_stems(tmp_path, write_tone):
    corpus = tmp_path / "corpus"
    for k, piece in enumerate(["p1", "p2", "p3"]):
        write_tone(corpus / piece / "piano.wav", seconds=1.0, freq=330.0 + 50 * k)
        write_tone(corpus / piece / "mix.wav", seconds=1.0)
    silent(corpus / "p1" / "bass.wav", 1.0)
    (corpus / "p2" / "guitar.wav").write_bytes(b"")  # unreadable
    out = tmp_path / "q.json"
    result = run_eval("codec_quality", corpus, "--codec", "debug", "--limit", "2",
                      "--json", out, "--plot", tmp_path / "tones.png",
                      "--spectrograms", tmp_path / "stems.png", "--spectrogram-piece", "2")
    assert ok(result)
    assert (tmp_path / "tones.png").stat().st_size > 5000 and "tone spectra in" in result.stdout
    assert (tmp_path / "stems.png").stat().st_size > 5000 and "spectrograms in" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert len(lines) == 2 and "silent" in lines[0] + lines[1]
    data = json.loads(out.read_text())
    figures = {"mel_distance", "mrstft_distance", "si_sdr", "chroma_correlation",
               "cqt_distance", "buzz_db", "tones_at_pitch", "tones_worst_error"}
    for name in ("codec", "opus"):
        assert figures <= set(data[name])
        assert all(isinstance(data[name][k], float) for k in figures)
        assert data[name]["identity_by_instrument"].keys() == {"piano"}
    # Opus keeps a tone at its pitch; the untrained debug codec does not
    assert data["opus"]["tones_at_pitch"] >= 0.9 > data["codec"]["tones_at_pitch"]
    assert data["opus"]["chroma_correlation"] > data["codec"]["chroma_correlation"]
    assert set(data["original"]["identity_by_instrument"]) == {"piano"}  # originals scored too
    assert data["tones"]["codec"]["tones"] == 20 and "sine 440" in data["tones"]["opus"]["peaks"]
    assert data["info"]["stems"] == 2 and data["info"]["pieces"] == 2
    assert "opus 6 kbps" in result.stdout and "debug" in result.stdout


@pytest.mark.slow
def test_codec_quality_bad_corpus_or_codec_is_one_line_and_exit_2(tmp_path):
    assert "is not a folder" in one_line_error(run_eval("codec_quality", tmp_path / "none",
                                                        "--codec", "debug"))
    assert "unknown codec 'nonsense'" in one_line_error(run_eval("codec_quality", tmp_path,
                                                                 "--codec", "nonsense"))
    assert "--tones-only" in one_line_error(run_eval("codec_quality", "--codec", "debug"))
