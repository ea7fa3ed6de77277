"""Codec quality on rendered stems next to Opus: the figures behind eval/codec_quality.py
(see its docstring for what each one means)."""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..audio import is_silent, load_audio, rms_db
from ..codec import Codec
from ..corpus.layout import find_pieces
from ..errors import AudioError, UserError
from ..metrics.classifier import InstrumentClassifier
from ..metrics.identity import reconstruction_identity
from ..metrics.opus import opus_roundtrip
from ..metrics.pitch import buzz_prominence, chroma_correlation, cqt_distance, tone_test
from ..metrics.quality import mel_distance, mrstft_distance, si_sdr

KEYS = ("mel_distance", "mrstft_distance", "si_sdr", "chroma_correlation", "cqt_distance",
        "buzz_db")
Coder = Callable[[torch.Tensor], torch.Tensor]


def find_stems(corpora: Sequence[Path], limit: int | None) -> tuple[list[Path], int]:
    """Stems (mix.wav passed over) of the first `limit` pieces (stemcodec.corpus.layout:
    corpus by corpus, pieces sorted) and the number of pieces."""
    pieces = find_pieces(corpora)[:limit]
    return [s for p in pieces for s in p.stems.values()], len(pieces)


def decoder_rates(codec: Codec) -> list[float]:
    """The frame rate and the rates after each transposed-convolution stage of a SEANet
    decoder of this hop (75, 600, 3000 Hz for ratios 8, 5, 4, 2 at 75 frames/s): where a
    decoder's buzz sits. The same rates are measured for every codec, Opus included."""
    # SEANetEncoder keeps its ratios reversed; a SEANet decoder (and the config) in play order
    ratios = list(getattr(codec.model.decoder, "ratios", None)
                  or reversed(getattr(codec.model.encoder, "ratios", [codec.hop_length])))
    rates, rate = [codec.frame_rate], codec.frame_rate
    for r in ratios[:-1]:
        rate *= r
        rates.append(rate)
    return [r for r in rates if r < codec.sample_rate / 4]


def scores(reference: torch.Tensor, estimate: torch.Tensor, rate: int,
           buzz_rates: Sequence[float]) -> dict[str, float]:
    return {"mel_distance": mel_distance(reference, estimate, rate),
            "mrstft_distance": mrstft_distance(reference, estimate),
            "si_sdr": si_sdr(reference, estimate),
            "chroma_correlation": chroma_correlation(reference, estimate, rate),
            "cqt_distance": cqt_distance(reference, estimate, rate),
            "buzz_db": buzz_prominence(estimate, rate, buzz_rates)}


def roundtrip(codec: Codec, wav: torch.Tensor) -> torch.Tensor:
    """`[C, S]` through the codec and back, at the stem's level when the codec drops it."""
    out = codec.decode(codec.encode(wav[None]), length=wav.shape[-1])[0].cpu()  # [C, S]
    if codec.unit_rms and not is_silent(out):
        out = out * 10 ** ((rms_db(wav) - rms_db(out)) / 20)
    return out


def coders(codec: Codec, opus_bitrate: float) -> dict[str, Coder]:
    """`{"codec": ..., "opus": ...}`: mono or codec-channel `[C, S]` round trips."""
    rate = codec.sample_rate
    return {"codec": lambda w: roundtrip(codec, w.expand(codec.channels, -1)),
            "opus": lambda w: opus_roundtrip(w.expand(codec.channels, -1), rate, opus_bitrate)}


def piece_lanes(coding: dict[str, Coder], corpora: Sequence[Path], rate: int, channels: int,
                seconds: float, piece: int = 0) -> dict[str, torch.Tensor]:
    """The stems of one piece (the `piece`-th of `find_pieces`), first `seconds`,
    each as it is and through every coder: `{"bass original": ..., "bass codec": ...}`, the
    lanes of `plots.note_lanes_picture`. Silent or unreadable stems are left out."""
    pieces = find_pieces(corpora)
    if piece >= len(pieces):
        raise UserError(f"piece {piece} asked for, but the corpora hold {len(pieces)}")
    lanes = {}
    for instrument, path in sorted(pieces[piece].stems.items()):
        try:
            wav, _ = load_audio(path, rate, channels)
        except AudioError:
            continue
        wav = wav[:, : int(seconds * rate)]
        if is_silent(wav):
            continue
        lanes[f"{instrument} original"] = wav
        for name, fn in coding.items():
            lanes[f"{instrument} {name}"] = fn(wav)
    if not lanes:
        raise UserError(f"{pieces[piece].path}: no stem to draw (all silent or unreadable)")
    return lanes


def tone_figures(coding: dict[str, Coder], rate: int,
                 outputs: dict[str, dict[str, torch.Tensor]] | None = None) -> dict[str, dict]:
    """The tone test (stemcodec.metrics.pitch.tone_test) through each round trip; `outputs`,
    when given, receives each coder's round-tripped tones (`outputs["codec"]["sine 55"]`)."""
    figures = {}
    for name, fn in coding.items():
        kept = None if outputs is None else outputs.setdefault(name, {})
        figures[name] = tone_test(fn, rate, outputs=kept)
    return figures


def score_corpora(codec: Codec, coding: dict[str, Coder], corpora: Sequence[Path],
                  limit: int | None = None, max_seconds: float | None = None,
                  buzz_rates: Sequence[float] | None = None,
                  classifier: InstrumentClassifier | None = None) -> dict[str, Any]:
    """Figures averaged over the stems: `{"codec": {...}, "opus": {...}, "original": {...},
    "info": {...}}`; identity per instrument when a classifier is given. Unreadable or silent
    stems get one `skipped` line on stderr."""
    rate = codec.sample_rate
    stems, pieces = find_stems(corpora, limit)
    buzz_rates = list(buzz_rates or decoder_rates(codec))
    totals: dict[str, list[dict[str, float]]] = {"codec": [], "opus": []}
    original_buzz: list[float] = []
    seconds = {name: defaultdict(lambda: [0, 0]) for name in ("original", "codec", "opus")}
    for path in tqdm(stems, desc=f"{codec.name} vs opus", unit="stem", file=sys.stderr):
        try:
            wav, _ = load_audio(path, rate, codec.channels)
        except AudioError as exc:
            tqdm.write(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        if max_seconds is not None:
            wav = wav[:, : int(max_seconds * rate)]
        if is_silent(wav):
            tqdm.write(f"skipped {path}: silent", file=sys.stderr)
            continue
        outputs = {"original": wav, **{name: fn(wav) for name, fn in coding.items()}}
        for name in ("codec", "opus"):
            totals[name].append(scores(wav, outputs[name], rate, buzz_rates))
        original_buzz.append(buzz_prominence(wav, rate, buzz_rates))
        instrument = path.stem
        if classifier is not None and instrument in classifier.config.classes:
            for name, out in outputs.items():
                right, counted = reconstruction_identity(classifier, wav, out, rate, instrument)
                seconds[name][instrument][0] += right
                seconds[name][instrument][1] += counted
    if not totals["codec"]:
        raise UserError("no stem could be scored (all unreadable or silent)")
    result: dict[str, Any] = {name: {k: round(sum(r[k] for r in rows) / len(rows), 4)
                                     for k in KEYS} for name, rows in totals.items()}
    result["original"] = {"buzz_db": round(sum(original_buzz) / len(original_buzz), 4)}
    if classifier is not None:
        for name, per in seconds.items():
            right = sum(r for r, _ in per.values())
            counted = sum(c for _, c in per.values())
            result[name]["identity"] = round(right / counted, 4) if counted else math.nan
            result[name]["identity_by_instrument"] = {
                k: round(r / c, 4) for k, (r, c) in sorted(per.items()) if c}
            result[name]["identity_seconds"] = counted
    result["info"] = {"stems": len(totals["codec"]), "pieces": pieces,
                      "max_seconds": max_seconds, "buzz_rates_hz": buzz_rates}
    return result
