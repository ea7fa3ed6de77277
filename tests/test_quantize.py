"""--quantize int8: dynamic int8 quantisation of the transformer's Linear layers for CPU
inference (StemGenerator's `quantize`): it generates and writes audio, its logits follow the
float model's, the float model is left as it is, and the mistakes are one line. Tiny
checkpoints on the debug codec (random weights: their logits are flatter than a trained
model's, so greedy token agreement here is a lower bound of what a trained model gives)."""

import json

import pytest
import torch

from stemcodec import StemGenerator
from stemcodec.errors import UserError
from stemcodec.generate import main
from stemcodec.generation.generator import quantize_model
from stemcodec.model import MultiStreamTransformer
from tiny_models import tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("quantize") / "tiny")


def test_cli_quantized_generation_writes_audio_and_records_it(checkpoint, tmp_path, capsys):
    args = ["--slots", "drums,bass", "--checkpoint", str(checkpoint), "--duration", "0.4",
            "--device", "cpu"]
    assert main([*args, "--quantize", "int8", "--out", str(tmp_path / "q")]) == 0
    assert main([*args, "--out", str(tmp_path / "f")]) == 0
    assert "int8)" in capsys.readouterr().out  # "(2 threads, int8)"
    for name in ("drums.wav", "bass.wav", "mix.wav", "stems.png"):
        assert (tmp_path / "q" / name).stat().st_size > 0
    assert json.loads((tmp_path / "q" / "meta.json").read_text())["quantize"] == "int8"
    assert json.loads((tmp_path / "f" / "meta.json").read_text())["quantize"] is None


def test_one_slot_takes_the_generic_path_when_quantized(checkpoint):
    """The lone-slot shortcut slices the float qkv weight; a quantized qkv has none."""
    out = StemGenerator.from_pretrained(checkpoint, device="cpu", quantize="int8").generate(
        "drums", 0.3, temperature=0)
    assert out.codes.shape[0] == 1 and torch.isfinite(out.decoded["drums"]).all()


@pytest.mark.parametrize("slots", [1, 3])
def test_int8_logits_follow_the_float_models(checkpoint, slots):
    """Teacher-forced (the same input to both): logits correlated, the same top token at
    almost every position (0.97 measured with 3 slots; the bundled generator-mini: 0.94,
    correlation 0.9999)."""
    model = MultiStreamTransformer.from_pretrained(checkpoint, device="cpu").eval()
    int8 = quantize_model(model, "int8")
    assert isinstance(model.heads, torch.nn.Linear)  # quantized as a copy: float kept
    assert not isinstance(int8.heads, torch.nn.Linear)
    seq = torch.randint(0, model.config.cardinality, (2, slots, model.config.num_codebooks, 16),
                        generator=torch.Generator().manual_seed(0))
    inst = torch.arange(slots)[None].expand(2, -1)
    with torch.no_grad():
        a, b = model(seq, inst), int8(seq, inst)
    corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
    top1 = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    assert corr > 0.99 and top1 > 0.9, (corr, top1)


def test_greedy_token_agreement_with_float_for_the_same_seed(checkpoint, capsys):
    """Free-running, the share of equal tokens is lower than the teacher-forced one: once a
    token differs the two continuations part (0.17 here, on flat random logits); still far
    above the 1/1024 of unrelated sequences."""
    options = dict(slots="drums,bass", duration=0.6, seed=3, temperature=0)
    f = StemGenerator.from_pretrained(checkpoint, device="cpu").generate(**options)
    q = StemGenerator.from_pretrained(checkpoint, device="cpu", quantize="int8").generate(
        **options)
    assert f.codes.shape == q.codes.shape
    agreement = (f.codes == q.codes).float().mean().item()
    with capsys.disabled():
        print(f"\nint8 vs float, greedy, tiny random model: token agreement {agreement:.3f}")
    assert agreement > 0.05, agreement


@pytest.mark.parametrize("quantize, device, message", [
    ("int4", "cpu", "--quantize int4: unknown; give int8"),
    ("int8", "cuda", "--quantize int8 is for CPU inference, not cuda"),
])
def test_mistakes_are_one_line(checkpoint, quantize, device, message):
    with pytest.raises(UserError) as info:
        StemGenerator.from_pretrained(checkpoint, device=device, quantize=quantize)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_unknown_value_is_one_line_and_writes_nothing(checkpoint, tmp_path, capsys):
    assert main(["--slots", "drums", "--checkpoint", str(checkpoint), "--quantize", "fp4",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --quantize fp4: unknown") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_bench_compares_a_trained_models_int8_with_its_float(checkpoint):
    """bench/generate_speed.py --quantize int8 --quantize-model M: its figures' keys."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "bench" / "generate_speed.py"
    spec = importlib.util.spec_from_file_location("generate_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    q = bench.quantized_against_float(None, None, 2, 6, 1, "int8", str(checkpoint))
    assert q["slots"] == "drums,bass" and q["int8_over_float"] > 0
    assert 0 <= q["token_agreement"] <= 1 and 0 <= q["token_agreement_greedy"] <= 1
