"""The evaluation sets and report (stemcodec.evaluation: stem_sets, report) end to end on tiny
inputs (a tiny random classifier, the debug codec): the sets are written, the table has one
row per set, bad sets are one line; eval/stem_sets.py and eval/report.py run as a user runs
them."""

import json
import os
import subprocess
import sys

import pytest
import torch

from stemcodec.codec import load_codec
from stemcodec.errors import UserError
from stemcodec.evaluation.report import mean_ci, parse_set, write_report
from stemcodec.evaluation.stem_sets import describe_set, make_set
from stemcodec.metrics.classifier import ClassifierConfig, InstrumentClassifier
from stemcodec.model import ModelConfig, MultiStreamTransformer
from train_scripts import ROOT, ok, one_line_error


def run_eval(name: str, *args: str) -> subprocess.CompletedProcess:
    """`python eval/<name>.py ARGS`, as the README runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([sys.executable, str(ROOT / "eval" / f"{name}.py"), *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def classifier(tmp_path):
    torch.manual_seed(0)
    model = InstrumentClassifier(ClassifierConfig(classes=["drums", "bass", "piano"],
                                                  widths=[4, 8], embedding=8))
    model.save(tmp_path / "clf")
    return str(tmp_path / "clf")


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(num_codebooks=4, cardinality=1024, dim=32, num_layers=1, num_heads=2,
                      max_frames=64)
    model = MultiStreamTransformer(cfg).eval()
    model.codec_info = load_codec("debug").info()
    model.training_info = {"window": 40, "slot_dropout": True}
    model.save_pretrained(tmp_path / "tiny")
    return str(tmp_path / "tiny")


@pytest.mark.slow
def test_sets_and_report(tmp_path, write_tone, classifier, checkpoint):
    corpus = tmp_path / "corpus"
    for i in range(3):
        for slot, freq in (("drums", 80.0), ("bass", 110.0), ("piano", 440.0)):
            write_tone(corpus / f"piece{i}" / f"{slot}.wav", seconds=3.0, freq=freq * (i + 1))
    (corpus / "broken").mkdir()  # no stems: passed over
    ref, gen = tmp_path / "ref", tmp_path / "gen"
    make_set(ref, "drums,bass,piano", corpus=corpus, pieces=2, duration=2.5)
    make_set(gen, "drums,bass,piano", checkpoint=checkpoint, pieces=3, batch=2, duration=2.2)
    assert sorted(p.name for p in ref.iterdir() if p.is_dir()) == ["piece0", "piece1"]
    assert len([p for p in gen.iterdir() if p.is_dir()]) == 3
    assert json.loads((gen / "set.json").read_text())["checkpoint"] == checkpoint
    out = tmp_path / "report"
    table = write_report(out, {"reference": ref, "tiny": gen, "again": ref},
                         classifier=classifier)
    assert table in (out / "report.md").read_text()
    assert "| reference | 2 |" in table and "| tiny | 3 |" in table and "(reference) |" in table
    data = json.loads((out / "report.json").read_text())
    # the reference against itself is at distance 0; the generations are farther
    assert data["summary"]["again"]["frechet"] == pytest.approx(0.0, abs=1e-3)
    assert data["summary"]["tiny"]["frechet"] > 0.01
    assert set(data["summary"]["tiny"]["frechet_by_slot"]) == {"drums", "bass", "piano"}
    assert "embeddings" not in next(iter(data["pieces"]["tiny"].values()))
    stability = data["summary"]["reference"]["timbre_stability"]
    assert stability[1] <= stability[0] <= stability[2] <= 1.0 + 1e-6
    assert (out / "stability_by_slot.png").stat().st_size > 0
    assert (out / "switches_over_time.png").stat().st_size > 0


def test_report_refuses_a_set_that_is_not_a_folder(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        parse_set("x=/nope")
    with pytest.raises(UserError, match="use NAME=FOLDER"):
        parse_set("nameonly")
    assert parse_set(f"ref={tmp_path}") == ("ref", tmp_path)


def test_bootstrap_interval_holds_the_mean():
    mean, lo, hi = mean_ci([0.1, 0.5, 0.9, None])
    assert abs(mean - 0.5) < 1e-9 and lo < mean < hi
    assert mean_ci([None]) is None


def test_report_makes_its_own_sets_from_a_corpus_and_a_model(tmp_path, write_tone, classifier,
                                                             checkpoint):
    corpus = tmp_path / "corpus"
    for i in range(2):
        for slot, freq in (("drums", 80.0), ("bass", 110.0), ("piano", 440.0)):
            write_tone(corpus / f"piece{i}" / f"{slot}.wav", seconds=3.0, freq=freq * (i + 1))
    out = tmp_path / "report"
    table = write_report(out, real=corpus, model=checkpoint, slots="drums,bass,piano",
                         pieces=2, duration=2, classifier=classifier)
    assert "| real stems | 2 |" in table and "| stemcodec | 2 |" in table
    assert sorted(p.name for p in (out / "sets").iterdir()) == ["model", "real"]
    with pytest.raises(UserError, match="nothing to report"):
        write_report(out, classifier=classifier)
    with pytest.raises(UserError, match="^--model .*: no config.json there"):
        write_report(out, model=str(tmp_path / "nope"), classifier=classifier)


@pytest.fixture
def mix_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(num_codebooks=4, cardinality=1024, dim=32, num_layers=1, num_heads=2,
                      max_frames=64, max_slots=1, mode="mix")
    model = MultiStreamTransformer(cfg).eval()
    model.codec_info = load_codec("debug").info()
    model.training_info = {"window": 40}
    model.save_pretrained(tmp_path / "mixmodel")
    return tmp_path / "mixmodel"


def three_slot_corpus(root, write_tone, pieces=2):
    for i in range(pieces):
        for slot, freq in (("drums", 80.0), ("bass", 110.0), ("piano", 440.0)):
            write_tone(root / f"piece{i}" / f"{slot}.wav", seconds=3.0, freq=freq * (i + 1))
    return root


@pytest.mark.slow
def test_mix_baseline_is_separated_into_stems(tmp_path, write_tone, classifier, mix_checkpoint):
    """With a separator (here the tiny random one) the mix baseline's pieces hold stems and
    its own mix, and it has a row in both tables."""
    out = tmp_path / "report"
    write_report(out, real=three_slot_corpus(tmp_path / "corpus", write_tone),
                 baseline_mix=str(mix_checkpoint), separator="debug", slots="drums,bass,piano",
                 pieces=2, duration=2, classifier=classifier)
    stems_table, mixes_table = (out / "report.md").read_text().split("Mixes (")
    assert "| mix baseline | 2 |" in stems_table and "| mix baseline | 2 |" in mixes_table
    piece = next((out / "sets" / "baseline-mix").iterdir())
    assert sorted(p.name for p in piece.iterdir()) == ["bass.wav", "drums.wav", "mix.wav",
                                                       "piano.wav"]


def test_mix_baseline_without_separator_weights_is_scored_at_the_mix_level(
        tmp_path, write_tone, classifier, mix_checkpoint, capsys):
    """The htdemucs_6s weights are missing (as here): one line, and the mix baseline gets a
    row in the mixes table beside the real and generated mixes, none in the stems table."""
    corpus = three_slot_corpus(tmp_path / "corpus", write_tone)
    out = tmp_path / "report"
    write_report(out, real=corpus, baseline_mix=str(mix_checkpoint), slots="drums,bass,piano",
                 pieces=2, duration=2, demucs_repo=str(tmp_path), classifier=classifier)
    err = capsys.readouterr().err
    assert "mix baseline: " in err and "scored at the mix level only" in err
    stems_table, mixes_table = (out / "report.md").read_text().split("Mixes (")
    assert "| real stems | 2 |" in stems_table and "mix baseline" not in stems_table
    assert "| real stems | 2 |" in mixes_table and "| mix baseline | 2 |" in mixes_table
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["mix baseline"]["pieces"] == 0
    assert summary["real stems"]["mix"]["frechet"] == pytest.approx(0.0, abs=1e-3)
    assert summary["mix baseline"]["mix"]["frechet"] > 0.01
    piece = next((out / "sets" / "baseline-mix").iterdir())
    assert sorted(p.name for p in piece.iterdir()) == ["mix.wav"]


def test_mixes_only_reference_and_bad_separator_name(tmp_path, write_tone, classifier,
                                                     mix_checkpoint, capsys):
    """A mix-only first set is still the reference (of the mixes; the stems get no Fréchet
    distance, after one line), and a misspelt separator stops the run instead of being
    taken for missing weights."""
    mixes = tmp_path / "mixes"
    written = make_set(mixes, "drums,bass,piano", checkpoint=str(mix_checkpoint), pieces=2,
                       duration=2)
    assert describe_set(written, "drums,bass,piano") == "mixes (no --separator: mix.wav only)"
    ref = tmp_path / "ref"
    make_set(ref, "drums,bass,piano", corpus=three_slot_corpus(tmp_path / "corpus", write_tone),
             pieces=2, duration=2)
    out = tmp_path / "report"
    write_report(out, {"gen": mixes, "real": ref}, classifier=classifier)
    assert "no Fréchet distance of the stems: the first set, gen, has none" in \
        capsys.readouterr().err
    stems_table, mixes_table = (out / "report.md").read_text().split("Mixes (")
    assert "(reference)" not in stems_table and "| real | 2 |" in stems_table
    assert "| gen | 2 | " in mixes_table and mixes_table.count("(reference)") == 1
    with pytest.raises(UserError, match="^unknown separator 'htdemcus'") as error:
        write_report(tmp_path / "r2", real=ref, baseline_mix=str(mix_checkpoint),
                     separator="htdemcus", slots="drums,bass,piano", pieces=1, duration=2,
                     classifier=classifier)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_the_scripts_make_a_set_and_a_report_as_the_readme_runs_them(tmp_path, write_tone,
                                                                     classifier):
    """The thin CLIs: their arguments reach the package, a user error is one line, exit 2."""
    corpus = three_slot_corpus(tmp_path / "corpus", write_tone)
    ref, out = tmp_path / "ref", tmp_path / "report"
    done = run_eval("stem_sets", "--corpus", corpus, "--slots", "drums,bass,piano", "--pieces",
                    "2", "--duration", "2", "--out", ref)
    assert ok(done) and f"wrote 2 pieces of drums,bass,piano to {ref}" in done.stdout
    done = run_eval("report", "--set", f"reference={ref}", "--classifier", classifier,
                    "--out", out)
    assert ok(done) and "| reference | 2 |" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md",
                                                     "stability_by_slot.png",
                                                     "switches_over_time.png"]
    line = one_line_error(run_eval("report", "--set", "x=/nope", "--classifier", classifier,
                                   "--out", out))
    assert line == "error: --set x=/nope: /nope is not a folder (make one with eval/stem_sets.py)"
    assert one_line_error(run_eval("stem_sets", "--corpus", corpus, "--pieces", "0", "--out",
                                   ref)) == "error: --pieces must be at least 1 and --duration positive"
