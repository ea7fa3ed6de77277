"""eval/stem_sets.py and eval/report.py end to end on tiny inputs (a tiny random classifier,
the debug codec): the sets are written, the table has one row per set, bad sets are one line."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from stemcodec.codec import load_codec
from stemcodec.metrics.classifier import ClassifierConfig, InstrumentClassifier
from stemcodec.model import ModelConfig, MultiStreamTransformer

ROOT = Path(__file__).resolve().parents[1]


def script(name):
    spec = importlib.util.spec_from_file_location(f"eval_{name}", ROOT / "eval" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stem_sets, report = script("stem_sets"), script("report")


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


def test_sets_and_report(tmp_path, write_tone, classifier, checkpoint, capsys):
    corpus = tmp_path / "corpus"
    for i in range(3):
        for slot, freq in (("drums", 80.0), ("bass", 110.0), ("piano", 440.0)):
            write_tone(corpus / f"piece{i}" / f"{slot}.wav", seconds=3.0, freq=freq * (i + 1))
    (corpus / "broken").mkdir()  # no stems: passed over
    ref, gen = tmp_path / "ref", tmp_path / "gen"
    assert stem_sets.main(["--corpus", str(corpus), "--slots", "drums,bass,piano", "--pieces",
                           "2", "--duration", "2.5", "--out", str(ref)]) == 0
    assert stem_sets.main(["--checkpoint", checkpoint, "--slots", "drums,bass,piano",
                           "--pieces", "3", "--batch", "2", "--duration", "2.2",
                           "--out", str(gen)]) == 0
    assert sorted(p.name for p in ref.iterdir() if p.is_dir()) == ["piece0", "piece1"]
    assert len([p for p in gen.iterdir() if p.is_dir()]) == 3
    assert json.loads((gen / "set.json").read_text())["checkpoint"] == checkpoint
    out = tmp_path / "report"
    assert report.main(["--set", f"reference={ref}", "--set", f"tiny={gen}", "--set",
                        f"again={ref}", "--classifier", classifier, "--out", str(out)]) == 0
    table = (out / "report.md").read_text()
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


def test_report_refuses_a_set_that_is_not_a_folder(tmp_path, classifier, capsys):
    assert report.main(["--set", "x=/nope", "--classifier", classifier, "--out",
                        str(tmp_path / "r")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert report.main(["--set", "nameonly", "--classifier", classifier, "--out",
                        str(tmp_path / "r")]) == 2


def test_bootstrap_interval_holds_the_mean():
    mean, lo, hi = report.mean_ci([0.1, 0.5, 0.9, None])
    assert abs(mean - 0.5) < 1e-9 and lo < mean < hi
    assert report.mean_ci([None]) is None


def test_report_makes_its_own_sets_from_a_corpus_and_a_model(tmp_path, write_tone, classifier,
                                                             checkpoint, capsys):
    corpus = tmp_path / "corpus"
    for i in range(2):
        for slot, freq in (("drums", 80.0), ("bass", 110.0), ("piano", 440.0)):
            write_tone(corpus / f"piece{i}" / f"{slot}.wav", seconds=3.0, freq=freq * (i + 1))
    out = tmp_path / "report"
    assert report.main(["--real", str(corpus), "--model", checkpoint, "--slots",
                        "drums,bass,piano", "--pieces", "2", "--duration", "2", "--classifier",
                        classifier, "--out", str(out)]) == 0
    table = (out / "report.md").read_text()
    assert "| real stems | 2 |" in table and "| stemcodec | 2 |" in table
    assert sorted(p.name for p in (out / "sets").iterdir()) == ["model", "real"]
    assert report.main(["--classifier", classifier, "--out", str(out)]) == 2
    assert "nothing to report" in capsys.readouterr().err
    assert report.main(["--model", str(tmp_path / "nope"), "--classifier", classifier,
                        "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "no config.json there" in err


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


def test_mix_baseline_is_separated_into_stems(tmp_path, write_tone, classifier, mix_checkpoint):
    """With a separator (here the tiny random one) the mix baseline's pieces hold stems and
    its own mix, and it has a row in both tables."""
    out = tmp_path / "report"
    assert report.main(["--real", str(three_slot_corpus(tmp_path / "corpus", write_tone)),
                        "--baseline-mix", str(mix_checkpoint), "--separator", "debug",
                        "--slots", "drums,bass,piano", "--pieces", "2", "--duration", "2",
                        "--classifier", classifier, "--out", str(out)]) == 0
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
    assert report.main(["--real", str(corpus), "--baseline-mix", str(mix_checkpoint),
                        "--slots", "drums,bass,piano", "--pieces", "2", "--duration", "2",
                        "--demucs-repo", str(tmp_path), "--classifier", classifier,
                        "--out", str(out)]) == 0
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
    assert stem_sets.main(["--checkpoint", str(mix_checkpoint), "--slots", "drums,bass,piano",
                           "--pieces", "2", "--duration", "2", "--out", str(mixes)]) == 0
    assert "mixes (no --separator: mix.wav only)" in capsys.readouterr().out
    ref = tmp_path / "ref"
    assert stem_sets.main(["--corpus", str(three_slot_corpus(tmp_path / "corpus", write_tone)),
                           "--slots", "drums,bass,piano", "--pieces", "2", "--duration", "2",
                           "--out", str(ref)]) == 0
    out = tmp_path / "report"
    assert report.main(["--set", f"gen={mixes}", "--set", f"real={ref}", "--classifier",
                        classifier, "--out", str(out)]) == 0
    assert "no Fréchet distance of the stems: the first set, gen, has none" in \
        capsys.readouterr().err
    stems_table, mixes_table = (out / "report.md").read_text().split("Mixes (")
    assert "(reference)" not in stems_table and "| real | 2 |" in stems_table
    assert "| gen | 2 | " in mixes_table and mixes_table.count("(reference)") == 1
    assert report.main(["--real", str(ref), "--baseline-mix", str(mix_checkpoint),
                        "--separator", "htdemcus", "--slots", "drums,bass,piano", "--pieces",
                        "1", "--duration", "2", "--classifier", classifier,
                        "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown separator 'htdemcus'") and "\n" not in err
