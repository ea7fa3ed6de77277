"""VGGish for the Fréchet distance: found in the torch hub cache by its official name, the
checksum in the name verified before reading, one-line errors otherwise; one embedding per
second; the report (stemcodec.evaluation.report) uses it with --frechet-embedding vggish."""

import json

import pytest
import torch

from stemcodec.checkpoint import file_sha256
from stemcodec.evaluation.report import write_report
from stemcodec.metrics.classifier import ClassifierConfig, InstrumentClassifier
from stemcodec.metrics.vggish import (
    VGGish,
    VGGishError,
    find_weights,
    load_vggish,
    vggish_embeddings,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random VGGish weights written as the PyTorch port ships them: a state dict named
    vggish-<first 8 hex of its sha256>.pth."""
    folder = tmp_path_factory.mktemp("hub") / "checkpoints"
    folder.mkdir()
    torch.manual_seed(0)
    model = VGGish()
    for layer in model.modules():  # He init: embeddings of a usable scale (the default's vanish)
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    raw = folder / "raw.pth"
    torch.save(model.state_dict(), raw)
    path = folder / f"vggish-{file_sha256(raw)[:8]}.pth"
    raw.rename(path)
    return path


@pytest.mark.slow
def test_found_in_the_hub_cache_and_one_embedding_per_second(weights, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(weights.parent.parent))
    assert find_weights() == weights
    model = load_vggish()
    t = torch.arange(3 * 24000) / 24000
    segments = torch.stack([torch.sin(2 * torch.pi * f * t[:24000]) for f in (220, 440, 880)])
    emb = vggish_embeddings(model, segments, 24000)
    assert emb.shape == (3, 128) and torch.isfinite(emb).all()
    assert torch.equal(emb, vggish_embeddings(load_vggish(weights), segments, 24000))
    assert not torch.allclose(emb[0], emb[2])  # other pitch, other embedding


def test_missing_corrupt_or_foreign_weights_are_one_line_errors(weights, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    with pytest.raises(VGGishError, match="missing VGGish weights vggish-10086976.pth"):
        load_vggish()
    bad = tmp_path / "vggish-00000000.pth"
    bad.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(VGGishError, match="checksum mismatch"):
        load_vggish(bad)
    foreign = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(2)}, foreign)
    with pytest.raises(VGGishError, match="is not a VGGish state dict"):
        load_vggish(foreign)
    with pytest.raises(VGGishError, match="no such file"):
        load_vggish(tmp_path / "nope.pth")


@pytest.mark.slow
def test_report_frechet_over_vggish(weights, tmp_path, write_tone):
    torch.manual_seed(0)
    clf = InstrumentClassifier(ClassifierConfig(classes=["bass", "piano"], widths=[4, 8],
                                                embedding=8))
    clf.save(tmp_path / "clf")
    sets = {}
    for name, base in (("a", 110.0), ("b", 110.0), ("c", 700.0)):
        for i in range(2):
            for slot, mult in (("bass", 1), ("piano", 4)):
                write_tone(tmp_path / name / f"p{i}" / f"{slot}.wav", seconds=3.0,
                           freq=base * mult * (i + 1))
        sets[name] = tmp_path / name
    out = tmp_path / "report"
    write_report(out, sets, frechet_embedding="vggish", vggish=str(weights),
                 classifier=str(tmp_path / "clf"))
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["b"]["frechet"] == pytest.approx(0.0, abs=1e-3)  # the same stems as a
    assert summary["c"]["frechet"] > 1e-3
