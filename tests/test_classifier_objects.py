"""The classifier's second level (the GM family of each second) and what it is trained to hear
through: the head trains, saves and loads; a classifier folder saved before it loads and
says its object figures are n/a; gain, reverb and the cached round trips do what they say;
object identity and object switch rate give the values worked out by hand."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemcodec.corpus.layout import read_piece
from stemcodec.evaluation.classifier_augment import (
    RoundTrips,
    convolve,
    decaying_noise,
    random_gain,
    reverb,
)
from stemcodec.evaluation.classifier_training import (
    accuracy_table,
    object_accuracy,
    object_labels,
)
from stemcodec.evaluation.consistency import print_table, score_paths
from stemcodec.evaluation.report import markdown, write_report
from stemcodec.evaluation.stem_sets import write_piece
from stemcodec.metrics.classifier import (
    OBJECT_FAMILIES,
    ClassifierConfig,
    InstrumentClassifier,
    load_classifier,
)
from stemcodec.metrics.identity import (
    NO_OBJECT_HEAD,
    SecondLabels,
    label_seconds,
    object_family,
    object_identity,
    object_switch_rate,
    slot_object_families,
    switch_rate,
)

ROOT = Path(__file__).resolve().parents[1]
RATE = 24000
# (slot, GM program, base frequency, harmonics) of the synthetic stems
STEMS = {"bass": (33, 55.0, 1), "piano": (0, 440.0, 3), "other": (73, 880.0, 6)}


def tiny(object_families=True) -> InstrumentClassifier:
    torch.manual_seed(0)
    return InstrumentClassifier(ClassifierConfig(
        classes=["bass", "piano", "other"], widths=[4, 8], embedding=8,
        object_families=list(OBJECT_FAMILIES) if object_families else []))


def stem(freq: float, harmonics: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * freq * (h + 1) * t) / (h + 1) for h in range(harmonics))
    return (0.2 * x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_corpus(root: Path, names: list[str], seconds: float = 3.0) -> Path:
    """Pieces of three stems and a meta.json naming each stem's GM program."""
    for n, name in enumerate(names):
        folder = root / f"folk-band_{name}_v0"
        folder.mkdir(parents=True)
        meta = {"stem_instruments": {}}
        for slot, (program, freq, harmonics) in STEMS.items():
            sf.write(folder / f"{slot}.wav", stem(freq * (1 + 0.05 * n), harmonics, seconds, n),
                     RATE, subtype="PCM_16")
            meta["stem_instruments"][slot] = {"program": program, "drum": False}
        (folder / "meta.json").write_text(json.dumps(meta))
    return root


def train_script():
    spec = importlib.util.spec_from_file_location("train_classifier",
                                                  ROOT / "eval" / "train_classifier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the second head -------------------------------------------------------------------------
def test_the_family_head_learns_on_features_and_survives_save_and_load(tmp_path):
    model = tiny()
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(32, 1, 64, 101, generator=gen)
    objects = torch.arange(32) % 2 * OBJECT_FAMILIES.index("brass")  # piano or brass
    feats[objects > 0] += 1.5  # a feature that tells them apart
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        _, emb = model(feats)
        loss = torch.nn.functional.cross_entropy(model.object_logits(emb), objects)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert object_accuracy(model, feats, objects)["overall"] == 1.0
    model.save(tmp_path / "clf")
    back = load_classifier(tmp_path / "clf")
    assert back.has_objects and back.config.object_families == list(OBJECT_FAMILIES)
    wav = torch.from_numpy(stem(220.0, 3, 3.0, 0))[None]
    probs, object_probs, emb = back.predict_all(wav.reshape(3, RATE), RATE)
    assert probs.shape == (3, 3) and object_probs.shape == (3, len(OBJECT_FAMILIES))
    assert torch.allclose(object_probs.sum(-1), torch.ones(3))
    seconds = label_seconds(back, wav, RATE)
    assert len(seconds.objects) == len(seconds.labels) == 3
    assert set(seconds.objects) <= set(OBJECT_FAMILIES)


def test_an_old_classifier_folder_loads_and_says_its_object_figures_are_na(tmp_path, capsys):
    tiny(object_families=False).save(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config.pop("object_families")  # as written before the second head existed
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    old = load_classifier(tmp_path / "old")
    assert not old.has_objects
    with pytest.raises(ValueError):
        old.object_logits(torch.zeros(1, 8))
    piece = tmp_path / "piece"
    piece.mkdir()
    sf.write(piece / "piano.wav", stem(440.0, 3, 3.0, 0), RATE)
    (piece / "meta.json").write_text(json.dumps(
        {"stem_instruments": {"piano": {"program": 0, "drum": False}}}))
    scored = score_paths([piece], str(tmp_path / "old"))
    row = next(iter(scored["files"].values()))
    assert row["object_family"] == "piano"  # known from meta.json ...
    assert row["object_identity"] is None and row["object_switch_rate"] is None  # ... n/a
    assert row["identity_accuracy"] is not None and scored["summary"]["object_head"] is False
    print_table(scored["summary"])
    assert NO_OBJECT_HEAD in capsys.readouterr().out
    # the bundled classifier, saved before the head, still loads
    assert not load_classifier().has_objects


def test_consistency_gives_object_figures_from_the_folders_meta(tmp_path):
    tiny().save(tmp_path / "clf")
    piece = tmp_path / "piece"
    piece.mkdir()
    for slot in ("piano", "other"):
        sf.write(piece / f"{slot}.wav", stem(440.0, 3, 4.0, 0), RATE)
    (piece / "meta.json").write_text(json.dumps({"objects": {"piano": "electric-piano-1",
                                                             "other": None}}))
    files = score_paths([piece], str(tmp_path / "clf"))["files"]
    piano, other = files[str(piece / "piano.wav")], files[str(piece / "other.wav")]
    assert piano["object_family"] == "piano" and 0.0 <= piano["object_identity"] <= 1.0
    assert piano["object_label"] in OBJECT_FAMILIES
    assert other["object_family"] is None and other["object_identity"] is None
    assert other["object_switch_rate"] is not None  # no target needed for switches


def test_training_writes_both_heads_and_the_valid_tables(tmp_path, capsys):
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg (Opus round trips)")
    train = write_corpus(tmp_path / "train", [f"tune{i}" for i in range(6)])
    valid = write_corpus(tmp_path / "valid", ["other0", "other1"])
    out, cache = tmp_path / "clf", tmp_path / "cache"
    args = [str(train), "--valid", str(valid), "--out", str(out), "--epochs", "1",
            "--per-stem", "2", "--held-out", "0.3", "--threads", "1", "--cache", str(cache),
            "--coded-share", "1"]
    assert train_script().main(args) == 0
    printed = capsys.readouterr().out
    assert "slot family" in printed and "GM family" in printed and "opus 6k" in printed
    model = load_classifier(out)
    assert model.has_objects
    info = model.config.info
    assert set(info["valid"]) >= {"accuracy", "opus_accuracy", "object_accuracy",
                                  "opus_object_accuracy", "targets"}
    # 2 valid pieces x 3 stems x 2 seconds, each family counted
    assert info["valid"]["opus_accuracy"]["segments"] == 12
    assert set(info["valid"]["object_accuracy"]) >= {"bass", "piano", "pipe", "overall"}
    assert info["augmentation"]["views"] == 1
    cached = sorted(cache.glob("opus-*.flac"))
    # every training stem once (--coded-share 1: each augmented copy is coded) and every
    # valid stem; the held-out pieces are scored clean only
    assert len(cached) == 3 * (info["train_pieces"] + 2)
    stamps = [p.stat().st_mtime_ns for p in cached]
    assert train_script().main(args) == 0  # a second run reads the round trips back
    assert [p.stat().st_mtime_ns for p in cached] == stamps


def test_object_labels_come_from_meta_programs(tmp_path):
    write_corpus(tmp_path, ["a"])
    piece = read_piece(tmp_path / "folk-band_a_v0")
    labels = object_labels(piece)
    assert {slot: OBJECT_FAMILIES[i] for slot, i in labels.items()} == {
        "bass": "bass", "piano": "piano", "other": "pipe"}


# -- augmentation ----------------------------------------------------------------------------
def level_db(x: torch.Tensor) -> float:
    return 10 * float(torch.log10(x.pow(2).mean()))


def test_gain_changes_the_level_and_keeps_the_shape():
    x = torch.from_numpy(stem(220.0, 3, 1.0, 0)).reshape(2, -1)  # [2, L]
    before = x.clone()
    gen = torch.Generator().manual_seed(0)
    y = random_gain(x, gen, low_db=-12.0, high_db=-12.0, ramp_db=0.0)
    assert y.shape == x.shape and torch.equal(x, before)  # the caller's tensor is kept
    for row_x, row_y in zip(x, y):
        assert level_db(row_y) - level_db(row_x) == pytest.approx(-12.0, abs=1e-3)
    z = random_gain(x[None], gen)  # [1, 2, L]: a level per row, inside the ranges
    assert z.shape == (1, 2, x.shape[-1])
    changes = [level_db(b) - level_db(a) for a, b in zip(x, z[0])]
    assert all(-30.0 <= c <= 12.0 for c in changes) and changes[0] != changes[1]
    ramp = random_gain(torch.ones(1, 1000), gen, low_db=0.0, high_db=0.0, ramp_db=6.0)
    assert float(ramp[0, 0]) == pytest.approx(1.0)  # the ramp starts at the drawn level
    assert float(ramp[0, -1]) != pytest.approx(1.0)


def test_reverb_lengthens_the_decay_and_keeps_the_shape():
    rate = 16000
    gen = torch.Generator().manual_seed(0)
    ir = decaying_noise(rate, 0.8, gen)
    assert ir.shape == (int(0.8 * rate),) and float(ir.norm()) == pytest.approx(1.0)
    quarter = ir.shape[0] // 4
    assert ir[-quarter:].pow(2).sum() < 1e-3 * ir[:quarter].pow(2).sum()  # 60 dB over RT60
    x = torch.zeros(2, rate)
    x[:, :1600] = torch.randn(2, 1600, generator=gen) * 0.3  # a 0.1 s burst, then silence
    before = x.clone()
    y = reverb(x, rate, gen, rt60=(1.0, 1.0), wet=(0.5, 0.5))
    assert y.shape == x.shape and torch.equal(x, before)
    tail = slice(int(0.3 * rate), None)
    assert float(x[:, tail].abs().max()) == 0.0
    assert level_db(y[:, tail]) > -60.0  # the room rings on after the burst
    impulse = torch.zeros(100)
    impulse[0] = 1.0
    assert torch.allclose(convolve(impulse, ir[:50]), torch.cat([ir[:50], torch.zeros(50)]),
                          atol=1e-6)


def test_round_trips_are_cached_and_redone_when_the_stem_changes(tmp_path, monkeypatch):
    path = tmp_path / "piano.wav"
    sf.write(path, stem(440.0, 3, 1.0, 0), RATE)
    trips = RoundTrips(16000, tmp_path / "cache")
    calls = []

    def fake(kind, p):
        calls.append(kind)
        return torch.full((1, 16000), 0.25)
    monkeypatch.setattr(trips, "_compute", fake)
    first = trips.get("opus", path)
    again = trips.get("opus", path)
    assert calls == ["opus"] and first.shape == again.shape == (1, 16000)
    assert torch.allclose(again, first, atol=1e-4)  # read back from the FLAC
    sf.write(path, stem(440.0, 3, 1.0, 1), RATE)  # a new stem: redone
    trips.get("opus", path)
    assert calls == ["opus", "opus"]
    assert trips.kinds == ("opus",)


# -- object identity and switch rate ---------------------------------------------------------
def test_object_identity_and_switch_rate_by_hand():
    seconds = SecondLabels(labels=["other"] * 5, index=[0, 1, 2, 4, 5],
                           probs=torch.zeros(5, 3), embeddings=torch.zeros(5, 8),
                           objects=["strings", "strings", "brass", "brass", "strings"])
    assert object_identity(seconds, "strings") == pytest.approx(3 / 5)
    assert object_identity(seconds, "organ") == 0.0
    assert object_identity(seconds, None) is None
    # neighbours: (0,1) same, (1,2) change, (4,5) change; 2 -> 4 is no pair
    assert object_switch_rate(seconds) == pytest.approx(2 / 3)
    assert switch_rate(seconds) == 0.0  # the family never changed: a switch inside "other"
    old = SecondLabels(["other"], [0], torch.zeros(1, 3), torch.zeros(1, 8))
    assert object_identity(old, "strings") is None and object_switch_rate(old) is None


def test_object_families_of_names_and_of_meta():
    assert object_family("violin") == "strings" and object_family("flute") == "pipe"
    assert object_family("nylon-guitar") == "guitar" and object_family("tr-808-kit") == "drums"
    assert object_family("unknown") is None and object_family("no-such-thing") is None
    generated = {"objects": {"guitar": "nylon-guitar", "bass": None, "other": "church-organ"}}
    assert slot_object_families(generated) == {"guitar": "guitar", "other": "organ"}
    rendered = {"stem_instruments": {"other": {"program": 19, "drum": False},
                                     "drums": {"program": 8, "drum": True},
                                     "piano": {"instrument": "no program"}}}
    assert slot_object_families(rendered) == {"other": "organ", "drums": "drums"}
    assert slot_object_families(None) == {} and slot_object_families({}) == {}


def test_the_report_shows_object_columns_where_there_are_figures(tmp_path):
    cell = (0.5, 0.4, 0.6)
    with_objects = {"real": {"pieces": 2, "timbre_stability": cell, "switch_rate": cell,
                             "identity_accuracy": cell, "object_identity": cell,
                             "object_switch_rate": cell, "onset_agreement": None,
                             "chroma_agreement": None, "max_leakage": None,
                             "mix": {"pieces": 0}}}
    table = markdown(with_objects)
    assert "object identity ↑" in table and "object switch rate ↓" in table
    without = {"real": {**with_objects["real"], "object_identity": None,
                        "object_switch_rate": None}}
    table = markdown(without, object_head=False)
    assert "object identity" not in table.splitlines()[0] and NO_OBJECT_HEAD in table
    # a set's pieces carry what each slot chose, for the object figures
    folder = write_piece(tmp_path / "seed0", {"piano": torch.zeros(1, 2400)}, RATE,
                         meta={"objects": {"piano": "harpsichord"}})
    assert json.loads((folder / "meta.json").read_text())["objects"] == {"piano": "harpsichord"}


def test_the_accuracy_table_has_a_row_per_class_and_a_dash_where_missing():
    table = accuracy_table({"held-out": {"bass": 1.0, "overall": 1.0, "segments": 4},
                            "valid": {"piano": 0.5, "overall": 0.5, "segments": 2}},
                           ["bass", "piano"], "slot family")
    lines = table.splitlines()
    assert lines[0].split() == ["slot", "family", "held-out", "valid"]
    assert lines[1].split() == ["bass", "1.000", "-"]
    assert lines[2].split() == ["piano", "-", "0.500"]
    assert lines[-1].split() == ["seconds", "4", "2"]


def test_the_report_scores_objects_with_a_classifier_that_has_the_head(tmp_path):
    tiny().save(tmp_path / "clf")
    ref = tmp_path / "ref"
    for i in range(2):
        stems = {slot: torch.from_numpy(stem(freq, harmonics, 3.0, i))[None]
                 for slot, (_, freq, harmonics) in STEMS.items()}
        write_piece(ref / f"piece{i}", stems, RATE, meta={"stem_instruments": {
            slot: {"program": program, "drum": False}
            for slot, (program, _, _) in STEMS.items()}})
    table = write_report(tmp_path / "report", {"real": ref}, classifier=str(tmp_path / "clf"))
    assert "object identity ↑" in table and NO_OBJECT_HEAD not in table
    summary = json.loads((tmp_path / "report" / "report.json").read_text())["summary"]["real"]
    mean, low, high = summary["object_identity"]  # mean and its bootstrap interval
    assert 0.0 <= low <= mean <= high <= 1.0
    assert summary["object_switch_rate"] is not None
